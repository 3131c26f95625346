//! Sources no credential names: the identity a Google credential
//! impersonates from (its key file, authorized user or metadata server).
//!
//! A provider asks for one by a key that names the source, the same for
//! every credential over it (`Dependencies::source_token`), so ten
//! impersonated credentials over one key file share one token and one
//! key-grant call per source lifetime. Source tokens live in memory only,
//! in slots of their own: `status` shows them (`source_infos`), but they
//! are not written to disk (the credentials made from them are) and not
//! refreshed in the background;
//! a dependent's refresh fetches its source when the cached one is too
//! close to expiry. A reload, or `forget --all`, drops them.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use credcache_shared::codec;
use credcache_shared::protocol::SourceInfo;

use super::{CachedToken, Engine, Slot};
use crate::providers::{AuthToken, FetchContext, FetchError, Provider, SourceId};
use crate::schedule::Policy;

/// The most bytes of sources a `Status` answer carries; the rest are
/// counted (`sources_not_shown`).
const SOURCE_BYTES: usize = credcache_shared::protocol::PAGE_BYTES / 8;

/// One source: its slot, what it is, and who fetched through it.
pub(super) struct Source {
    slot: Arc<Slot>,
    label: String,
    users: BTreeSet<String>,
}

impl Engine {
    /// Source `id`'s slot, with `user` noted among the credentials over it.
    fn source_slot(&self, id: SourceId<'_>, user: &str) -> Arc<Slot> {
        let mut sources = self.0.sources.lock().unwrap_or_else(|p| p.into_inner());
        let source = sources.entry(id.key.to_owned()).or_insert_with(|| Source {
            slot: Arc::default(),
            label: crate::http::sanitize(id.label, 300),
            users: BTreeSet::new(),
        });
        if !source.users.contains(user) {
            source.users.insert(user.to_owned());
        }
        source.slot.clone()
    }

    /// The token of source `id`, fetched by `source` if none in memory is
    /// valid for `min_valid`; concurrent callers share one fetch and its
    /// outcome. `user` is the credential asking.
    pub(super) async fn source_token(
        &self,
        id: SourceId<'_>,
        user: &str,
        source: &dyn Provider,
    ) -> Result<AuthToken, FetchError> {
        let key = id.key;
        let loaded = self.loaded();
        let min_valid = loaded.config.daemon.min_valid;
        let slot = self.source_slot(id, user);
        let valid = |slot: &Slot| slot.valid_token(self.0.clock.now(), min_valid);
        if let Some(t) = valid(&slot) {
            return Ok(auth(t));
        }
        let (seen, _) = slot.counters();
        let _flight = slot.fetch.lock().await;
        if let Some(t) = valid(&slot) {
            return Ok(auth(t));
        }
        // A fetch finished while we queued and failed: its error answers
        // us too, so a broken source is asked once, not once per caller.
        if slot.counters().0 != seen
            && let Some(e) = slot.lock().last_error.clone()
        {
            return Err(e);
        }
        {
            let mut s = slot.lock();
            s.in_flight = true;
            s.started += 1;
        }
        let now = self.0.clock.now();
        let timeout = loaded.config.daemon.http_timeout;
        let cx = FetchContext {
            name: key,
            want: None,
            deps: self,
            http: &loaded.http,
            now,
            timeout,
        };
        let started = Instant::now();
        let fetched = tokio::time::timeout(timeout + Duration::from_secs(1), source.fetch(&cx))
            .await
            .unwrap_or_else(|_| Err(FetchError::transient("no answer within http_timeout")))
            .and_then(|f| crate::http::check_token(&f.token).map(|()| f));
        let outcome = match fetched {
            Ok(f) if f.expires_at <= now => Err(FetchError::transient(
                "the source token fetched has already expired",
            )),
            Ok(f) => Ok(CachedToken {
                token: f.token,
                expires_at: f.expires_at,
                fetched_at: now,
                quota_project: f.quota_project,
            }),
            Err(e) => Err(e),
        };
        slot.finish(
            &outcome,
            now,
            Policy {
                refresh_ahead: loaded.config.daemon.refresh_ahead,
                refresh_fraction: loaded.config.daemon.refresh_fraction,
            },
        );
        match &outcome {
            Ok(_) => tracing::info!(
                source = id.label,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "fetched a source token"
            ),
            Err(e) => tracing::warn!(source = id.label, "source fetch failed: {}", e.message),
        }
        outcome.map(auth)
    }

    /// Drops source `key`'s token if it is still `rejected`; false if `key`
    /// is no source.
    pub(super) fn reject_source(&self, key: &str, rejected: &credcache_shared::Secret) -> bool {
        let sources = self.0.sources.lock().unwrap_or_else(|p| p.into_inner());
        let Some(source) = sources.get(key) else {
            return false;
        };
        let mut s = source.slot.lock();
        if s.token.as_ref().is_some_and(|t| t.token == *rejected) {
            s.set_token(None);
            tracing::info!(
                source = key,
                "an API rejected this source token: dropping it"
            );
        }
        true
    }

