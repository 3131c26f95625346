//! What `list` and `status` show: every credential's state, never a token.

use credcache_shared::codec;
use credcache_shared::protocol::{
    CredentialInfo, CredentialPage, CredentialState, DaemonStatus, PAGE_BYTES, ScopedInfo,
};

use std::sync::atomic::Ordering;

use super::{Engine, Entry};

/// The most bytes of `warnings` a `Status` answer carries (a config with
/// thousands of credentials can warn about each); the rest are counted.
const WARNING_BYTES: usize = PAGE_BYTES / 4;

impl Engine {
    /// Every configured credential's state, in name order.
    pub fn list(&self) -> Vec<CredentialInfo> {
        self.list_after(None, usize::MAX).0
    }

    /// One page of `list`: the credentials after `after`, as many as fit
    /// in [`PAGE_BYTES`] encoded, and the name to continue after if any
    /// are left.
    pub fn list_page(&self, after: Option<&str>) -> CredentialPage {
        let (credentials, next) = self.list_after(after, PAGE_BYTES);
        CredentialPage { credentials, next }
    }

    fn list_after(
        &self,
        after: Option<&str>,
        budget: usize,
    ) -> (Vec<CredentialInfo>, Option<String>) {
        self.maybe_reload();
        let loaded = self.loaded();
        let mut entries: Vec<&Entry> = loaded
            .entries
            .values()
            .filter(|e| after.is_none_or(|a| e.cred.name.as_str() > a))
            .collect();
        entries.sort_unstable_by(|a, b| a.cred.name.cmp(&b.cred.name));
        let mut out = Vec::new();
        let mut used = 0;
        for entry in entries {
            let info = self.info(entry);
            if budget != usize::MAX {
                // An entry's encoded size, plus a little for the Vec's length.
                let size = codec::to_vec(&info).map_or(budget, |b| b.len());
                if used + size > budget && !out.is_empty() {
                    let next = out.last().map(|i: &CredentialInfo| i.name.clone());
                    return (out, next);
                }
                used += size;
            }
            out.push(info);
        }
        (out, None)
    }

    fn info(&self, entry: &Entry) -> CredentialInfo {
        let now = self.0.clock.now();
        let name = entry.cred.name.clone();
        let slot = self
            .0
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&name)
            .cloned()
            .unwrap_or_default();
        let mut state = slot.state(now);
        // A person must sign in before the first fetch could succeed.
        if state == CredentialState::NeverFetched
            && crate::providers::signed_in::SignIn::of(&entry.cred).is_some()
            && !self.0.store.has_refresh_token(&name)
        {
            state = CredentialState::NeedsLogin;
        }
        let scoped = self.scoped_info(&name);
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
            scoped,
            name,
        }
    }

    /// The tokens `name` holds for other scopes and audiences.
    fn scoped_info(&self, name: &str) -> Vec<ScopedInfo> {
        let now = self.0.clock.now();
        let keys = self.variant_keys(name);
        let slots = self.0.slots.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .filter_map(|key| {
                let slot = slots.get(key)?;
                let scopes = match super::variant::want_of(key)? {
                    super::Want::Scopes(s) => s,
                    super::Want::IdToken { audience } => vec![format!("audience:{audience}")],
                };
                let state = slot.state(now);
                let s = slot.lock();
                Some(ScopedInfo {
                    scopes,
                    state,
                    expires_at: s.token.as_ref().map(|t| t.expires_at),
                    fetched_at: s.token.as_ref().map(|t| t.fetched_at),
                    fetches: s.fetches,
                })
            })
            .collect()
    }

    /// The daemon's own state.
    pub fn status(&self) -> DaemonStatus {
        let page = self.list_page(None);
        let (sources, sources_not_shown) = self.source_infos();
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
            dumpable: crate::sys::dumpable(),
            warnings: capped(self.warnings(), WARNING_BYTES),
            sdk: self.sdk_status(),
            credentials: page.credentials,
            more_after: page.next,
            sources,
            sources_not_shown,
        }
    }
}

/// `warnings`, as many as fit in `budget` bytes, then one line counting
/// the rest.
fn capped(mut warnings: Vec<String>, budget: usize) -> Vec<String> {
    let mut used = 0;
    let fit = warnings
        .iter()
        .take_while(|w| {
            used += w.len() + 8;
            used <= budget
        })
        .count();
    if fit < warnings.len() {
        let rest = warnings.len() - fit;
        warnings.truncate(fit);
        warnings.push(format!("... and {rest} more warnings (see the log)"));
    }
    warnings
}
