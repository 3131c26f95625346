//! One credential's in-memory state: its cached token, the lock that makes
//! concurrent fetches single-flight, and what the last attempts did.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use credcache_shared::Secret;
use credcache_shared::protocol::CredentialState;

use super::answer::Framed;
use crate::fetch_error::{ErrorClass, FetchError};
use crate::schedule::{self, Policy};

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
    /// `min_valid` more. `min_valid` is capped at a quarter of the token's
    /// lifetime ([`schedule::min_valid_cap`]) so a short-lived token is
    /// still usable; an expired one never is.
    pub fn is_valid_for(&self, now: DateTime<Utc>, min_valid: Duration) -> bool {
        let Ok(left) = (self.expires_at - now).to_std() else {
            return false;
        };
        // The cap matters only when the token has less than `min_valid`
        // left: most answers need not work out the lifetime.
        left > min_valid || left > min_valid.min(schedule::min_valid_cap(self.lifetime()))
    }

    /// From fetch to expiry.
    pub fn lifetime(&self) -> Duration {
        (self.expires_at - self.fetched_at)
            .to_std()
            .unwrap_or(Duration::ZERO)
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
    /// Fetch attempts started. A forced refresh takes the outcome of an
    /// attempt only if it started after the refresh was asked for.
    pub started: u64,
    /// Successful upstream fetches.
    pub fetches: u64,
    pub last_error: Option<FetchError>,
    pub consecutive_failures: u32,
    pub in_flight: bool,
    /// Set from an upstream `Retry-After`: no fetch before this instant
    /// unless a user explicitly asks (`refresh`).
    pub not_before: Option<DateTime<Utc>>,
    /// When the scheduler fetches anew in the background, if the slot is
    /// warm. `None`: nothing planned (never fetched, or a permanent error).
    pub next_refresh: Option<DateTime<Utc>>,
    /// When the refresh after the last success would be due without
    /// [`schedule::MIN_REFRESH_INTERVAL`]: a `get` after this brings
    /// `next_refresh` forward to it (`Slot::demand`).
    pub due_unpaced: Option<DateTime<Utc>>,
    /// Kept warm (refreshed ahead of expiry) until then: the last time a
    /// client asked, plus a day.
    pub warm_until: Option<DateTime<Utc>>,
    /// A token was fetched (or found in the cache) at least once. Only
    /// such a slot is kept warm: one asked for whose fetches all failed
    /// (a built-in `google` on a machine without Google credentials) is
    /// not retried in the background for a day; the next `get` asks.
    pub succeeded: bool,
    /// The answer to a `get` with `token`, framed for the socket: made at
    /// the first such answer and written as is by the next ones
    /// (`answer.rs`). It names the token it frames, so a frame left from
    /// a replaced token is never used.
    pub framed: Option<Arc<Framed>>,
}

/// What a `get` answered from memory takes from its slot.
pub struct Hit {
    pub token: CachedToken,
    pub framed: Option<Arc<Framed>>,
}

impl SlotState {
    /// Replaces the token, and drops the frame made for the old one.
    pub fn set_token(&mut self, token: Option<CachedToken>) {
        self.token = token;
        self.framed = None;
    }

    /// Keeps the slot warm until `until`. True if it was not warm, or only
    /// for less than an hour more: the scheduler should look.
    pub fn warm(&mut self, until: DateTime<Utc>) -> bool {
        let newly_warm = self
            .warm_until
            .is_none_or(|w| w < until - chrono::Duration::hours(1));
        self.warm_until = Some(until);
        newly_warm
    }

    /// See [`Slot::demand`].
    fn demand(&mut self, now: DateTime<Utc>) -> bool {
        let held_by_pacing = self.due_unpaced.is_some_and(|d| d <= now)
            && self.next_refresh.is_some_and(|n| n > now)
            && !self.in_flight;
        if held_by_pacing {
            self.next_refresh = Some(now);
            self.due_unpaced = None;
        }
        held_by_pacing
    }

    /// Whether the scheduler refreshes this slot: `prefetch = true`, or
    /// asked for within the warm window and fetched successfully at least
    /// once.
    fn is_warm(&self, now: DateTime<Utc>, prefetch: bool) -> bool {
        prefetch || (self.succeeded && self.warm_until.is_some_and(|w| w > now))
    }
}