    /// Drops every source token (on reload and `forget --all`).
    pub(super) fn clear_sources(&self) {
        self.0
            .sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// The sources held, by description, as many as fit in
    /// [`SOURCE_BYTES`] encoded, and how many did not fit.
    pub(super) fn source_infos(&self) -> (Vec<SourceInfo>, u32) {
        let now = self.0.clock.now();
        let loaded = self.loaded();
        let mut infos: Vec<SourceInfo> = {
            let sources = self.0.sources.lock().unwrap_or_else(|p| p.into_inner());
            sources
                .values()
                .map(|source| {
                    let state = source.slot.state(now);
                    let s = source.slot.lock();
                    let shared_by = source
                        .users
                        .iter()
                        .filter(|u| loaded.entries.contains_key(u.as_str()))
                        .count();
                    SourceInfo {
                        source: source.label.clone(),
                        state,
                        expires_at: s.token.as_ref().map(|t| t.expires_at),
                        fetched_at: s.token.as_ref().map(|t| t.fetched_at),
                        shared_by: u32::try_from(shared_by).unwrap_or(u32::MAX),
                        fetches: s.fetches,
                        last_error: s.last_error.as_ref().map(|e| e.message.clone()),
                    }
                })
                .collect()
        };
        infos.sort_by(|a, b| a.source.cmp(&b.source));
        let mut used = 0;
        let fit = infos
            .iter()
            .take_while(|i| {
                used += codec::to_vec(i).map_or(SOURCE_BYTES, |b| b.len());
                used <= SOURCE_BYTES
            })
            .count();
        let not_shown = infos.len() - fit;
        infos.truncate(fit);
        (infos, u32::try_from(not_shown).unwrap_or(u32::MAX))
    }
}

fn auth(t: CachedToken) -> AuthToken {
    AuthToken {
        token: t.token,
        quota_project: t.quota_project,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use crate::engine::tests::{Scripted, engine_with};
    use credcache_shared::protocol::CredentialState;

    use crate::clock::Clock;
    use crate::providers::FetchError;

    use super::*;

    /// `n` tasks asking for source `key` at once; the one fetch is let go
    /// once it started.
    async fn ask_at_once(
        engine: &Engine,
        p: &Arc<Scripted>,
        key: &'static str,
        n: usize,
    ) -> Vec<Result<AuthToken, FetchError>> {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..n {
            let (e, p) = (engine.clone(), p.clone());
            tasks.spawn(async move { e.source_token(id(key), "user", &*p).await });
        }
        while p.calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        p.gate.add_permits(1);
        let mut out = Vec::new();
        while let Some(r) = tasks.join_next().await {
            out.push(r.unwrap());
        }
        out
    }

    fn id(key: &str) -> SourceId<'_> {
        SourceId { key, label: key }
    }

    fn calls(p: &Scripted) -> u32 {
        p.calls.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn concurrent_waiters_share_one_source_fetch() {
        let (engine, p, _clock, _tmp) = engine_with(vec![Ok(3600)]);
        let answers = ask_at_once(&engine, &p, "google-source:k", 25).await;
        assert_eq!(answers.len(), 25);
        for a in answers {
            assert_eq!(a.unwrap().token.expose(), "token-0");
        }
        assert_eq!(calls(&p), 1);
    }

    #[tokio::test]
    async fn a_source_token_is_reused_until_near_expiry_then_fetched_again() {
        let (engine, p, clock, _tmp) = engine_with(vec![Ok(3600), Ok(3600)]);
        p.gate.add_permits(2);
        let get = || engine.source_token(id("k"), "user", &*p);
        assert_eq!(get().await.unwrap().token.expose(), "token-0");
        clock.advance(chrono::Duration::seconds(3539));
        // 61 s left, min_valid 60 s: still served...
        assert_eq!(get().await.unwrap().token.expose(), "token-0");
        assert_eq!(calls(&p), 1);
        // ...but not a second later.
        clock.advance(chrono::Duration::seconds(1));
        assert_eq!(get().await.unwrap().token.expose(), "token-1");
        assert_eq!(calls(&p), 2);
        assert_eq!(get().await.unwrap().token.expose(), "token-1");
        assert_eq!(calls(&p), 2);
    }

    #[tokio::test]
    async fn a_failure_answers_its_waiters_but_is_not_kept() {
        let (engine, p, _clock, _tmp) = engine_with(vec![
            Err(FetchError::permanent("invalid_grant: revoked")),
            Ok(3600),
        ]);
        let answers = ask_at_once(&engine, &p, "k", 10).await;
        for a in answers {
            assert_eq!(a.unwrap_err().message, "invalid_grant: revoked");
        }
        assert_eq!(
            calls(&p),
            1,
            "a broken source is asked once, not per waiter"
        );
        // The next ask, with no clock movement, is a new attempt: a source
        // error is never served from memory (the credential over it keeps
        // its own error, by its own rules).
        p.gate.add_permits(1);
        assert_eq!(
            engine
                .source_token(id("k"), "user", &*p)
                .await
                .unwrap()
                .token
                .expose(),
            "token-1"
        );
        assert_eq!(calls(&p), 2);
    }

    #[tokio::test]
    async fn different_sources_are_fetched_and_kept_apart() {
        let (engine, p, _clock, _tmp) = engine_with(vec![Ok(3600), Ok(3600)]);
        p.gate.add_permits(2);
        assert_eq!(
            engine
                .source_token(id("a"), "user", &*p)
                .await
                .unwrap()
                .token
                .expose(),
            "token-0"
        );
        assert_eq!(
            engine
                .source_token(id("b"), "user", &*p)
                .await
                .unwrap()
                .token
                .expose(),
            "token-1"
        );
        assert_eq!(calls(&p), 2);
        assert_eq!(
            engine
                .source_token(id("a"), "user", &*p)
                .await
                .unwrap()
                .token
                .expose(),
            "token-0"
        );
        assert_eq!(
            engine
                .source_token(id("b"), "user", &*p)
                .await
                .unwrap()
                .token
                .expose(),
            "token-1"
        );
        assert_eq!(calls(&p), 2);
    }

    #[tokio::test]
    async fn a_rejected_source_token_is_dropped_once_and_a_reload_drops_all() {
        let (engine, p, _clock, _tmp) = engine_with(vec![Ok(3600), Ok(3600), Ok(3600)]);
        p.gate.add_permits(3);
        let first = engine.source_token(id("k"), "user", &*p).await.unwrap();
        assert!(!engine.reject_source("no such source", &first.token));
        assert!(engine.reject_source("k", &first.token));
        let second = engine.source_token(id("k"), "user", &*p).await.unwrap();
        assert_eq!(second.token.expose(), "token-1");
        // A stale rejection (of the token already replaced) keeps the new one.
        assert!(engine.reject_source("k", &first.token));
        assert_eq!(
            engine
                .source_token(id("k"), "user", &*p)
                .await
                .unwrap()
                .token
                .expose(),
            "token-1"
        );
        assert_eq!(calls(&p), 2);
        engine.clear_sources();
        assert_eq!(
            engine
                .source_token(id("k"), "user", &*p)
                .await
                .unwrap()
                .token
                .expose(),
            "token-2"
        );
    }

    #[tokio::test]
    async fn an_already_expired_source_token_is_an_error_and_not_served() {
        let (engine, p, _clock, _tmp) = engine_with(vec![Ok(-1), Ok(3600)]);
        p.gate.add_permits(2);
        let e = engine.source_token(id("k"), "user", &*p).await.unwrap_err();
        assert!(e.message.contains("already expired"), "{}", e.message);
        assert_eq!(
            engine
                .source_token(id("k"), "user", &*p)
                .await
                .unwrap()
                .token
                .expose(),
            "token-1"
        );
    }

    #[tokio::test]
    async fn status_shows_each_source_and_how_many_configured_credentials_share_it() {
        let (engine, p, clock, _tmp) =
            engine_with(vec![Ok(3600), Err(FetchError::transient("500"))]);
        p.gate.add_permits(2);
        assert_eq!(engine.source_infos(), (vec![], 0));
        let key = SourceId {
            key: "google-source:{...}",
            label: "key file /k/sa.json",
        };
        engine.source_token(key, "v", &*p).await.unwrap();
        // A credential no longer configured is not counted.
        engine.source_token(key, "gone", &*p).await.unwrap();
        let broken = SourceId {
            key: "b",
            label: "external account /k/wif.json",
        };
        engine.source_token(broken, "v", &*p).await.unwrap_err();
        let (infos, not_shown) = engine.source_infos();
        assert_eq!(not_shown, 0);
        assert_eq!(infos.len(), 2);
        let (wif, sa) = (&infos[0], &infos[1]);
        assert_eq!(wif.source, "external account /k/wif.json");
        assert_eq!(wif.state, CredentialState::Failing);
        assert_eq!(wif.last_error.as_deref(), Some("500"));
        assert_eq!(wif.expires_at, None);
        assert_eq!(sa.source, "key file /k/sa.json");
        assert_eq!(sa.state, CredentialState::Fresh);
        assert_eq!(sa.shared_by, 1);
        assert_eq!(sa.fetches, 1);
        assert_eq!(sa.fetched_at, Some(clock.now()));
        assert_eq!(
            sa.expires_at,
            Some(clock.now() + chrono::Duration::hours(1))
        );
        assert!(!format!("{infos:?}").contains("token-0"));
        engine.clear_sources();
        assert_eq!(engine.source_infos(), (vec![], 0));
    }
}
