//! Waiting for a condition that cannot be awaited (a daemon's background
//! reload, a refresh on its own schedule): poll it until it holds or a
//! deadline passes, and then say what was last seen.

use std::fmt::Debug;
use std::time::{Duration, Instant};

/// How long to let the machine breathe between polls. Each poll usually
/// runs a process, so this is small against it; it keeps a cheap check
/// from spinning a core.
const PAUSE: Duration = Duration::from_millis(10);

/// Calls `poll` until it returns `Ok(value)`, and returns that value. An
/// `Err(seen)` means "not yet", with what was seen; if nothing succeeded
/// within `deadline`, panics with the last `seen`.
#[track_caller]
pub fn eventually<T, S: Debug>(deadline: Duration, mut poll: impl FnMut() -> Result<T, S>) -> T {
    let give_up = Instant::now() + deadline;
    loop {
        match poll() {
            Ok(value) => return value,
            Err(seen) if Instant::now() >= give_up => {
                panic!("gave up after {deadline:?}; last saw {seen:#?}")
            }
            Err(_) => std::thread::sleep(PAUSE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_value_that_comes() {
        let mut calls = 0;
        let got = eventually(Duration::from_secs(60), || {
            calls += 1;
            if calls == 3 {
                Ok(calls * 10)
            } else {
                Err(calls)
            }
        });
        assert_eq!((got, calls), (30, 3));
    }

    #[test]
    fn panics_with_what_it_last_saw() {
        let panic = std::panic::catch_unwind(|| {
            eventually(Duration::ZERO, || Err::<(), _>("still starting"))
        })
        .unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(message.contains("\"still starting\""), "{message}");
    }
}
