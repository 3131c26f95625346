//! When to refresh, and how long to wait after a failure: pure functions
//! of times and settings, so the policy is tested without a clock.
//!
//! - Due time: `expires_at - headroom`, with headroom
//!   `max(refresh_ahead, refresh_fraction × lifetime)` capped at half the
//!   lifetime (a 20-second token is not refreshed every instant), then moved
//!   earlier by a random 0–10% of the headroom so that tokens fetched
//!   together do not all refresh together.
//! - Pacing: a refresh nobody is waiting for comes at least
//!   [`MIN_REFRESH_INTERVAL`] after the fetch before it, whatever the
//!   lifetime. A token that lives 2 s is then not fetched every second for
//!   the day it stays warm; while clients ask for it, `get` lifts the floor
//!   (see `Slot::demand`), and a `get` that finds no usable token fetches at
//!   once, so the floor never makes anyone get an expired token.
//! - `min_valid` is capped at a quarter of the lifetime, below the headroom
//!   cap of a half: between the planned refresh and the moment a `get` no
//!   longer takes the cached token there is a quarter of the lifetime for a
//!   failed refresh to be retried.
//! - Failures: exponential backoff with full jitter, 1 s doubling to a
//!   5-minute cap (the AWS architecture blog's "full jitter"), never earlier
//!   than an upstream `Retry-After`.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Backoff starts here and doubles per consecutive failure...
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// ...up to this.
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// A refresh that returned the very same token and expiry (an upstream
/// cache near expiry does this) waits at least this long before the next.
pub const SAME_TOKEN_PAUSE: Duration = Duration::from_secs(30);
/// The least time between a fetch and the next background refresh of the
/// same credential. Real cloud tokens live minutes to hours, so this only
/// binds for tokens under 20 s (test setups, misconfigured upstreams): a
/// credential nobody asks for then costs at most 8,640 calls a day instead
/// of one per half lifetime (86,400 a day for 2-second tokens).
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// After a 4xx without a known permanent code (`ErrorClass::Rejected`),
/// neither `get` nor the scheduler asks again for this long, doubling per
/// consecutive failure up to [`BACKOFF_CAP`].
pub const REJECTED_BACKOFF_BASE: Duration = Duration::from_secs(30);
/// The scheduler looks at the wall clock at least this often, so a jump
/// (suspend/resume, NTP step) is noticed within this long.
pub const MAX_SLEEP: Duration = Duration::from_secs(30);
/// A credential nobody asked for in this long is no longer kept warm.
pub const WARM_FOR: Duration = Duration::from_secs(24 * 3600);

/// Refresh policy settings for one credential.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub refresh_ahead: Duration,
    pub refresh_fraction: f64,
}

/// The headroom for a token of this lifetime.
pub fn headroom(policy: Policy, lifetime: Duration) -> Duration {
    let by_fraction = lifetime.mul_f64(policy.refresh_fraction.clamp(0.0, 1.0));
    policy.refresh_ahead.max(by_fraction).min(lifetime / 2)
}

/// The most of a caller's `min_valid` that a token of this lifetime has to
/// honour: a quarter of the lifetime, so a short-lived token is still
/// usable, and a refresh planned at half the lifetime has a quarter of it
/// to be retried before `get` stops taking the cached token.
pub fn min_valid_cap(lifetime: Duration) -> Duration {
    lifetime / 4
}

/// `due` (from [`due_at`]), but no earlier than [`MIN_REFRESH_INTERVAL`]
/// after the fetch at `fetched_at`.
pub fn paced(due: DateTime<Utc>, fetched_at: DateTime<Utc>) -> DateTime<Utc> {
    due.max(fetched_at + to_chrono(MIN_REFRESH_INTERVAL))
}

/// When a token fetched at `fetched_at` and expiring at `expires_at` is due
/// for refresh. `jitter` is a number in `[0, 1)` (random in production):
/// the due time moves earlier by `jitter × 10%` of the headroom.
pub fn due_at(
    policy: Policy,
    fetched_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    jitter: f64,
) -> DateTime<Utc> {
    let lifetime = (expires_at - fetched_at).to_std().unwrap_or(Duration::ZERO);
    let room = headroom(policy, lifetime);
    let early = room.mul_f64(0.1 * jitter.clamp(0.0, 1.0));
    expires_at - to_chrono(room + early)
}

/// How long to wait after the `failures`-th consecutive failure. `jitter`
/// in `[0, 1)` picks a point in the full window (full jitter).
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    let window = BACKOFF_BASE.saturating_mul(1 << exp).min(BACKOFF_CAP);
    window.mul_f64(jitter.clamp(0.0, 1.0))
}

/// How long nothing asks upstream after the `failures`-th consecutive
/// refused request (a 4xx without a known permanent code): 30 s, 60 s, ...
/// up to 5 minutes. No jitter below the window: it is a hold, as a
/// `Retry-After` is.
pub fn rejected_hold(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    REJECTED_BACKOFF_BASE
        .saturating_mul(1 << exp)
        .min(BACKOFF_CAP)
}

