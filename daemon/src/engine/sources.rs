//! Sources no credential names: the identity a Google credential
//! impersonates from (its key file, authorized user or metadata server).
//!
//! A provider asks for one by a key that names the source, the same for
//! every credential over it (`Dependencies::source_token`), so ten
//! impersonated credentials over one key file share one token and one
//! key-grant call per source lifetime. Source tokens live in memory only,
//! in slots of their own: they are not listed, not written to disk (the
//! credentials made from them are) and not refreshed in the background;
//! a dependent's refresh fetches its source when the cached one is too
//! close to expiry. A reload, or `forget --all`, drops them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{CachedToken, Engine, Slot};
use crate::providers::{AuthToken, FetchContext, FetchError, Provider};
use crate::schedule::Policy;

impl Engine {
    fn source_slot(&self, key: &str) -> Arc<Slot> {
        let mut sources = self.0.sources.lock().unwrap_or_else(|p| p.into_inner());
        sources.entry(key.to_owned()).or_default().clone()
    }

    /// The token of source `key`, fetched by `source` if none in memory is
    /// valid for `min_valid`; concurrent callers share one fetch and its
    /// outcome.
    pub(super) async fn source_token(
        &self,
        key: &str,
        source: &dyn Provider,
    ) -> Result<AuthToken, FetchError> {
        let loaded = self.loaded();
        let min_valid = loaded.config.daemon.min_valid;
        let slot = self.source_slot(key);
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
                source = key,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "fetched a source token"
            ),
            Err(e) => tracing::warn!(source = key, "source fetch failed: {}", e.message),
        }
        outcome.map(auth)
    }

    /// Drops source `key`'s token if it is still `rejected`; false if `key`
    /// is no source.
    pub(super) fn reject_source(&self, key: &str, rejected: &credcache_shared::Secret) -> bool {
        let sources = self.0.sources.lock().unwrap_or_else(|p| p.into_inner());
        let Some(slot) = sources.get(key) else {
            return false;
        };
        let mut s = slot.lock();
        if s.token.as_ref().is_some_and(|t| t.token == *rejected) {
            s.token = None;
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
            tasks.spawn(async move { e.source_token(key, &*p).await });
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
        let get = || engine.source_token("k", &*p);
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
            engine.source_token("k", &*p).await.unwrap().token.expose(),
            "token-1"
        );
        assert_eq!(calls(&p), 2);
    }

    #[tokio::test]
    async fn different_sources_are_fetched_and_kept_apart() {
        let (engine, p, _clock, _tmp) = engine_with(vec![Ok(3600), Ok(3600)]);
        p.gate.add_permits(2);
        assert_eq!(
            engine.source_token("a", &*p).await.unwrap().token.expose(),
            "token-0"
        );
        assert_eq!(
            engine.source_token("b", &*p).await.unwrap().token.expose(),
            "token-1"
        );
        assert_eq!(calls(&p), 2);
        assert_eq!(
            engine.source_token("a", &*p).await.unwrap().token.expose(),
            "token-0"
        );
        assert_eq!(
            engine.source_token("b", &*p).await.unwrap().token.expose(),
            "token-1"
        );
        assert_eq!(calls(&p), 2);
    }

    #[tokio::test]
    async fn a_rejected_source_token_is_dropped_once_and_a_reload_drops_all() {
        let (engine, p, _clock, _tmp) = engine_with(vec![Ok(3600), Ok(3600), Ok(3600)]);
        p.gate.add_permits(3);
        let first = engine.source_token("k", &*p).await.unwrap();
        assert!(!engine.reject_source("no such source", &first.token));
        assert!(engine.reject_source("k", &first.token));
        let second = engine.source_token("k", &*p).await.unwrap();
        assert_eq!(second.token.expose(), "token-1");
        // A stale rejection (of the token already replaced) keeps the new one.
        assert!(engine.reject_source("k", &first.token));
        assert_eq!(
            engine.source_token("k", &*p).await.unwrap().token.expose(),
            "token-1"
        );
        assert_eq!(calls(&p), 2);
        engine.clear_sources();
        assert_eq!(
            engine.source_token("k", &*p).await.unwrap().token.expose(),
            "token-2"
        );
    }

    #[tokio::test]
    async fn an_already_expired_source_token_is_an_error_and_not_served() {
        let (engine, p, _clock, _tmp) = engine_with(vec![Ok(-1), Ok(3600)]);
        p.gate.add_permits(2);
        let e = engine.source_token("k", &*p).await.unwrap_err();
        assert!(e.message.contains("already expired"), "{}", e.message);
        assert_eq!(
            engine.source_token("k", &*p).await.unwrap().token.expose(),
            "token-1"
        );
    }
}
