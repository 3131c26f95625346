//! The one source of "now", so that expiry logic can be tested with fake
//! time instead of sleeping.

use std::cell::Cell;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};

pub trait Clock: Send + Sync {
    /// The wall clock. Expiry is always judged by it, never by a monotonic
    /// timer alone, so a suspended laptop sees its tokens expire.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    // The initializer is `const`; clippy on windows-gnu (whose thread
    // locals expand differently) says otherwise.
    #[allow(clippy::missing_const_for_thread_local)]
    fn now(&self) -> DateTime<Utc> {
        thread_local! {
            static DAY: Cell<Day> = const { Cell::new(NO_DAY) };
        }
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()
            .and_then(|since| DAY.with(|day| from_unix(since, day)))
            .unwrap_or_else(Utc::now)
    }
}

/// A day since 1970 and its date.
type Day = (u64, NaiveDate);

const NO_DAY: Day = (u64::MAX, NaiveDate::MIN);

/// `since` 1970 as a date and time, the date taken from `day` when it is
/// the same day. Working out the date from the day number was half of
/// reading the clock, which a cached `get` does (issue 15); it changes
/// once a day.
fn from_unix(since: Duration, day: &Cell<Day>) -> Option<DateTime<Utc>> {
    let secs = since.as_secs();
    let (days, second) = (secs / 86_400, (secs % 86_400) as u32);
    let date = match day.get() {
        (d, date) if d == days => date,
        _ => {
            let date =
                DateTime::from_timestamp(i64::try_from(days * 86_400).ok()?, 0)?.date_naive();
            day.set((days, date));
            date
        }
    };
    let time = NaiveTime::from_num_seconds_from_midnight_opt(second, since.subsec_nanos())?;
    Some(date.and_time(time).and_utc())
}

/// A clock tests set by hand.
#[derive(Debug)]
pub struct FakeClock(Mutex<DateTime<Utc>>);

impl FakeClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(Mutex::new(at))
    }

    pub fn advance(&self, by: chrono::Duration) {
        *self.0.lock().unwrap() += by;
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap() = at;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_day_gives_the_same_instants_as_chrono() {
        let day = Cell::new(NO_DAY);
        let mut at = Duration::from_secs(1_767_225_000); // 31 Dec 2025, 23:50
        // Across midnight, a new year, and a day back (a clock set back).
        let steps = [0, 1, 599, 1, 86_399, 86_400 * 59, 1_000_000_000];
        for step in steps.iter().chain(steps.iter()) {
            at += Duration::from_secs(*step) + Duration::from_nanos(123_456_789);
            for t in [at, at - Duration::from_secs(86_400)] {
                let want = DateTime::from_timestamp(t.as_secs() as i64, t.subsec_nanos()).unwrap();
                assert_eq!(from_unix(t, &day), Some(want), "{t:?}");
            }
        }
        let now = SystemClock.now();
        let chrono = Utc::now();
        assert!(
            (chrono - now).num_seconds().abs() < 60,
            "{now} against {chrono}"
        );
    }
}