/// The next attempt after a failure: the backoff, but never before what
/// upstream asked with `Retry-After`.
pub fn retry_at(
    now: DateTime<Utc>,
    failures: u32,
    jitter: f64,
    retry_after: Option<Duration>,
) -> DateTime<Utc> {
    let wait = backoff(failures, jitter).max(retry_after.unwrap_or(Duration::ZERO));
    now + to_chrono(wait)
}

pub fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// A random number in `[0, 1)` for jitter.
pub fn jitter() -> f64 {
    fastrand::f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        refresh_ahead: Duration::from_secs(300),
        refresh_fraction: 0.2,
    };

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn headroom_is_the_larger_of_ahead_and_fraction() {
        // 1 h: 20% is 12 min, more than 5 min.
        assert_eq!(
            headroom(POLICY, Duration::from_secs(3600)),
            Duration::from_secs(720)
        );
        // 20 min: 20% is 4 min, less than 5 min.
        assert_eq!(
            headroom(POLICY, Duration::from_secs(1200)),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn headroom_is_capped_at_half_the_lifetime() {
        assert_eq!(
            headroom(POLICY, Duration::from_secs(20)),
            Duration::from_secs(10)
        );
        assert_eq!(
            headroom(POLICY, Duration::from_secs(5)),
            Duration::from_millis(2500)
        );
        assert_eq!(headroom(POLICY, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn due_time_without_and_with_jitter() {
        assert_eq!(due_at(POLICY, t(0), t(3600), 0.0), t(3600 - 720));
        // Full jitter moves it 10% of the headroom (72 s) earlier at most.
        let earliest = due_at(POLICY, t(0), t(3600), 0.999_999);
        assert!(
            earliest > t(3600 - 720 - 73) && earliest <= t(3600 - 720 - 71),
            "{earliest}"
        );
        for _ in 0..1000 {
            let d = due_at(POLICY, t(0), t(3600), jitter());
            assert!(d <= t(2880) && d > t(2880 - 73), "{d}");
        }
        // A 20 s token is due 10 s in (and up to 1 s earlier), never at once.
        let d = due_at(POLICY, t(0), t(20), 0.5);
        assert_eq!(d, t(10) - chrono::Duration::milliseconds(500));
    }

    #[test]
    fn background_refreshes_are_paced_at_ten_seconds() {
        // A 2 s token is due 1 s in; paced, not before 10 s.
        let due = due_at(POLICY, t(0), t(2), 0.0);
        assert_eq!(due, t(1));
        assert_eq!(paced(due, t(0)), t(10));
        // Over 20 s of nobody asking, that is 2 refreshes, not 20.
        let mut fetched = t(0);
        let mut calls = 0;
        while fetched < t(20) {
            fetched = paced(
                due_at(POLICY, fetched, fetched + chrono::Duration::seconds(2), 0.5),
                fetched,
            );
            calls += 1;
        }
        assert_eq!(calls, 2);
        // A token that lives long enough is not moved.
        let due = due_at(POLICY, t(0), t(3600), 0.0);
        assert_eq!(paced(due, t(0)), due);
    }

    #[test]
    fn min_valid_is_capped_below_the_headroom() {
        for secs in [2, 5, 20, 600, 3600] {
            let lifetime = Duration::from_secs(secs);
            assert_eq!(min_valid_cap(lifetime), lifetime / 4);
            // Room for retries between the planned refresh and the moment
            // the cached token stops being served.
            assert!(min_valid_cap(lifetime) < lifetime / 2);
        }
    }

    #[test]
    fn backoff_grows_then_caps() {
        let full = |n| backoff(n, 0.999_999_999);
        assert!(full(1) <= Duration::from_secs(1));
        assert!(full(2) <= Duration::from_secs(2) && full(2) > Duration::from_millis(1999));
        assert!(full(4) > Duration::from_millis(7999));
        assert!(full(9) <= BACKOFF_CAP && full(9) > Duration::from_secs(255));
        assert!(full(10) <= BACKOFF_CAP && full(10) > Duration::from_secs(299));
        assert!(full(1000) <= BACKOFF_CAP);
        assert_eq!(backoff(5, 0.0), Duration::ZERO);
        for n in 1..20 {
            let b = backoff(n, jitter());
            assert!(b <= BACKOFF_CAP);
        }
    }

    #[test]
    fn refused_requests_are_held_from_30_seconds_doubling() {
        assert_eq!(rejected_hold(1), Duration::from_secs(30));
        assert_eq!(rejected_hold(2), Duration::from_secs(60));
        assert_eq!(rejected_hold(4), Duration::from_secs(240));
        assert_eq!(rejected_hold(5), BACKOFF_CAP);
        assert_eq!(rejected_hold(u32::MAX), BACKOFF_CAP);
    }

    #[test]
    fn retry_after_is_a_floor() {
        assert_eq!(
            retry_at(t(0), 1, 0.5, Some(Duration::from_secs(120))),
            t(120)
        );
        assert_eq!(
            retry_at(t(0), 20, 1.0 - 1e-12, Some(Duration::from_secs(1))),
            t(300)
        );
        assert_eq!(retry_at(t(0), 1, 0.0, None), t(0));
    }
}
