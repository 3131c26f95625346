//! What `list` and `status` show: every credential's state, never a token.

use credcache_shared::protocol::{CredentialInfo, DaemonStatus};

use std::sync::atomic::Ordering;

use super::Engine;

impl Engine {
    /// Every configured credential's state.
    pub fn list(&self) -> Vec<CredentialInfo> {
        self.maybe_reload();
        let loaded = self.loaded();
        let now = self.0.clock.now();
        let mut out: Vec<CredentialInfo> = loaded
            .entries
            .values()
            .map(|entry| {
                let name = entry.cred.name.clone();
                let slot = self
                    .0
                    .slots
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&name)
                    .cloned()
                    .unwrap_or_default();
                let state = slot.state(now);
                let s = slot.lock();
                CredentialInfo {
                    kind: entry.cred.kind().to_owned(),
                    auth: entry.cred.auth().map(str::to_owned),
                    state,
                    expires_at: s.token.as_ref().map(|t| t.expires_at),
                    fetched_at: s.token.as_ref().map(|t| t.fetched_at),
                    next_refresh: s.next_refresh,
                    consecutive_failures: s.consecutive_failures,
                    last_error: s.last_error.as_ref().map(|e| e.message.clone()),
                    fetches: s.fetches,
                    name,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The daemon's own state.
    pub fn status(&self) -> DaemonStatus {
        let credentials = self.list();
        let now = self.0.clock.now();
        DaemonStatus {
            daemon_version: credcache_shared::VERSION.to_owned(),
            protocol_version: credcache_shared::PROTOCOL_VERSION,
            pid: std::process::id(),
            started_at: self.0.started_at,
            uptime_secs: (now - self.0.started_at).num_seconds().max(0) as u64,
            socket: self.0.locations.socket.display().to_string(),
            cache_path: self.0.locations.cache_dir.display().to_string(),
            config_path: self.0.locations.config_file.display().to_string(),
            config_error: self
                .0
                .watch
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .error
                .clone(),
            requests_served: self.0.requests.load(Ordering::Relaxed),
            cache_key: self.0.store.key_location().to_owned(),
            dumpable: !matches!(
                rustix::process::dumpable_behavior(),
                Ok(rustix::process::DumpableBehavior::NotDumpable)
            ),
            warnings: self.warnings(),
            credentials,
        }
    }
}