impl Slot {
    pub fn with_token(token: CachedToken) -> Self {
        let slot = Self::default();
        {
            let mut s = slot.lock();
            s.set_token(Some(token));
            s.succeeded = true;
        }
        slot
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        // A panic while holding this lock cannot leave the state half
        // written (every update is a few assignments), so poison is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A `get`'s look at the slot, under one lock (it was taken three
    /// times, issue 15): keeps the slot warm until `warm_until`, takes the
    /// token if it is valid at `now` for `min_valid` (and `cached`: not a
    /// forced refresh), and notes the demand ([`Slot::demand`]). Also says
    /// whether the scheduler should look.
    pub fn ask(
        &self,
        now: DateTime<Utc>,
        min_valid: Duration,
        warm_until: DateTime<Utc>,
        cached: bool,
    ) -> (Option<Hit>, bool) {
        let mut s = self.lock();
        let mut wake = s.warm(warm_until);
        let token = s
            .token
            .as_ref()
            .filter(|t| cached && t.is_valid_for(now, min_valid))
            .cloned();
        let hit = token.map(|token| Hit {
            token,
            framed: s.framed.clone(),
        });
        if hit.is_some() {
            wake |= s.demand(now);
        }
        (hit, wake)
    }

    /// Keeps `framed` for the next `get`s, if the token it frames is
    /// still this slot's.
    pub fn keep_frame(&self, framed: Arc<Framed>) {
        let mut s = self.lock();
        if s.token.as_ref().is_some_and(|t| framed.frames(t)) {
            s.framed = Some(framed);
        }
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

    /// (attempts finished, attempts started).
    pub fn counters(&self) -> (u64, u64) {
        let s = self.lock();
        (s.attempts, s.started)
    }

    /// Records the outcome of a fetch that started at `started`, and plans
    /// the next background refresh by `policy`.
    pub fn finish(
        &self,
        outcome: &Result<CachedToken, FetchError>,
        started: DateTime<Utc>,
        policy: Policy,
    ) {
        let mut s = self.lock();
        s.attempts += 1;
        s.in_flight = false;
        s.due_unpaced = None;
        // How long nothing may ask upstream: what `Retry-After` said, and
        // for a refused request (a 4xx without a permanent code) at least
        // the refusal's hold.
        let hold = match outcome {
            Err(e) if e.class == ErrorClass::Rejected => Some(
                schedule::rejected_hold(s.consecutive_failures + 1)
                    .max(e.retry_after.unwrap_or(Duration::ZERO)),
            ),
            Err(e) => e.retry_after,
            Ok(_) => None,
        };
        s.next_refresh = match outcome {
            Ok(new) => {
                let mut due =
                    schedule::due_at(policy, new.fetched_at, new.expires_at, schedule::jitter());
                let same = s
                    .token
                    .as_ref()
                    .is_some_and(|old| old.token == new.token && old.expires_at == new.expires_at);
                if same {
                    // Upstream handed back what we had: do not ask again at once.
                    due = due.max(started + schedule::to_chrono(schedule::SAME_TOKEN_PAUSE));
                }
                s.due_unpaced = Some(due);
                Some(schedule::paced(due, new.fetched_at))
            }
            Err(e) if e.is_permanent() => None,
            Err(_) => Some(schedule::retry_at(
                started,
                s.consecutive_failures + 1,
                schedule::jitter(),
                hold,
            )),
        };
        match outcome {
            Ok(token) => {
                s.set_token(Some(token.clone()));
                s.succeeded = true;
                s.fetches += 1;
                s.last_error = None;
                s.consecutive_failures = 0;
            }
            Err(e) => {
                s.last_error = Some(e.clone());
                s.consecutive_failures += 1;
            }
        }
        s.not_before = hold.and_then(|h| chrono::Duration::from_std(h).ok().map(|d| started + d));
    }

    /// The last error, if upstream asked us (with `Retry-After`, or by
    /// refusing the request) not to call again before a time still in the
    /// future.
    pub fn held_off(&self, now: DateTime<Utc>) -> Option<FetchError> {
        let s = self.lock();
        let until = s.not_before.filter(|t| *t > now)?;
        let mut e = s.last_error.clone()?;
        let secs = (until - now).num_seconds().max(1);
        let why = if e.class == ErrorClass::Rejected && e.retry_after.is_none() {
            "refused; `credcache refresh` asks at once"
        } else {
            "as Retry-After said"
        };
        e.message = format!("{} (not asking again for {secs}s, {why})", e.message);
        Some(e)
    }

    /// Drops the token and the error history.
    pub fn clear(&self) {
        let mut s = self.lock();
        s.set_token(None);
        s.next_refresh = None;
        s.due_unpaced = None;
        s.not_before = None;
        s.last_error = None;
        s.consecutive_failures = 0;
    }

    /// The error kept from a permanent failure (`invalid_grant`, a 401 its
    /// retry did not cure, 403): a `get` answers with it instead of asking
    /// upstream again, until a reload or an explicit refresh.
    pub fn kept_error(&self) -> Option<FetchError> {
        self.lock()
            .last_error
            .clone()
            .filter(FetchError::is_permanent)
    }

    /// Forgets a kept permanent error (the config or an identity file
    /// changed, so it may no longer hold).
    pub fn forgive(&self) {
        let mut s = self.lock();
        if s.last_error.as_ref().is_some_and(FetchError::is_permanent) {
            s.last_error = None;
            s.consecutive_failures = 0;
        }
    }

    /// A client was answered from the cache at `now`. If the refresh was
    /// due by the policy and only [`schedule::MIN_REFRESH_INTERVAL`] held
    /// it back, it is brought forward to now: somebody uses the token, so
    /// it is kept fresh as if it lived longer. True if the plan changed
    /// (the scheduler should look).
    pub fn demand(&self, now: DateTime<Utc>) -> bool {
        self.lock().demand(now)
    }

    /// Whether the background refresh is due at `now`.
    pub fn is_due(&self, now: DateTime<Utc>, prefetch: bool) -> bool {
        let s = self.lock();
        let warm = s.is_warm(now, prefetch);
        warm && !s.in_flight && s.next_refresh.is_some_and(|t| t <= now)
    }

    /// When this slot next needs the scheduler, if it is warm.
    pub fn wake_at(&self, now: DateTime<Utc>, prefetch: bool) -> Option<DateTime<Utc>> {
        let s = self.lock();
        if s.is_warm(now, prefetch) && !s.in_flight {
            s.next_refresh
        } else {
            None
        }
    }

    pub fn state(&self, now: DateTime<Utc>) -> CredentialState {
        let s = self.lock();
        let valid = s.token.as_ref().is_some_and(|t| t.expires_at > now);
        match (s.in_flight, valid, &s.token, &s.last_error) {
            (true, _, _, _) => CredentialState::Refreshing,
            (false, false, _, Some(e)) if e.class == ErrorClass::NeedsLogin => {
                CredentialState::NeedsLogin
            }
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

    const POLICY: Policy = Policy {
        refresh_ahead: Duration::from_secs(300),
        refresh_fraction: 0.2,
    };

    fn token(fetched: i64, expires: i64) -> CachedToken {
        CachedToken {
            token: Secret::new("t"),
            fetched_at: DateTime::from_timestamp(fetched, 0).unwrap(),
            expires_at: DateTime::from_timestamp(expires, 0).unwrap(),
            quota_project: None,
        }
    }

    #[test]
    fn validity_honours_min_valid_capped_at_a_quarter_of_the_lifetime() {
        let t = token(0, 3600);
        let at = |s| DateTime::from_timestamp(s, 0).unwrap();
        assert!(t.is_valid_for(at(3000), Duration::from_secs(60)));
        assert!(!t.is_valid_for(at(3540), Duration::from_secs(60)));
        assert!(
            !t.is_valid_for(at(3600), Duration::ZERO),
            "expired is never valid"
        );
        assert!(!t.is_valid_for(at(4000), Duration::ZERO));
        // A 20 s token with min_valid 60 s: usable for its first 15 s,
        // 5 s past the refresh planned at half its lifetime.
        let short = token(0, 20);
        assert!(short.is_valid_for(at(14), Duration::from_secs(60)));
        assert!(!short.is_valid_for(at(15), Duration::from_secs(60)));
        // Never past expiry, whatever the cap.
        let tiny = token(0, 2);
        assert!(tiny.is_valid_for(at(1), Duration::from_secs(60)));
        assert!(!tiny.is_valid_for(at(2), Duration::ZERO));
    }

    #[test]
    fn states() {
        let now = DateTime::from_timestamp(100, 0).unwrap();
        let slot = Slot::default();
        assert_eq!(slot.state(now), CredentialState::NeverFetched);
        slot.finish(&Err(FetchError::transient("boom")), now, POLICY);
        assert_eq!(slot.state(now), CredentialState::Failing);
        slot.finish(&Ok(token(0, 200)), now, POLICY);
        assert_eq!(slot.state(now), CredentialState::Fresh);
        slot.finish(&Err(FetchError::transient("boom")), now, POLICY);
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
    fn an_expired_token_is_never_listed_fresh() {
        let at = |s| DateTime::from_timestamp(s, 0).unwrap();
        let slot = Slot::default();
        slot.finish(&Ok(token(0, 2)), at(0), POLICY);
        assert_eq!(slot.state(at(1)), CredentialState::Fresh);
        // Pacing holds the next refresh until 10 s: meanwhile it is expired.
        assert_eq!(slot.lock().next_refresh, Some(at(10)));
        assert_eq!(slot.state(at(2)), CredentialState::Expired);
        assert_eq!(slot.state(at(5)), CredentialState::Expired);
    }

    #[test]
    fn short_tokens_are_paced_unless_a_client_asks() {
        let at = |s| DateTime::from_timestamp(s, 0).unwrap();
        let slot = Slot::default();
        slot.lock().warm_until = Some(at(100_000));
        // 4 s token: due about 2 s in by the policy, paced to 10 s.
        slot.finish(&Ok(token(0, 4)), at(0), POLICY);
        assert_eq!(slot.lock().next_refresh, Some(at(10)));
        assert!(!slot.is_due(at(3), false));
        // A get before the policy's due time changes nothing...
        assert!(!slot.demand(at(1)));
        assert_eq!(slot.lock().next_refresh, Some(at(10)));
        // ...one after it brings the refresh forward to now, once.
        assert!(slot.demand(at(3)));
        assert!(slot.is_due(at(3), false));
        assert!(!slot.demand(at(3)));
        // Not while a fetch is in flight.
        slot.finish(&Ok(token(20, 24)), at(20), POLICY);
        slot.lock().in_flight = true;
        assert!(!slot.demand(at(23)));
        // A long-lived token is not paced at all.
        slot.lock().in_flight = false;
        slot.finish(&Ok(token(100, 3700)), at(100), POLICY);
        assert!(!slot.demand(at(200)));
        let due = slot.lock().next_refresh.unwrap();
        assert!(due > at(100 + 2880 - 73) && due <= at(100 + 2880));
    }

    #[test]
    fn a_refused_request_is_held_off_then_asked_again() {
        let at = |s| DateTime::from_timestamp(s, 0).unwrap();
        let slot = Slot::default();
        let mut e = FetchError::permanent("x answered 409: conflict");
        e.class = ErrorClass::Rejected;
        e.status = Some(409);
        slot.finish(&Err(e.clone()), at(0), POLICY);
        // Not kept forever...
        assert!(slot.kept_error().is_none());
        // ...but held for 30 s, then asked again.
        let held = slot.held_off(at(10)).unwrap();
        assert_eq!(
            held.message,
            "x answered 409: conflict (not asking again for 20s, refused; `credcache refresh` asks at once)"
        );
        assert!(slot.held_off(at(30)).is_none());
        assert_eq!(slot.lock().next_refresh, Some(at(30)));
        // A second refusal in a row: 60 s.
        slot.finish(&Err(e), at(30), POLICY);
        assert!(slot.held_off(at(89)).is_some());
        assert!(slot.held_off(at(90)).is_none());
    }

    #[test]
    fn retry_after_holds_fetches_off_until_it_passes() {
        let now = DateTime::from_timestamp(100, 0).unwrap();
        let slot = Slot::default();
        let mut e = FetchError::transient("answered 429");
        e.retry_after = Some(Duration::from_secs(30));
        slot.finish(&Err(e), now, POLICY);
        let held = slot.held_off(now + chrono::Duration::seconds(10)).unwrap();
        assert_eq!(
            held.message,
            "answered 429 (not asking again for 20s, as Retry-After said)"
        );
        assert!(slot.held_off(now + chrono::Duration::seconds(30)).is_none());
        slot.finish(&Ok(token(0, 200)), now, POLICY);
        assert!(slot.held_off(now).is_none());
    }

    #[test]
    fn planning_after_success_failure_and_the_same_token() {
        let at = |s| DateTime::from_timestamp(s, 0).unwrap();
        let slot = Slot::default();
        slot.lock().warm_until = Some(at(100_000));
        slot.finish(&Ok(token(0, 3600)), at(0), POLICY);
        let due = slot.lock().next_refresh.unwrap();
        assert!(due <= at(2880) && due > at(2880 - 73), "{due}");
        assert!(!slot.is_due(at(2000), false) && slot.is_due(at(2880), false));
        // The same token and expiry again: not before 30 s from now.
        slot.finish(&Ok(token(0, 3600)), at(2880), POLICY);
        assert!(slot.lock().next_refresh.unwrap() >= at(2910));
        // A transient failure: backoff (1 s window for the first).
        slot.finish(&Err(FetchError::transient("500")), at(3000), POLICY);
        assert!(slot.lock().next_refresh.unwrap() <= at(3001));
        // A permanent one: nothing planned, and the error is kept.
        slot.finish(
            &Err(FetchError::permanent("invalid_grant")),
            at(3000),
            POLICY,
        );
        assert_eq!(slot.lock().next_refresh, None);
        assert!(slot.kept_error().is_some());
        slot.forgive();
        assert!(slot.kept_error().is_none());
        // Never fetched successfully: asked for, but not kept warm.
        let never = Slot::default();
        never.lock().warm_until = Some(at(100_000));
        never.finish(&Err(FetchError::transient("500")), at(0), POLICY);
        assert!(never.lock().next_refresh.is_some());
        assert!(!never.is_due(at(50), false));
        assert_eq!(never.wake_at(at(50), false), None);
        assert!(never.is_due(at(50), true), "prefetch still retries");
        // Not warm: never due.
        slot.lock().next_refresh = Some(at(0));
        slot.lock().warm_until = Some(at(10));
        assert!(!slot.is_due(at(20), false));
        assert!(slot.is_due(at(20), true), "prefetch keeps it warm");
    }
}
