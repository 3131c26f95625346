//! The engine driven directly, with a scripted provider and a fake clock.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use credcache_shared::Secret;
use credcache_shared::config::Config;
use credcache_shared::protocol::{CredentialState, ErrorKind};
use tokio::sync::Semaphore;

use super::*;
use crate::clock::FakeClock;
use crate::providers::{Fetched, Provider};

/// Counts calls, holds each until the test lets it go, and answers from a
/// script.
struct Scripted {
    calls: AtomicU32,
    gate: Semaphore,
    answers: Mutex<Vec<Result<i64, FetchError>>>,
    clock: Arc<FakeClock>,
}

impl Provider for Scripted {
    fn fetch<'a>(
        &'a self,
        _cx: &'a FetchContext<'a>,
    ) -> BoxFuture<'a, Result<Fetched, FetchError>> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            self.gate.acquire().await.unwrap().forget();
            let answer = self.answers.lock().unwrap().remove(0)?;
            Ok(Fetched::new(
                Secret::new(format!("token-{n}")),
                self.clock.now() + chrono::Duration::seconds(answer),
            ))
        })
    }
}

fn start() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

fn engine_with(
    answers: Vec<Result<i64, FetchError>>,
) -> (Engine, Arc<Scripted>, Arc<FakeClock>, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let config_file = tmp.path().join("config.toml");
    std::fs::write(
        &config_file,
        "[credentials.v]\nkind = \"command\"\ncommand = [\"false\"]\n",
    )
    .unwrap();
    let config = Config::load(&config_file).unwrap();
    let (store, _) = Store::open(
        &tmp.path().join("cache"),
        std::sync::Arc::new(crate_sealer()),
    )
    .unwrap();
    let clock = Arc::new(FakeClock::new(start()));
    let locations = Locations {
        config_file,
        socket: tmp.path().join("s"),
        cache_dir: tmp.path().join("cache"),
    };
    let scripted = Arc::new(Scripted {
        calls: AtomicU32::new(0),
        gate: Semaphore::new(0),
        answers: Mutex::new(answers),
        clock: clock.clone(),
    });
    let provider = scripted.clone();
    let engine = Engine::new(config, locations, store, clock.clone(), move |_, _| {
        provider.clone()
    })
    .unwrap();
    (engine, scripted, clock, tmp)
}

#[tokio::test]
async fn concurrent_gets_make_one_fetch() {
    let (engine, p, _clock, _tmp) = engine_with(vec![Ok(3600)]);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let e = engine.clone();
        tasks.spawn(async move { e.get("v", None, false).await });
    }
    // Let the one fetch finish once every caller is queued behind it.
    while p.calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    p.gate.add_permits(1);
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().unwrap().token.expose(), "token-0");
    }
    assert_eq!(p.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn concurrent_gets_share_a_failure_too() {
    let (engine, p, _clock, _tmp) =
        engine_with(vec![Err(FetchError::transient("upstream said 500"))]);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let e = engine.clone();
        tasks.spawn(async move { e.get("v", None, false).await });
    }
    while p.calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    p.gate.add_permits(1);
    while let Some(r) = tasks.join_next().await {
        let e = r.unwrap().unwrap_err();
        assert_eq!(e.kind, ErrorKind::Upstream);
        assert_eq!(e.message, "upstream said 500");
    }
    assert_eq!(p.calls.load(Ordering::SeqCst), 1);
    assert_eq!(state_of(&engine, "v"), CredentialState::Failing);
}

