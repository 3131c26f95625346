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
pub(super) struct Scripted {
    pub(super) calls: AtomicU32,
    pub(super) gate: Semaphore,
    answers: Mutex<Vec<Result<i64, FetchError>>>,
    clock: Arc<FakeClock>,
    /// What each fetch was asked for beyond the credential's own token.
    wants: Mutex<Vec<Option<Want>>>,
}

impl Provider for Scripted {
    fn fetch<'a>(&'a self, cx: &'a FetchContext<'a>) -> BoxFuture<'a, Result<Fetched, FetchError>> {
        Box::pin(async move {
            self.wants.lock().unwrap().push(cx.want.cloned());
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

pub(super) fn start() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

pub(super) fn engine_with(
    answers: Vec<Result<i64, FetchError>>,
) -> (Engine, Arc<Scripted>, Arc<FakeClock>, tempfile::TempDir) {
    engine_for(
        "[credentials.v]\nkind = \"command\"\ncommand = [\"false\"]\n",
        answers,
    )
}

fn engine_for(
    config: &str,
    answers: Vec<Result<i64, FetchError>>,
) -> (Engine, Arc<Scripted>, Arc<FakeClock>, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let config_file = tmp.path().join("config.toml");
    std::fs::write(&config_file, config).unwrap();
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
        parsed_config: crate::parsed_config::ParsedConfig::in_dir(tmp.path()),
    };
    let scripted = Arc::new(Scripted {
        calls: AtomicU32::new(0),
        gate: Semaphore::new(0),
        answers: Mutex::new(answers),
        clock: clock.clone(),
        wants: Mutex::new(Vec::new()),
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

/// Runs the scheduler's passes on the fake clock from now to `until`, one
/// step at a time, and returns how many background refreshes it started.
async fn run_schedule(engine: &Engine, clock: &FakeClock, until: DateTime<Utc>) -> u32 {
    let mut started = 0;
    while clock.now() < until {
        let (due, _) = engine.plan(clock.now());
        for name in due {
            engine.background_refresh(&name).await;
            started += 1;
        }
        clock.advance(chrono::Duration::milliseconds(100));
    }
    started
}

#[tokio::test]
async fn two_second_tokens_nobody_asks_for_are_refreshed_every_ten_seconds() {
    let (engine, p, clock, _tmp) = engine_with(vec![Ok(2); 10]);
    p.gate.add_permits(10);
    engine.get("v", None, false).await.unwrap();
    // 20 s with nobody asking: at 10 s and 20 s, not every second.
    let refreshes = run_schedule(&engine, &clock, start() + chrono::Duration::seconds(20)).await;
    assert_eq!(refreshes, 1, "one at 10 s (the one at 20 s is not yet due)");
    assert_eq!(p.calls.load(Ordering::SeqCst), 2);
    // Meanwhile the token expired: list says so...
    clock.set(start() + chrono::Duration::seconds(13));
    assert_eq!(state_of(&engine, "v"), CredentialState::Expired);
    // ...and a get fetches at once rather than wait for the paced refresh.
    assert_eq!(
        engine.get("v", None, false).await.unwrap().token.expose(),
        "token-2"
    );
}

#[tokio::test]
async fn a_client_asking_lifts_the_pacing() {
    let (engine, p, clock, _tmp) = engine_with(vec![Ok(4); 10]);
    p.gate.add_permits(10);
    engine.get("v", None, false).await.unwrap();
    // 2.5 s in: past the policy's due time (2 s), still valid for the
    // capped min_valid (1 s). Answered from the cache, and the refresh is
    // brought forward instead of waiting until 10 s.
    clock.advance(chrono::Duration::milliseconds(2500));
    assert_eq!(
        engine.get("v", None, false).await.unwrap().token.expose(),
        "token-0"
    );
    let (due, _) = engine.plan(clock.now());
    assert_eq!(due, vec!["v".to_owned()]);
}

#[tokio::test]
async fn a_failed_refresh_is_retried_while_the_token_is_still_served() {
    // 20 s tokens, min_valid 60 s (the default): due 10 s in, served until
    // 15 s in (a quarter of the lifetime left), not only until 10 s.
    let (engine, p, clock, _tmp) =
        engine_with(vec![Ok(20), Err(FetchError::transient("500")), Ok(20)]);
    p.gate.add_permits(3);
    engine.get("v", None, false).await.unwrap();
    clock.advance(chrono::Duration::seconds(10));
    let (due, _) = engine.plan(clock.now());
    assert_eq!(due, vec!["v".to_owned()]);
    engine.background_refresh("v").await;
    assert_eq!(state_of(&engine, "v"), CredentialState::StaleServing);
    clock.advance(chrono::Duration::seconds(2));
    // 8 s left: the cached token answers; no upstream call for it.
    assert_eq!(
        engine.get("v", None, false).await.unwrap().token.expose(),
        "token-0"
    );
    assert_eq!(p.calls.load(Ordering::SeqCst), 2);
    // The retry planned by the backoff comes before the token stops serving.
    let retry = engine.plan(clock.now());
    assert!(
        retry.0 == vec!["v".to_owned()]
            || retry.1.unwrap() < start() + chrono::Duration::seconds(15),
        "{retry:?}"
    );
}

#[tokio::test]
async fn a_refused_request_is_asked_again_after_thirty_seconds() {
    let mut refused = FetchError::transient("x answered 423: locked");
    refused.class = ErrorClass::Rejected;
    let (engine, p, clock, _tmp) = engine_with(vec![Err(refused), Ok(3600)]);
    p.gate.add_permits(2);
    let e = engine.get("v", None, false).await.unwrap_err();
    assert_eq!(e.message, "x answered 423: locked");
    // Inside the hold: answered without calling.
    clock.advance(chrono::Duration::seconds(29));
    let e = engine.get("v", None, false).await.unwrap_err();
    assert!(
        e.message.contains("not asking again for 1s"),
        "{}",
        e.message
    );
    assert_eq!(p.calls.load(Ordering::SeqCst), 1);
    // After it: asked again (before, a 4xx was kept until `refresh`).
    clock.advance(chrono::Duration::seconds(1));
    assert_eq!(
        engine.get("v", None, false).await.unwrap().token.expose(),
        "token-1"
    );
    assert_eq!(p.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_asked_min_valid_holds_or_fails_saying_why() {
    let (engine, p, clock, _tmp) = engine_with(vec![Ok(3600), Ok(3600)]);
    p.gate.add_permits(2);
    // Longer than any token lives: an error, not a 1 h token.
    let e = engine
        .get("v", Some(Duration::from_secs(7200)), false)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config);
    assert_eq!(
        e.message,
        "tokens of v live 1h; --min-valid 2h cannot be met"
    );
    // 40 min left, 50 min asked: the quarter-lifetime cap does not apply to
    // an asked min_valid, so a new token is fetched instead.
    clock.advance(chrono::Duration::minutes(20));
    let arrived = engine.uptime_nanos(std::time::Instant::now());
    let answer = engine
        .answer(arrived, "v", &[], Some(Duration::from_secs(3000)), false)
        .await
        .unwrap();
    // Fetched for this get, not from memory: no frame is kept for it, and
    // the connection's idle time starts after the fetch.
    assert!(!answer.from_memory());
    let t = answer.into_reply();
    assert_eq!(t.token.expose(), "token-1");
    assert_eq!(p.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_credential_that_never_succeeded_is_not_retried_in_the_background() {
    let (engine, p, clock, _tmp) = engine_with(vec![
        Err(FetchError::transient("no credentials found")),
        Ok(3600),
    ]);
    p.gate.add_permits(2);
    engine.get("v", None, false).await.unwrap_err();
    // Before, the backoff planned retries for the day it stayed warm.
    let refreshes = run_schedule(&engine, &clock, start() + chrono::Duration::minutes(10)).await;
    assert_eq!(refreshes, 0);
    assert_eq!(p.calls.load(Ordering::SeqCst), 1);
    // The next get asks, and from then on it is kept warm.
    engine.get("v", None, false).await.unwrap();
    assert!(engine.plan(clock.now()).1.is_some());
}

#[tokio::test]
async fn a_failing_get_says_the_config_edit_is_invalid() {
    let (engine, p, _clock, tmp) = engine_with(vec![Err(FetchError::transient("500"))]);
    p.gate.add_permits(1);
    std::fs::write(
        tmp.path().join("config.toml"),
        "[credentials.v]\nkind = 7\n",
    )
    .unwrap();
    engine.reload().unwrap_err();
    let e = engine.get("v", None, false).await.unwrap_err();
    assert!(
        e.message.starts_with(
            "500 (and the config file is invalid, the previous config stays in force: "
        ),
        "{}",
        e.message
    );
    let e = engine.get("new", None, false).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NoSuchCredential);
    assert!(
        e.message.contains("the previous config stays in force"),
        "{}",
        e.message
    );
}

fn crate_sealer() -> crate::seal::Sealer {
    crate::seal::Sealer::new(&[1u8; 32], "test")
}

/// Start-up builds no provider (a restarted daemon with 10,000 cached
/// tokens fetches none), the first fetch builds one and later fetches
/// reuse it; the engine holds the config's own `Credential`, not a copy.
#[tokio::test]
async fn providers_are_made_at_the_first_fetch_and_credentials_are_shared() {
    let tmp = tempfile::tempdir().unwrap();
    let config_file = tmp.path().join("config.toml");
    std::fs::write(
        &config_file,
        "[credentials.v]\nkind = \"command\"\ncommand = [\"false\"]\n",
    )
    .unwrap();
    let config = Config::load(&config_file).unwrap();
    let (store, _) = Store::open(&tmp.path().join("cache"), Arc::new(crate_sealer())).unwrap();
    let clock = Arc::new(FakeClock::new(start()));
    let locations = Locations {
        config_file,
        socket: tmp.path().join("s"),
        cache_dir: tmp.path().join("cache"),
        parsed_config: crate::parsed_config::ParsedConfig::in_dir(tmp.path()),
    };
    let scripted = Arc::new(Scripted {
        calls: AtomicU32::new(0),
        gate: Semaphore::new(2),
        answers: Mutex::new(vec![Ok(3600), Ok(3600)]),
        clock: clock.clone(),
        wants: Mutex::new(Vec::new()),
    });
    let made = Arc::new(AtomicU32::new(0));
    let (provider, counter) = (scripted.clone(), made.clone());
    let engine = Engine::new(config, locations, store, clock.clone(), move |_, _| {
        counter.fetch_add(1, Ordering::SeqCst);
        provider.clone()
    })
    .unwrap();
    assert_eq!(made.load(Ordering::SeqCst), 0, "none at start");
    let loaded = engine.loaded();
    for (name, cred) in &loaded.config.credentials {
        assert!(
            Arc::ptr_eq(cred, &loaded.entries[name.as_str()].cred),
            "{name}"
        );
    }
    // Each answer shares the entry's name and variable, not a copy.
    for (key, entry) in &loaded.entries {
        assert!(Arc::ptr_eq(key, &entry.name), "{key}");
    }
    let answer = engine.get("v", None, false).await.unwrap();
    let entry = &loaded.entries["v"];
    assert!(Arc::ptr_eq(&answer.name, &entry.name));
    assert!(Arc::ptr_eq(&answer.env_var, &entry.cred.env_var));
    assert_eq!(made.load(Ordering::SeqCst), 1);
    engine.get("v", None, true).await.unwrap();
    assert_eq!(scripted.calls.load(Ordering::SeqCst), 2);
    assert_eq!(made.load(Ordering::SeqCst), 1, "one provider per load");
}

const AZURE: &str = "[credentials.corp]\nkind = \"azure\"\nmethod = \"client-secret\"\n\
    tenant_id = \"00000000-0000-0000-0000-000000000001\"\n\
    client_id = \"11111111-1111-1111-1111-111111111111\"\nclient_secret_env = \"CORP_SECRET\"\n";

fn scopes(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn each_scope_is_its_own_single_flight_token() {
    let (engine, p, _clock, _tmp) = engine_for(AZURE, vec![Ok(3600), Ok(3600)]);
    let vault = scopes(&["https://vault.azure.net/.default"]);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let e = engine.clone();
        let vault = vault.clone();
        tasks.spawn(async move { e.get_scoped("corp", &vault, None, false).await });
    }
    while p.calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    p.gate.add_permits(2);
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().unwrap().token.expose(), "token-0");
    }
    assert_eq!(p.calls.load(Ordering::SeqCst), 1);
    // The configured scope, asked for by name, is the credential's own token.
    let own = engine
        .get_scoped(
            "corp",
            &scopes(&["https://management.azure.com/.default"]),
            None,
            false,
        )
        .await
        .unwrap();
    assert_eq!(own.token.expose(), "token-1");
    assert_eq!(
        engine
            .get("corp", None, false)
            .await
            .unwrap()
            .token
            .expose(),
        "token-1"
    );
    assert_eq!(
        *p.wants.lock().unwrap(),
        [Some(Want::Scopes(vault.clone())), None]
    );
    let info = engine
        .list()
        .into_iter()
        .find(|c| c.name == "corp")
        .unwrap();
    assert_eq!(info.scoped.len(), 1);
    assert_eq!(info.scoped[0].scopes, vault);
    assert_eq!(info.scoped[0].fetches, 1);
}

#[tokio::test]
async fn scopes_are_refused_for_other_kinds_and_when_malformed() {
    let (engine, p, _clock, _tmp) = engine_with(vec![]);
    let e = engine
        .get_scoped("v", &scopes(&["x"]), None, false)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config);
    assert!(e.message.contains("google and azure"), "{}", e.message);
    let (engine, _, _, _tmp2) = engine_for(AZURE, vec![]);
    for bad in ["", "a b", "tab\there"] {
        let e = engine
            .get_scoped("corp", &scopes(&[bad]), None, false)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Config, "{bad:?}");
    }
    assert_eq!(p.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_changed_credential_drops_its_scoped_tokens_from_memory_and_disk() {
    let (engine, p, _clock, tmp) = engine_for(AZURE, vec![Ok(3600)]);
    p.gate.add_permits(1);
    let vault = scopes(&["https://vault.azure.net/.default"]);
    engine
        .get_scoped("corp", &vault, None, false)
        .await
        .unwrap();
    assert_eq!(engine.0.store.load_all().len(), 1);
    std::fs::write(
        tmp.path().join("config.toml"),
        AZURE.replace("CORP_SECRET", "OTHER_SECRET"),
    )
    .unwrap();
    let dropped = engine.reload().unwrap();
    assert_eq!(dropped, ["corp"]);
    let info = engine
        .list()
        .into_iter()
        .find(|c| c.name == "corp")
        .unwrap();
    assert!(info.scoped.is_empty(), "{:?}", info.scoped);
    assert!(engine.0.store.load_all().is_empty());
}

#[tokio::test]
async fn forget_drops_the_scoped_tokens_too() {
    let (engine, p, _clock, _tmp) = engine_for(AZURE, vec![Ok(3600), Ok(3600), Ok(3600)]);
    p.gate.add_permits(3);
    engine
        .get_scoped("corp", &scopes(&["a/.default"]), None, false)
        .await
        .unwrap();
    engine
        .get_scoped("corp", &scopes(&["b/.default"]), None, false)
        .await
        .unwrap();
    let corp = |e: &Engine| e.list().into_iter().find(|c| c.name == "corp").unwrap();
    assert_eq!(corp(&engine).scoped.len(), 2);
    assert_eq!(engine.forget(Some("corp")).await.unwrap(), ["corp"]);
    assert!(corp(&engine).scoped.is_empty());
    assert!(engine.0.store.load_all().is_empty());
    engine
        .get_scoped("corp", &scopes(&["a/.default"]), None, false)
        .await
        .unwrap();
    assert_eq!(p.calls.load(Ordering::SeqCst), 3, "fetched anew");
    // `forget --all` too, though corp itself has no token.
    assert_eq!(engine.forget(None).await.unwrap(), ["corp"]);
    assert!(corp(&engine).scoped.is_empty());
    assert!(engine.0.store.load_all().is_empty());
}

#[tokio::test]
async fn a_credential_holds_a_bounded_number_of_scoped_tokens() {
    let answers = vec![Ok(3600); variant::MAX_VARIANTS];
    let (engine, p, _clock, _tmp) = engine_for(AZURE, answers);
    p.gate.add_permits(variant::MAX_VARIANTS);
    for i in 0..variant::MAX_VARIANTS {
        engine
            .get_scoped("corp", &scopes(&[&format!("r{i}/.default")]), None, false)
            .await
            .unwrap();
    }
    let e = engine
        .get_scoped("corp", &scopes(&["one-more/.default"]), None, false)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config);
    assert!(e.message.contains("credcache forget corp"), "{}", e.message);
    // One already held is still served.
    engine
        .get_scoped("corp", &scopes(&["r0/.default"]), None, false)
        .await
        .unwrap();
    assert_eq!(
        p.calls.load(Ordering::SeqCst) as usize,
        variant::MAX_VARIANTS
    );
}

#[test]
fn a_reload_keeps_the_http_clients_unless_the_timeout_changed() {
    let config = "[credentials.v]\nkind = \"command\"\ncommand = [\"false\"]\n";
    let (engine, _p, _clock, tmp) = engine_for(config, vec![]);
    let first = engine.loaded().http.clone();
    std::fs::write(
        tmp.path().join("config.toml"),
        format!("{config}[credentials.w]\nkind = \"command\"\ncommand = [\"true\"]\n"),
    )
    .unwrap();
    engine.reload().unwrap();
    assert!(engine.loaded().config.credentials.contains_key("w"));
    assert!(Arc::ptr_eq(&first, &engine.loaded().http));
    std::fs::write(
        tmp.path().join("config.toml"),
        format!("[daemon]\nhttp_timeout = \"7s\"\n{config}"),
    )
    .unwrap();
    engine.reload().unwrap();
    let changed = engine.loaded().http.clone();
    assert!(!Arc::ptr_eq(&first, &changed));
    assert_eq!(changed.timeout(), Duration::from_secs(7));
}

/// A second engine on `engine`'s store and config, as a restarted daemon
/// makes one: its cached tokens not yet read (`Engine::loading`).
fn restarted(engine: &Engine, p: &Arc<Scripted>, clock: &Arc<FakeClock>) -> Engine {
    let at = &engine.0.locations;
    let loaded = Loaded::new(Config::load(&at.config_file).unwrap(), &at.config_file);
    let locations = Locations {
        config_file: at.config_file.clone(),
        socket: at.socket.clone(),
        cache_dir: at.cache_dir.clone(),
        parsed_config: at.parsed_config.clone(),
    };
    let provider = p.clone();
    Engine::loading(
        loaded,
        locations,
        engine.0.store.clone(),
        clock.clone(),
        move |_, _| provider.clone(),
    )
    .unwrap()
}

fn records_read(engine: &Engine) -> bool {
    *engine.0.records_read.borrow()
}

/// A restarted daemon answers before it has read its cache: a `get`
/// (its own token, or one of other scopes) reads its one record.
#[tokio::test]
async fn a_get_before_the_cache_is_read_reads_its_own_record() {
    let (engine, p, clock, _tmp) = engine_for(AZURE, vec![Ok(3600), Ok(3600)]);
    p.gate.add_permits(2);
    let vault = scopes(&["https://vault.azure.net/.default"]);
    let own = engine.get("corp", None, false).await.unwrap();
    let scoped = engine
        .get_scoped("corp", &vault, None, false)
        .await
        .unwrap();

    let again = restarted(&engine, &p, &clock);
    assert!(!records_read(&again));
    let got = again.get_scoped("corp", &vault, None, false).await.unwrap();
    assert_eq!(got.token.expose(), scoped.token.expose());
    assert_eq!(got.expires_at, scoped.expires_at);
    let got = again.get("corp", None, false).await.unwrap();
    assert_eq!(got.token.expose(), own.token.expose());
    assert_eq!(
        p.calls.load(Ordering::SeqCst),
        2,
        "no fetch: both from the store"
    );
    assert!(!records_read(&again), "and without reading the whole store");

    again.load_records();
    again.records_loaded().await;
    let info = again.list().into_iter().find(|c| c.name == "corp").unwrap();
    assert_eq!(info.state, CredentialState::Fresh);
    assert_eq!(info.scoped.len(), 1, "{:?}", info.scoped);
    assert_eq!(again.0.store.load_all().len(), 2, "nothing removed");
}

/// The start's read of the store ran before a token was fetched anew (the
/// cached one had expired): it neither brings the old token back nor
/// removes the new one's record, which has the same key.
#[tokio::test]
async fn the_cache_read_at_start_keeps_what_was_fetched_meanwhile() {
    let (engine, p, clock, _tmp) = engine_with(vec![Ok(3600), Ok(3600)]);
    p.gate.add_permits(2);
    assert_eq!(
        engine.get("v", None, false).await.unwrap().token.expose(),
        "token-0"
    );

    let again = restarted(&engine, &p, &clock);
    let read_early = again.0.store.load_all();
    assert_eq!(read_early.len(), 1);
    clock.advance(chrono::Duration::seconds(3700));
    assert_eq!(
        again.get("v", None, false).await.unwrap().token.expose(),
        "token-1"
    );
    again.take_records(read_early);

    assert!(records_read(&again));
    assert_eq!(
        again.get("v", None, false).await.unwrap().token.expose(),
        "token-1"
    );
    let kept = again.0.store.load_all();
    assert_eq!(kept.len(), 1, "the new token's record stays");
    assert_eq!(kept[0].record.token.expose(), "token-1");
    assert_eq!(p.calls.load(Ordering::SeqCst), 2);
}

/// What the start reads that is expired, or of settings no longer in
/// force, is dropped from the store.
#[tokio::test]
async fn the_cache_read_at_start_drops_expired_and_outdated_records() {
    let (engine, p, clock, tmp) = engine_for(AZURE, vec![Ok(3600), Ok(60)]);
    p.gate.add_permits(2);
    let vault = scopes(&["https://vault.azure.net/.default"]);
    engine.get("corp", None, false).await.unwrap();
    engine
        .get_scoped("corp", &vault, None, false)
        .await
        .unwrap();
    clock.advance(chrono::Duration::seconds(120));
    let again = restarted(&engine, &p, &clock);
    again.load_records();
    assert_eq!(again.0.store.load_all().len(), 1, "the expired one went");
    assert_eq!(again.list()[0].scoped.len(), 0);

    std::fs::write(
        tmp.path().join("config.toml"),
        AZURE.replace("CORP_SECRET", "OTHER_SECRET"),
    )
    .unwrap();
    let third = restarted(&again, &p, &clock);
    third.load_records();
    assert!(third.0.store.load_all().is_empty(), "of other settings");
}
