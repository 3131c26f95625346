//! One credential's in-memory state: its cached token, the lock that makes
//! concurrent fetches single-flight, and what the last attempts did.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use credcache_shared::Secret;
use credcache_shared::protocol::CredentialState;

use crate::providers::FetchError;

/// A token held in memory.
#[derive(Debug, Clone)]
pub struct CachedToken {
    pub token: Secret,
    pub expires_at: DateTime<Utc>,
    pub fetched_at: DateTime<Utc>,
    pub quota_project: Option<String>,
}

impl CachedToken {
    /// Whether it may be handed out at `now` to a caller that needs it for
    /// `min_valid` more. `min_valid` is capped at half the token's lifetime
    /// so a short-lived token is still usable; an expired one never is.
    pub fn is_valid_for(&self, now: DateTime<Utc>, min_valid: Duration) -> bool {
        let lifetime = (self.expires_at - self.fetched_at)
            .to_std()
            .unwrap_or(Duration::ZERO);
        let needed = min_valid.min(lifetime / 2);
        match (self.expires_at - now).to_std() {
            Ok(left) => left > needed,
            Err(_) => false,
        }
    }
}

/// One credential's slot. Replaced wholesale when its settings change, so a
/// fetch under old settings can never land in the new slot.
#[derive(Default)]
pub struct Slot {
    /// Held for the duration of an upstream fetch: the single-flight lock.
    pub fetch: tokio::sync::Mutex<()>,
    state: Mutex<SlotState>,
}

#[derive(Default)]
pub struct SlotState {
    pub token: Option<CachedToken>,
    /// Fetch attempts finished, successful or not. A waiter that sees this
    /// change while it queued for the fetch lock takes that attempt's
    /// outcome instead of making another upstream call.
    pub attempts: u64,
    /// Successful upstream fetches.
    pub fetches: u64,
    pub last_error: Option<FetchError>,
    pub consecutive_failures: u32,
    pub in_flight: bool,
    /// Set from an upstream `Retry-After`: no fetch before this instant
    /// unless a user explicitly asks (`refresh`).
    pub not_before: Option<DateTime<Utc>>,
}

impl Slot {
    pub fn with_token(token: CachedToken) -> Self {
        let slot = Self::default();
        slot.lock().token = Some(token);
        slot
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        // A panic while holding this lock cannot leave the state half
        // written (every update is a few assignments), so poison is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn valid_token(&self, now: DateTime<Utc>, min_valid: Duration) -> Option<CachedToken> {
        self.lock()
            .token
            .as_ref()
            .filter(|t| t.is_valid_for(now, min_valid))
            .cloned()
    }

    pub fn attempts(&self) -> u64 {
        self.lock().attempts
    }

    /// Records the outcome of a fetch that started at `started`.
    pub fn finish(&self, outcome: &Result<CachedToken, FetchError>, started: DateTime<Utc>) {
        let mut s = self.lock();
        s.attempts += 1;
        s.in_flight = false;
        match outcome {
            Ok(token) => {
                s.token = Some(token.clone());
                s.fetches += 1;
                s.last_error = None;
                s.consecutive_failures = 0;
            }
            Err(e) => {
                s.last_error = Some(e.clone());
                s.consecutive_failures += 1;
            }
        }
        s.not_before = match outcome {
            Err(FetchError {
                retry_after: Some(after),
                ..
            }) => chrono::Duration::from_std(*after).ok().map(|d| started + d),
            _ => None,
        };
    }

    /// The last error, if upstream asked us (with `Retry-After`) not to
    /// call again before a time still in the future.
    pub fn held_off(&self, now: DateTime<Utc>) -> Option<FetchError> {
        let s = self.lock();
        let until = s.not_before.filter(|t| *t > now)?;
        let mut e = s.last_error.clone()?;
        let secs = (until - now).num_seconds().max(1);
        e.message = format!(
            "{} (not asking again for {secs}s, as Retry-After said)",
            e.message
        );
        Some(e)
    }

    /// Drops the token and the error history.
    pub fn clear(&self) {
        let mut s = self.lock();
        s.token = None;
        s.not_before = None;
        s.last_error = None;
        s.consecutive_failures = 0;
    }

    pub fn state(&self, now: DateTime<Utc>) -> CredentialState {
        let s = self.lock();
        let valid = s.token.as_ref().is_some_and(|t| t.expires_at > now);
        match (s.in_flight, valid, &s.token, &s.last_error) {
            (true, _, _, _) => CredentialState::Refreshing,
            (false, true, _, Some(_)) => CredentialState::StaleServing,
            (false, true, _, None) => CredentialState::Fresh,
            (false, false, _, Some(_)) => CredentialState::Failing,
            (false, false, Some(_), None) => CredentialState::Expired,
            (false, false, None, None) => CredentialState::NeverFetched,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(fetched: i64, expires: i64) -> CachedToken {
        CachedToken {
            token: Secret::new("t"),
            fetched_at: DateTime::from_timestamp(fetched, 0).unwrap(),
            expires_at: DateTime::from_timestamp(expires, 0).unwrap(),
            quota_project: None,
        }
    }

    #[test]
    fn validity_honours_min_valid_capped_at_half_the_lifetime() {
        let t = token(0, 3600);
        let at = |s| DateTime::from_timestamp(s, 0).unwrap();
        assert!(t.is_valid_for(at(3000), Duration::from_secs(60)));
        assert!(!t.is_valid_for(at(3540), Duration::from_secs(60)));
        assert!(
            !t.is_valid_for(at(3600), Duration::ZERO),
            "expired is never valid"
        );
        assert!(!t.is_valid_for(at(4000), Duration::ZERO));
        // A 20 s token with min_valid 60 s: usable for its first 10 s.
        let short = token(0, 20);
        assert!(short.is_valid_for(at(9), Duration::from_secs(60)));
        assert!(!short.is_valid_for(at(10), Duration::from_secs(60)));
    }

    #[test]
    fn states() {
        let now = DateTime::from_timestamp(100, 0).unwrap();
        let slot = Slot::default();
        assert_eq!(slot.state(now), CredentialState::NeverFetched);
        slot.finish(&Err(FetchError::transient("boom")), now);
        assert_eq!(slot.state(now), CredentialState::Failing);
        slot.finish(&Ok(token(0, 200)), now);
        assert_eq!(slot.state(now), CredentialState::Fresh);
        slot.finish(&Err(FetchError::transient("boom")), now);
        assert_eq!(slot.state(now), CredentialState::StaleServing);
        assert_eq!(slot.lock().consecutive_failures, 1);
        slot.lock().last_error = None;
        assert_eq!(
            slot.state(DateTime::from_timestamp(300, 0).unwrap()),
            CredentialState::Expired
        );
        assert_eq!(slot.attempts(), 3);
    }

    #[test]
    fn retry_after_holds_fetches_off_until_it_passes() {
        let now = DateTime::from_timestamp(100, 0).unwrap();
        let slot = Slot::default();
        let mut e = FetchError::transient("answered 429");
        e.retry_after = Some(Duration::from_secs(30));
        slot.finish(&Err(e), now);
        let held = slot.held_off(now + chrono::Duration::seconds(10)).unwrap();
        assert_eq!(
            held.message,
            "answered 429 (not asking again for 20s, as Retry-After said)"
        );
        assert!(slot.held_off(now + chrono::Duration::seconds(30)).is_none());
        slot.finish(&Ok(token(0, 200)), now);
        assert!(slot.held_off(now).is_none());
    }
}