#[tokio::test]
async fn cached_until_min_valid_then_fetched_again() {
    let (engine, p, clock, _tmp) = engine_with(vec![Ok(3600), Ok(3600)]);
    p.gate.add_permits(2);
    assert_eq!(
        engine.get("v", None, false).await.unwrap().token.expose(),
        "token-0"
    );
    clock.advance(chrono::Duration::seconds(3500));
    assert_eq!(
        engine.get("v", None, false).await.unwrap().token.expose(),
        "token-0"
    );
    // 60 s of min_valid left to serve: 3541 s in, it must be refetched.
    clock.advance(chrono::Duration::seconds(41));
    assert_eq!(
        engine.get("v", None, false).await.unwrap().token.expose(),
        "token-1"
    );
    assert_eq!(p.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_wall_clock_jump_past_expiry_never_serves_the_old_token() {
    let (engine, p, clock, _tmp) =
        engine_with(vec![Ok(3600), Err(FetchError::transient("offline"))]);
    p.gate.add_permits(2);
    engine.get("v", None, false).await.unwrap();
    clock.advance(chrono::Duration::hours(8));
    let e = engine
        .get("v", Some(Duration::ZERO), false)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Upstream);
    assert_eq!(state_of(&engine, "v"), CredentialState::Failing);
}

#[tokio::test]
async fn refresh_forces_a_fetch_and_forget_drops_the_token() {
    let (engine, p, _clock, _tmp) = engine_with(vec![Ok(3600), Ok(3600)]);
    p.gate.add_permits(2);
    engine.get("v", None, false).await.unwrap();
    assert_eq!(
        engine.refresh(Some("v")).await.unwrap(),
        vec!["v".to_owned()]
    );
    assert_eq!(
        engine.get("v", None, false).await.unwrap().token.expose(),
        "token-1"
    );
    assert_eq!(engine.forget(None).await.unwrap(), vec!["v".to_owned()]);
    assert_eq!(state_of(&engine, "v"), CredentialState::NeverFetched);
    assert_eq!(
        engine.get("nope", None, false).await.unwrap_err().kind,
        ErrorKind::NoSuchCredential
    );
}

#[tokio::test]
async fn an_already_expired_answer_is_an_error_not_a_token() {
    let (engine, p, _clock, _tmp) = engine_with(vec![Ok(-5)]);
    p.gate.add_permits(1);
    let e = engine.get("v", None, false).await.unwrap_err();
    assert!(e.message.contains("already expired"), "{}", e.message);
}

fn state_of(engine: &Engine, name: &str) -> CredentialState {
    engine
        .list()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap()
        .state
}

#[tokio::test]
async fn the_scheduler_plans_refreshes_and_notices_a_clock_jump() {
    let (engine, p, clock, _tmp) = engine_with(vec![Ok(3600), Ok(3600)]);
    p.gate.add_permits(2);
    engine.get("v", None, false).await.unwrap();
    let (due, next) = engine.plan(clock.now());
    assert!(due.is_empty());
    let next = next.unwrap();
    // 1 h token: headroom 12 min, jitter up to 72 s earlier.
    assert!(
        next <= start() + chrono::Duration::seconds(2880)
            && next > start() + chrono::Duration::seconds(2807),
        "{next}"
    );

    // The laptop sleeps through the expiry: on wake the refresh is overdue.
    clock.advance(chrono::Duration::hours(8));
    let (due, _) = engine.plan(clock.now());
    assert_eq!(due, vec!["v".to_owned()]);
    // Marked as started: the next pass does not start it twice.
    assert!(engine.plan(clock.now()).0.is_empty());
    engine.background_refresh("v").await;
    assert_eq!(p.calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        engine.get("v", None, false).await.unwrap().token.expose(),
        "token-1"
    );
}

#[tokio::test]
async fn a_permanent_error_is_kept_and_not_retried() {
    let (engine, p, clock, _tmp) = engine_with(vec![
        Err(FetchError::permanent("invalid_grant: revoked")),
        Ok(3600),
    ]);
    p.gate.add_permits(2);
    let e = engine.get("v", None, false).await.unwrap_err();
    assert_eq!(e.message, "invalid_grant: revoked");
    // Neither the scheduler nor a plain get asks upstream again...
    clock.advance(chrono::Duration::hours(1));
    assert_eq!(engine.plan(clock.now()), (vec![], None));
    assert_eq!(
        engine.get("v", None, false).await.unwrap_err().message,
        "invalid_grant: revoked"
    );
    assert_eq!(p.calls.load(Ordering::SeqCst), 1);
    // ...until someone asks explicitly.
    assert_eq!(
        engine.get("v", None, true).await.unwrap().token.expose(),
        "token-1"
    );
}

#[tokio::test]
async fn transient_failures_back_off() {
    let (engine, p, clock, _tmp) = engine_with(vec![
        Ok(3600),
        Err(FetchError::transient("500")),
        Err(FetchError::transient("500")),
    ]);
    p.gate.add_permits(3);
    engine.get("v", None, false).await.unwrap();
    clock.advance(chrono::Duration::seconds(3000));
    engine.background_refresh("v").await;
    let first = engine.plan(clock.now()).1.unwrap();
    assert!(
        first <= clock.now() + chrono::Duration::seconds(1),
        "first retry within 1 s: {first}"
    );
    clock.set(first);
    let (due, _) = engine.plan(clock.now());
    assert_eq!(due, vec!["v".to_owned()]);
    engine.background_refresh("v").await;
    let second = engine.plan(clock.now()).1.unwrap();
    assert!(
        second <= clock.now() + chrono::Duration::seconds(2),
        "second retry within 2 s: {second}"
    );
    // The valid token is served meanwhile.
    assert_eq!(
        engine.get("v", None, false).await.unwrap().token.expose(),
        "token-0"
    );
    assert_eq!(state_of(&engine, "v"), CredentialState::StaleServing);
}

fn crate_sealer() -> crate::seal::Sealer {
    crate::seal::Sealer::new(&[1u8; 32], "test")
}
