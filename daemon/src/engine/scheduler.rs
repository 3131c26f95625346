//! The background refresher: which credentials are kept warm, and the one
//! task that refreshes them ahead of expiry (the policy itself is in
//! `crate::schedule`).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Engine;
use super::slot::Slot;
use crate::schedule;

/// How long the scheduler lets wake-ups gather before a pass. Refreshes
/// are planned minutes ahead (retries a second or more), so this delays
/// nothing that matters.
const COALESCE: Duration = Duration::from_millis(50);

impl Engine {
    /// Keeps `name` warm for a day from now (a watcher does this).
    pub fn keep_warm(&self, name: &str) {
        self.note_asked(name);
    }

    /// Keeps `name` warm for a day from now.
    pub(super) fn note_asked(&self, name: &str) {
        let slot = self.slot(name);
        self.warm_slot(&slot, self.0.clock.now());
    }

    /// Keeps `slot` warm for a day from `now`.
    pub(super) fn warm_slot(&self, slot: &Slot, now: DateTime<Utc>) {
        let until = now + schedule::to_chrono(schedule::WARM_FOR);
        let newly_warm = slot.lock().warm(until);
        if newly_warm {
            self.0.wake.notify_one();
        }
    }

    /// Plans a fetch now for every `prefetch = true` credential that has no
    /// token and nothing planned.
    pub(super) fn plan_prefetch(&self) {
        let loaded = self.loaded();
        let now = self.0.clock.now();
        for entry in loaded.entries.values().filter(|e| e.cred.prefetch) {
            let slot = self.slot(&entry.cred.name);
            let mut s = slot.lock();
            if s.token.is_none() && s.next_refresh.is_none() && s.last_error.is_none() {
                s.next_refresh = Some(now);
            }
        }
        self.0.wake.notify_one();
    }

    /// The background refresher: one task for all credentials. It sleeps
    /// until the earliest planned refresh of a warm credential (or at most
    /// [`schedule::MAX_SLEEP`], so a wall-clock jump is noticed soon), then
    /// starts every refresh that is due. Runs until the daemon stops.
    pub async fn run_scheduler(self) {
        // The cached tokens first: a prefetch must not fetch what is cached.
        self.records_loaded().await;
        self.plan_prefetch();
        loop {
            let now = self.0.clock.now();
            let (due, next) = self.plan(now);
            for name in due {
                let engine = self.clone();
                tokio::spawn(async move { engine.background_refresh(&name).await });
            }
            let wait = next
                .map(|t| (t - now).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(schedule::MAX_SLEEP)
                .min(schedule::MAX_SLEEP);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.0.wake.notified() => {
                    // Every fetch that finishes wakes the scheduler, and a
                    // pass visits every slot: let the fetches that finish
                    // together (a cold fan-out of thousands) share a pass.
                    tokio::time::sleep(COALESCE).await;
                }
            }
        }
    }

    /// The credentials due at `now`, and the earliest planned refresh after.
    /// Due ones are marked in flight so the next pass does not start them
    /// twice.
    pub(super) fn plan(&self, now: DateTime<Utc>) -> (Vec<String>, Option<DateTime<Utc>>) {
        let loaded = self.loaded();
        let mut due = Vec::new();
        let mut next: Option<DateTime<Utc>> = None;
        // No copies of the map: with 10,000 credentials this pass is the
        // daemon's largest piece of work. Lock order is the map, then a
        // slot, as everywhere else.
        let slots = self.0.slots.lock().unwrap_or_else(|p| p.into_inner());
        for (name, slot) in slots.iter() {
            let Some(entry) = loaded.entries.get(super::variant::name_of(name)) else {
                continue;
            };
            // A variant (other scopes, an ID token) is kept warm while
            // asked for, never prefetched.
            let prefetch = entry.cred.prefetch && !name.contains(' ');
            if slot.is_due(now, prefetch) {
                slot.lock().next_refresh = None;
                due.push(name.clone());
            } else if let Some(t) = slot.wake_at(now, prefetch) {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        (due, next)
    }

    /// One background refresh. A `Retry-After` still in force moves it
    /// later; a failure is planned again by the backoff in `Slot::finish`.
    pub(super) async fn background_refresh(&self, key: &str) {
        let loaded = self.loaded();
        let name = key;
        let Some(entry) = loaded.entries.get(super::variant::name_of(key)) else {
            return;
        };
        let want = super::variant::want_of(key);
        let slot = self.slot(key);
        let now = self.0.clock.now();
        if slot.held_off(now).is_some() {
            let mut s = slot.lock();
            s.next_refresh = s.not_before;
            drop(s);
            self.0.wake.notify_one();
            return;
        }
        if slot.kept_error().is_some() {
            return;
        }
        tracing::debug!(credential = name, "background refresh");
        if let Err(e) = self
            .token(&loaded, entry, want.as_ref(), Duration::ZERO, true)
            .await
        {
            tracing::debug!(
                credential = name,
                "background refresh failed: {}",
                e.message
            );
        }
    }
}
