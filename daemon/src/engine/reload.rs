//! Config watching and reloading: the cheap check (a few `stat` calls, at
//! most once a second, from requests) that notices the config file or an
//! identity file changed, and [`Engine::reload`], which SIGHUP and
//! `credcache daemon reload` call too. An invalid edit leaves the previous
//! config in force and is reported until the file changes again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use credcache_shared::config::Config;
use credcache_shared::protocol::{ErrorKind, WireError};

use super::{Engine, Loaded};
use crate::fingerprint;

/// How often, at most, a request checks whether the config file changed.
const CONFIG_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Size, mtime and inode of the config file and every identity file, so a
/// change to any of them is noticed with a few `stat` calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamps(Vec<(PathBuf, Option<fingerprint::FileStamp>)>);

impl Stamps {
    pub fn take(config_path: &Path, config: &Config) -> Self {
        let mut files = vec![config_path.to_path_buf()];
        files.extend(
            config
                .credentials
                .values()
                .flat_map(|c| fingerprint::identity_files(c)),
        );
        Self(
            files
                .into_iter()
                .map(|p| {
                    let stamp = fingerprint::file_stamp(&p);
                    (p, stamp)
                })
                .collect(),
        )
    }

    pub fn changed(&self) -> bool {
        self.0
            .iter()
            .any(|(p, stamp)| fingerprint::file_stamp(p) != *stamp)
    }
}

/// What the last check of the config found.
pub struct Watch {
    /// Set while the file on disk is invalid and the previous config is in
    /// force.
    pub error: Option<String>,
    /// The stamps of the invalid file, so it is not re-read on every check.
    pub error_stamps: Option<Stamps>,
}

impl Engine {
    /// Checks, at most once a second, whether the config or an identity
    /// file changed, and reloads if so.
    pub(super) fn maybe_reload(&self) {
        self.maybe_reload_at(self.uptime_nanos(Instant::now()));
    }

    /// [`Engine::maybe_reload`] for a request that came at `uptime`
    /// ([`Engine::uptime_nanos`]): the server has read the clock already.
    /// Most requests stop at the first comparison (issue 15).
    pub(super) fn maybe_reload_at(&self, uptime: u64) {
        let last = self.0.last_config_check.load(Ordering::Relaxed);
        if u128::from(uptime.saturating_sub(last)) < CONFIG_CHECK_INTERVAL.as_nanos() {
            return;
        }
        // One request makes the check: the one that moves the mark.
        let claimed = self.0.last_config_check.compare_exchange(
            last,
            uptime,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        if claimed.is_err() {
            return;
        }
        {
            let watch = self.0.watch.lock().unwrap_or_else(|p| p.into_inner());
            let loaded = self.loaded();
            if !loaded.stamps.changed() {
                return;
            }
            // An invalid file that has not changed since it was found
            // invalid is not re-read on every check.
            if let Some(bad) = &watch.error_stamps
                && !bad.changed()
            {
                return;
            }
        }
        let _ = self.reload();
    }

    /// Re-reads the config. Credentials whose settings changed lose their
    /// cached token; an invalid file leaves the previous config in force.
    pub fn reload(&self) -> Result<Vec<String>, WireError> {
        let path = self.0.locations.config_file.clone();
        let config = match self.0.locations.parsed_config.load(&path) {
            Ok(c) => c,
            Err(e) => {
                let message = e.to_string();
                tracing::warn!("config not reloaded, the previous one stays in force: {message}");
                let mut watch = self.0.watch.lock().unwrap_or_else(|p| p.into_inner());
                watch.error = Some(message.clone());
                self.0.config_invalid.store(true, Ordering::Relaxed);
                watch.error_stamps = Some(Stamps::take(&path, &self.loaded().config));
                return Err(WireError::new(ErrorKind::Config, message));
            }
        };
        let old = self.loaded();
        let mut new = Loaded::new(config, &path);
        // The same timeout: keep the HTTP clients and their connections.
        if old.http.timeout() == new.http.timeout() {
            new.http = Arc::clone(&old.http);
        }
        let new = Arc::new(new);
        let mut changed = Vec::new();
        {
            let mut slots = self.0.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.retain(|key, _| {
                // A variant (other scopes, an ID token) goes with its credential.
                let name = super::variant::name_of(key);
                let same = match (old.entries.get(name), new.entries.get(name)) {
                    (Some(a), Some(b)) => a.fingerprint == b.fingerprint,
                    _ => false,
                };
                if !same {
                    changed.push(name.to_owned());
                }
                same
            });
            for (name, entry) in &new.entries {
                if let Some(before) = old.entries.get(name) {
                    entry.keep_provider(before);
                }
            }
            // Swapped while the slots are held: a cached token read from
            // the store (at start, `Engine::load_records`, or a get's
            // read ahead of it) is judged by the fingerprints of the
            // config its slot is kept under.
            *self.0.loaded.write().unwrap_or_else(|p| p.into_inner()) = new.clone();
        }
        drop(old);
        let fingerprints: HashMap<String, String> = new
            .entries
            .iter()
            .map(|(n, e)| (n.to_string(), e.fingerprint.clone()))
            .collect();
        drop(new);
        if let Err(e) = self.0.store.retain(|key, fp| {
            fingerprints
                .get(super::variant::name_of(key))
                .is_some_and(|f| f == fp)
        }) {
            tracing::warn!("could not prune the cache: {e}");
        }
        // A source's file may be what changed.
        self.clear_sources();
        {
            let mut watch = self.0.watch.lock().unwrap_or_else(|p| p.into_inner());
            watch.error = None;
            watch.error_stamps = None;
            self.0.config_invalid.store(false, Ordering::Relaxed);
        }
        // Something changed: a kept permanent error may no longer hold.
        for slot in self
            .0
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            slot.forgive();
        }
        self.plan_prefetch();
        changed.sort();
        changed.dedup();
        tracing::info!(dropped = ?changed, "config reloaded");
        for w in &self.loaded().warnings {
            tracing::warn!("{w}");
        }
        Ok(changed)
    }

    pub(super) fn config_warning(&self) -> Option<String> {
        if !self.0.config_invalid.load(Ordering::Relaxed) {
            return None;
        }
        let watch = self.0.watch.lock().unwrap_or_else(|p| p.into_inner());
        watch
            .error
            .as_ref()
            .map(|e| format!("the config file is invalid, the previous config stays in force: {e}"))
    }
}
