//! The heart of the daemon: which credentials exist, what is cached, and
//! how a request for a token becomes at most one upstream fetch.
//!
//! Everything here is independent of the socket: the server turns requests
//! into calls on [`Engine`], and tests can drive it directly. Noticing and
//! applying config edits is `reload.rs`; this file is the single-flight
//! core.

mod answer;
mod loaded;
mod login;
mod names;
mod reload;
mod report;
mod scheduler;
mod slot;
mod sources;
pub mod variant;
mod writer;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use credcache_shared::Secret;
use credcache_shared::config::{Config, Credential};
use credcache_shared::protocol::{ErrorKind, SdkEndpointStatus, SdkEnv, TokenReply, WireError};
use rustc_hash::FxHashMap;
use tokio::sync::{broadcast, watch};

pub use answer::{Answer, Framed};
pub use loaded::{Entry, Loaded, ProviderFactory};
pub use slot::{CachedToken, Slot};

use crate::clock::Clock;
use crate::providers::{
    AuthToken, BoxFuture, Dependencies, ErrorClass, FetchContext, FetchError, Provider, SourceId,
    Want,
};
use crate::schedule::{self, Policy};
use crate::store::{Record, Store, Stored};

/// Where the daemon's files are, for status.
#[derive(Debug, Clone)]
pub struct Locations {
    pub config_file: PathBuf,
    pub socket: PathBuf,
    pub cache_dir: PathBuf,
    /// Where the last parse of the config is kept.
    pub parsed_config: crate::parsed_config::ParsedConfig,
}

/// Why the engine could not start, or a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot start the cache writer: {source}")]
    Writer { source: std::io::Error },
}

/// The credential engine. Cheap to clone; every clone is the same engine.
#[derive(Clone)]
pub struct Engine(Arc<Inner>);

struct Inner {
    locations: Locations,
    clock: Arc<dyn Clock>,
    store: Store,
    /// Writes fetched tokens to `store`, a flush per batch.
    writer: writer::Writer,
    loaded: RwLock<Arc<Loaded>>,
    /// Makes each credential's provider, at start and on every reload.
    providers: Box<ProviderFactory>,
    /// Keyed by credential name, or by `variant::key` for a token of other
    /// scopes or an ID token (`engine/variant.rs`).
    slots: Mutex<FxHashMap<String, Arc<Slot>>>,
    /// The variant keys of each credential that has any, for `list`,
    /// `status` and `forget` (a key may outlive its slot; the slot map
    /// decides).
    variants: Mutex<HashMap<String, BTreeSet<String>>>,
    /// Whether the store's tokens have been read into `slots`
    /// (`Engine::loading`).
    records_read: watch::Sender<bool>,
    /// The tokens of sources no credential names, by source key
    /// (`sources.rs`).
    sources: Mutex<HashMap<String, sources::Source>>,
    watch: Mutex<reload::Watch>,
    /// When the config was last checked, in [`Engine::uptime_nanos`]: read
    /// without a lock by each request (`maybe_reload`).
    last_config_check: AtomicU64,
    /// Whether `watch.error` is set, read without the lock by each answer.
    config_invalid: AtomicBool,
    started_at: DateTime<Utc>,
    requests: AtomicU64,
    /// When the engine was made, and the last request came, as
    /// nanoseconds after it (an atomic: every request stores it).
    made: Instant,
    last_request: AtomicU64,
    shutdown: watch::Sender<bool>,
    /// Warnings found at start (e.g. about the cache key), for `status`.
    startup_warnings: Mutex<Vec<String>>,
    /// Wakes the scheduler when a plan changed.
    wake: tokio::sync::Notify,
    /// Names of credentials that just got a new token (for `watch`).
    changes: broadcast::Sender<String>,
    /// Sign-ins under way (`credcache login`), by credential.
    logins: Mutex<HashMap<String, crate::providers::signed_in::flow::Session>>,
    /// The SDK endpoints (`crate::sdk`), set once at start.
    sdk: OnceLock<Arc<dyn SdkHost>>,
}

/// What the engine asks of the SDK endpoints (`crate::sdk`, which sits
/// above the engine and is handed to it at start): the `sdk-env` request
/// and their part of `status`.
pub trait SdkHost: Send + Sync {
    /// Opens the endpoints of `names` (if need be) and says where they are.
    fn env<'a>(
        &'a self,
        names: &'a [String],
        rotate: bool,
    ) -> BoxFuture<'a, Result<SdkEnv, WireError>>;
    /// Each endpoint's port and counters.
    fn status(&self) -> Vec<SdkEndpointStatus>;
}

impl Engine {
    /// Starts the engine with `config` in force, and takes over the tokens
    /// in `store` that were written under the current settings. `providers`
    /// makes each credential's provider (`providers::build`, but for tests).
    pub fn new(
        config: Config,
        locations: Locations,
        store: Store,
        clock: Arc<dyn Clock>,
        providers: impl Fn(&Credential, &Config) -> Arc<dyn Provider> + Send + Sync + 'static,
    ) -> Result<Self, EngineError> {
        let loaded = Loaded::new(config, &locations.config_file);
        let engine = Self::loading(loaded, locations, store, clock, providers)?;
        engine.load_records();
        Ok(engine)
    }

    /// An engine whose cached tokens are still in `store`, as the daemon
    /// starts one: it answers at once, and [`Engine::load_records`] (on a
    /// blocking thread) then reads the store into memory. Until it has, a
    /// `get` of a credential not yet in memory reads that one record from
    /// the store first (`Engine::slot`); the scheduler and the requests
    /// that look at every credential (`list`, `status`, `refresh`,
    /// `forget`, ...) wait for it (`Engine::records_loaded`).
    pub fn loading(
        loaded: Loaded,
        locations: Locations,
        store: Store,
        clock: Arc<dyn Clock>,
        providers: impl Fn(&Credential, &Config) -> Arc<dyn Provider> + Send + Sync + 'static,
    ) -> Result<Self, EngineError> {
        for w in &loaded.warnings {
            tracing::warn!("{w}");
        }
        tracing::info!(credentials = loaded.entries.len(), "engine ready");
        let (shutdown, _) = watch::channel(false);
        let writer = writer::Writer::start(store.clone())
            .map_err(|source| EngineError::Writer { source })?;
        Ok(Self(Arc::new(Inner {
            locations,
            started_at: clock.now(),
            clock,
            store,
            writer,
            loaded: RwLock::new(Arc::new(loaded)),
            providers: Box::new(providers),
            slots: Mutex::new(FxHashMap::default()),
            variants: Mutex::new(HashMap::new()),
            records_read: watch::channel(false).0,
            sources: Mutex::new(HashMap::new()),
            watch: Mutex::new(reload::Watch {
                error: None,
                error_stamps: None,
            }),
            last_config_check: AtomicU64::new(0),
            config_invalid: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            made: Instant::now(),
            last_request: AtomicU64::new(0),
            shutdown,
            startup_warnings: Mutex::new(Vec::new()),
            wake: tokio::sync::Notify::new(),
            changes: broadcast::channel(64).0,
            sdk: OnceLock::new(),
            logins: Mutex::new(HashMap::new()),
        })))
    }

    /// Reads every cached token of the store into memory (blocking: sled
    /// and the cache key's decryption), once, for [`Engine::loading`].
    pub fn load_records(&self) {
        if *self.0.records_read.borrow() {
            return;
        }
        let records = self.0.store.load_all();
        self.take_records(records);
    }

    /// Resolves once the store's tokens are in memory.
    pub async fn records_loaded(&self) {
        let mut read = self.0.records_read.subscribe();
        // The sender lives as long as the engine.
        let _ = read.wait_for(|read| *read).await;
    }

    /// Moves `records` into their slots: each one of the settings in force
    /// and unexpired, whose credential has no slot yet (a `get` may have
    /// read or fetched it meanwhile). The rest is removed from the store.
    fn take_records(&self, records: Vec<Stored>) {
        // Says the records are read even if this panics: nothing waits
        // forever on a load that is not coming.
        struct Done<'a>(&'a watch::Sender<bool>);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.send_replace(true);
            }
        }
        let _done = Done(&self.0.records_read);
        let now = self.0.clock.now();
        let mut slots = self.0.slots.lock().unwrap_or_else(|p| p.into_inner());
        // Read under the slots' lock, as a reload swaps it.
        let loaded = self.loaded();
        let mut variants = self.0.variants.lock().unwrap_or_else(|p| p.into_inner());
        // Records of other settings, or expired: removed below.
        let mut stale = Vec::new();
        let mut taken = 0usize;
        for stored in records {
            let name = variant::name_of(&stored.name);
            let current = loaded
                .entries
                .get(name)
                .is_some_and(|e| e.fingerprint == stored.fingerprint);
            if !current {
                stale.push((stored.name, stored.fingerprint));
                continue;
            }
            if slots.contains_key(&stored.name) {
                // Read or fetched since: that slot is the truth, and its
                // record (of the same key) is not ours to remove.
                continue;
            }
            if stored.record.expires_at <= now {
                stale.push((stored.name, stored.fingerprint));
                continue;
            }
            if name != stored.name {
                variants
                    .entry(name.to_owned())
                    .or_default()
                    .insert(stored.name.clone());
            }
            let slot = cached_slot(&loaded, name, stored.record, now);
            slots.insert(stored.name, slot);
            taken += 1;
        }
        drop(variants);
        // Removed while the slots are held: a slot made after this (and
        // the record its fetch writes) cannot be removed by it.
        if let Err(e) = self
            .0
            .store
            .remove_all(stale.iter().map(|(n, f)| (n.as_str(), f.as_str())))
        {
            tracing::warn!("could not prune the cache: {e}");
        }
        drop(slots);
        tracing::info!(cached = taken, dropped = stale.len(), "cache read");
    }

    fn loaded(&self) -> Arc<Loaded> {
        self.0
            .loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The slot of `key` (a credential name or a `variant::key`), created
    /// empty if need be.
    fn slot(&self, key: &str) -> Arc<Slot> {
        let mut slots = self.0.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.get(key) {
            return slot.clone();
        }
        let name = variant::name_of(key);
        if name != key {
            self.0
                .variants
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(name.to_owned())
                .or_default()
                .insert(key.to_owned());
        }
        let slot = if *self.0.records_read.borrow() {
            Arc::default()
        } else {
            // Asked before the start's read of the store reached it: its
            // one record is read now (`Engine::loading`).
            self.read_ahead(key, name).unwrap_or_default()
        };
        slots.insert(key.to_owned(), slot.clone());
        slot
    }

    /// The slot of `key`'s cached token, read from the store, if it is of
    /// the settings in force and unexpired. Called with the slots held.
    fn read_ahead(&self, key: &str, name: &str) -> Option<Arc<Slot>> {
        let loaded = self.loaded();
        let entry = loaded.entries.get(name)?;
        let record = self.0.store.get(key, &entry.fingerprint)?;
        let now = self.0.clock.now();
        (record.expires_at > now).then(|| cached_slot(&loaded, name, record, now))
    }

    /// The variant keys of `name` that have a slot now.
    fn variant_keys(&self, name: &str) -> Vec<String> {
        let slots = self.0.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mut variants = self.0.variants.lock().unwrap_or_else(|p| p.into_inner());
        let Some(keys) = variants.get_mut(name) else {
            return Vec::new();
        };
        keys.retain(|k| slots.contains_key(k));
        keys.iter().cloned().collect()
    }

    fn current_slot(&self, name: &str, slot: &Arc<Slot>) -> bool {
        let slots = self.0.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.get(name).is_some_and(|s| Arc::ptr_eq(s, slot))
    }

    /// The config file in force, made absolute (for `Hello`).
    pub fn config_path(&self) -> PathBuf {
        let path = &self.0.locations.config_file;
        std::path::absolute(path).unwrap_or_else(|_| path.clone())
    }

    /// New-token notices, by credential name (for `watch`).
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.0.changes.subscribe()
    }

    /// The token in memory for `name`, if it is still valid: what `watch`
    /// sends after a change notice.
    pub fn current(&self, name: &str) -> Option<TokenReply> {
        let loaded = self.loaded();
        let entry = loaded.entries.get(name)?;
        let token = self
            .slot(name)
            .valid_token(self.0.clock.now(), Duration::ZERO)?;
        Some(TokenReply {
            name: entry.name.clone(),
            kind: entry.cred.kind().into(),
            token: token.token,
            expires_at: token.expires_at,
            fetched_at: token.fetched_at,
            env_var: entry.cred.env_var.clone(),
            warning: None,
        })
    }

    /// Hands the engine the SDK endpoints (once, at start).
    pub fn set_sdk(&self, sdk: Arc<dyn SdkHost>) {
        let _ = self.0.sdk.set(sdk);
    }

    /// The `sdk-env` request.
    pub async fn sdk_env(&self, names: &[String], rotate: bool) -> Result<SdkEnv, WireError> {
        self.maybe_reload();
        match self.0.sdk.get() {
            Some(sdk) => sdk.env(names, rotate).await,
            None => Err(WireError::new(
                ErrorKind::Internal,
                "this daemon serves no SDK endpoints",
            )),
        }
    }

    /// The SDK endpoints' part of `status`.
    pub fn sdk_status(&self) -> Vec<SdkEndpointStatus> {
        self.0.sdk.get().map(|s| s.status()).unwrap_or_default()
    }

    /// The settings of credential `name` in force, or the error `get` gives.
    pub fn credential(&self, name: &str) -> Result<Arc<Credential>, WireError> {
        let loaded = self.loaded();
        self.entry(&loaded, name).map(|e| e.cred.clone())
    }

    /// Adds warnings for `status` (and logs them).
    pub fn add_warnings(&self, warnings: Vec<String>) {
        for w in &warnings {
            tracing::warn!("{w}");
        }
        self.0
            .startup_warnings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(warnings);
    }

    /// Everything `status` should warn about now.
    pub fn warnings(&self) -> Vec<String> {
        let mut all = self
            .0
            .startup_warnings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        all.extend(self.loaded().warnings.iter().cloned());
        all.extend(self.0.writer.warning());
        all
    }

    /// Counts a request and notes when it came (for `idle_timeout`).
    pub fn note_request(&self) {
        self.note_request_at(Instant::now());
    }

    /// [`Engine::note_request`] with the clock already read. Returns `at`
    /// as [`Engine::uptime_nanos`] does.
    pub fn note_request_at(&self, at: Instant) -> u64 {
        self.0.requests.fetch_add(1, Ordering::Relaxed);
        let since = self.uptime_nanos(at);
        self.0.last_request.fetch_max(since, Ordering::Relaxed);
        since
    }

    /// `at` in nanoseconds since the engine was made.
    pub fn uptime_nanos(&self, at: Instant) -> u64 {
        // Saturating far below the values the server's `Activity` keeps
        // for itself (`u64::MAX` and one less): 292 years.
        let since = at.saturating_duration_since(self.0.made).as_nanos();
        u64::try_from(since).map_or(u64::MAX / 2, |n| n.min(u64::MAX / 2))
    }

    /// How long since the last request.
    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_nanos(self.0.last_request.load(Ordering::Relaxed));
        self.0.made.elapsed().saturating_sub(last)
    }

    pub fn idle_timeout(&self) -> Duration {
        self.loaded().config.daemon.idle_timeout
    }

    /// Asks the daemon to shut down (the `Shutdown` request).
    pub fn request_shutdown(&self) {
        self.0.shutdown.send_replace(true);
    }

    /// Resolves once a shutdown has been requested.
    pub async fn shutdown_requested(&self) {
        let mut rx = self.0.shutdown.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }

    /// A token for `name`: from memory if one is valid for `min_valid`
    /// (default: the credential's), else fetched, with concurrent callers
    /// sharing one upstream call.
    ///
    /// A `min_valid` the caller asked for holds: the quarter-lifetime cap
    /// that keeps short-lived tokens usable applies to the configured
    /// default only, and one that no token of this credential can meet is
    /// an error saying so, not a token valid for less.
    ///
    /// While the config file on disk is invalid, every answer says so, an
    /// error as much as a token.
    pub async fn get(
        &self,
        name: &str,
        min_valid: Option<Duration>,
        refresh: bool,
    ) -> Result<TokenReply, WireError> {
        self.get_scoped(name, &[], min_valid, refresh).await
    }

    /// [`get`](Self::get) for `scopes` instead of the credential's
    /// configured ones (`get --scope`; none: its own token). A `google` or
    /// `azure` credential only; each set of scopes is cached apart, with
    /// everything a credential's own token has.
    pub async fn get_scoped(
        &self,
        name: &str,
        scopes: &[String],
        min_valid: Option<Duration>,
        refresh: bool,
    ) -> Result<TokenReply, WireError> {
        let arrived = self.uptime_nanos(Instant::now());
        self.answer(arrived, name, scopes, min_valid, refresh)
            .await
            .map(Answer::into_reply)
    }

    /// [`get_scoped`](Self::get_scoped) for the socket server: the reply
    /// with the frame its token's slot keeps for it ([`Answer`]).
    /// `arrived` is when the request came, as [`Engine::note_request_at`]
    /// returned it: the server has read the clock already.
    pub async fn answer(
        &self,
        arrived: u64,
        name: &str,
        scopes: &[String],
        min_valid: Option<Duration>,
        refresh: bool,
    ) -> Result<Answer, WireError> {
        self.maybe_reload_at(arrived);
        self.get_want(
            name,
            |cred| variant::scopes_for(cred, scopes),
            min_valid,
            refresh,
        )
        .await
    }

    /// A Google ID token of credential `name` for `audience` (the SDK
    /// endpoint's `identity`), cached like any token.
    pub async fn id_token(&self, name: &str, audience: &str) -> Result<TokenReply, WireError> {
        self.maybe_reload();
        self.get_want(
            name,
            |cred| variant::audience_for(cred, audience).map(Some),
            None,
            false,
        )
        .await
        .map(Answer::into_reply)
    }

    async fn get_want(
        &self,
        name: &str,
        want: impl FnOnce(&Credential) -> Result<Option<Want>, WireError>,
        min_valid: Option<Duration>,
        refresh: bool,
    ) -> Result<Answer, WireError> {
        // One reading of the config in force for the whole request.
        let loaded = self.loaded();
        let found = self
            .entry(&loaded, name)
            .and_then(|entry| Ok((entry, want(&entry.cred)?)));
        let found = found.and_then(|(entry, want)| {
            let Some(w) = &want else {
                return Ok((entry, want));
            };
            let key = variant::key(name, Some(w));
            let known = self.0.slots.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&*key);
            if !known && self.variant_keys(name).len() >= variant::MAX_VARIANTS {
                return Err(WireError::new(
                    ErrorKind::Config,
                    format!(
                        "{name} already holds tokens for {} other scopes or audiences; `credcache forget {name}` drops them",
                        variant::MAX_VARIANTS
                    ),
                ));
            }
            Ok((entry, want))
        });
        let result = match found {
            Ok((entry, want)) => {
                self.get_in_force(&loaded, entry, want.as_ref(), min_valid, refresh)
                    .await
            }
            Err(e) => Err(e),
        };
        result.map_err(|mut e| {
            if let Some(warning) = self.config_warning() {
                e.message = format!("{} (and {warning})", e.message);
            }
            e
        })
    }

    async fn get_in_force(
        &self,
        loaded: &Loaded,
        entry: &Entry,
        want: Option<&Want>,
        asked: Option<Duration>,
        refresh: bool,
    ) -> Result<Answer, WireError> {
        let name = &*entry.name;
        let min_valid = asked.unwrap_or_else(|| loaded.config.min_valid(&entry.cred));
        // One slot lookup, one reading of the clock and one lock of the
        // slot for the cached answer (issue 15).
        let key = variant::key(name, want);
        let asked_at = self.0.clock.now();
        let slot = self.slot(&key);
        let warm_until = asked_at + schedule::to_chrono(schedule::WARM_FOR);
        let (hit, wake) = slot.ask(asked_at, min_valid, warm_until, !refresh);
        if wake {
            self.0.wake.notify_one();
        }
        let mut from_memory = hit.is_some();
        let (mut token, framed) = match hit {
            Some(hit) => {
                tracing::debug!(credential = name, "answered from the cache");
                (hit.token, hit.framed)
            }
            None => {
                let fetched = self
                    .token_in(
                        loaded, entry, want, &key, &slot, asked_at, min_valid, refresh,
                    )
                    .await
                    .map_err(|e| wire_fetch_error(&e))?;
                (fetched, None)
            }
        };
        if let Some(asked) = asked {
            let short =
                |t: &CachedToken| t.expires_at - self.0.clock.now() < schedule::to_chrono(asked);
            // A cached token that is too close to expiry, of a credential
            // whose tokens live long enough: a new one can meet it.
            if short(&token) && token.fetched_at < asked_at && token.lifetime() >= asked {
                token = self
                    .token(loaded, entry, want, min_valid, true)
                    .await
                    .map_err(|e| wire_fetch_error(&e))?;
                from_memory = false;
            }
            if short(&token) {
                return Err(WireError::new(
                    ErrorKind::Config,
                    format!(
                        "tokens of {name} live {}; --min-valid {} cannot be met",
                        humanize(rounded(token.lifetime())),
                        humanize(asked)
                    ),
                ));
            }
        }
        let (kind, warning) = (entry.cred.kind(), self.config_warning());
        if warning.is_none()
            && let Some(framed) = framed
            && framed.answers(&entry.name, kind, &entry.cred.env_var, &token)
        {
            return Ok(Answer::framed(framed));
        }
        let reply = TokenReply {
            name: entry.name.clone(),
            kind: kind.into(),
            token: token.token,
            expires_at: token.expires_at,
            fetched_at: token.fetched_at,
            env_var: entry.cred.env_var.clone(),
            warning,
        };
        Ok(Answer::reply(reply, slot, from_memory))
    }

    fn entry<'l>(&self, loaded: &'l Loaded, name: &str) -> Result<&'l Entry, WireError> {
        loaded.entries.get(name).ok_or_else(|| {
            let known = loaded.config.credentials.keys().map(String::as_str);
            WireError::new(ErrorKind::NoSuchCredential, names::unknown(name, known))
        })
    }

    /// The token of a credential named by another's `auth`.
    pub fn dependency_token<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<AuthToken, FetchError>> {
        Box::pin(async move {
            let loaded = self.loaded();
            let entry = loaded.entries.get(name).ok_or_else(|| {
                FetchError::config(format!("auth names {name:?}, which is not configured"))
            })?;
            let min_valid = loaded.config.min_valid(&entry.cred);
            self.note_asked(name);
            let token = self
                .token(&loaded, entry, None, min_valid, false)
                .await
                .map_err(|e| e.context(format!("getting {name}")))?;
            Ok(AuthToken {
                token: token.token,
                quota_project: token.quota_project,
            })
        })
    }

    /// Drops `name`'s cached token if it is still `rejected`: an API said
    /// 401 to it, so the next `dependency_token` fetches a new one. A token
    /// that was already replaced is left alone.
    pub fn reject_token(&self, name: &str, rejected: &Secret) {
        if self.reject_source(name, rejected) {
            return;
        }
        let slot = self.slot(name);
        let dropped = {
            let mut s = slot.lock();
            let same = s.token.as_ref().is_some_and(|t| t.token == *rejected);
            if same {
                s.set_token(None);
            }
            same
        };
        if dropped {
            tracing::info!(credential = name, "an API rejected this token: dropping it");
            if let Err(e) = self.0.store.remove(name) {
                tracing::warn!("could not update the cache: {e}");
            }
        }
    }

    /// The token of `entry` (or its variant `want`), single-flight.
    async fn token(
        &self,
        loaded: &Loaded,
        entry: &Entry,
        want: Option<&Want>,
        min_valid: Duration,
        force: bool,
    ) -> Result<CachedToken, FetchError> {
        let key = variant::key(entry.cred.name.as_str(), want);
        let slot = self.slot(&key);
        let now = self.0.clock.now();
        self.token_in(loaded, entry, want, &key, &slot, now, min_valid, force)
            .await
    }

    /// [`Engine::token`] with `key`'s slot in hand and the clock read
    /// (`now`) for the cached answer; a fetch reads it again.
    #[allow(clippy::too_many_arguments)]
    async fn token_in(
        &self,
        loaded: &Loaded,
        entry: &Entry,
        want: Option<&Want>,
        key: &str,
        slot: &Arc<Slot>,
        now: DateTime<Utc>,
        min_valid: Duration,
        force: bool,
    ) -> Result<CachedToken, FetchError> {
        let name = entry.cred.name.as_str();
        if !force && let Some(t) = slot.valid_token(now, min_valid) {
            tracing::debug!(credential = name, "answered from the cache");
            if slot.demand(now) {
                self.0.wake.notify_one();
            }
            return Ok(t);
        }
        tracing::debug!(credential = name, force, "no usable cached token: fetching");
        let (seen, started) = slot.counters();
        let _flight = slot.fetch.lock().await;
        let (finished_now, started_now) = slot.counters();
        // A fetch finished while we queued: its outcome answers us too. A
        // forced refresh wants one that started after it was asked for.
        if finished_now != seen && (!force || started_now > started) {
            if let Some(t) = slot.valid_token(self.0.clock.now(), min_valid) {
                return Ok(t);
            }
            if let Some(e) = slot.lock().last_error.clone() {
                return Err(e);
            }
        } else if !force && let Some(t) = slot.valid_token(self.0.clock.now(), min_valid) {
            return Ok(t);
        }
        // Upstream said when to come back; only an explicit refresh overrides.
        if !force && let Some(e) = slot.held_off(self.0.clock.now()) {
            return Err(e);
        }
        // Upstream said no for good: say so again without asking, until a
        // reload or an explicit refresh.
        if !force && let Some(e) = slot.kept_error() {
            return Err(e);
        }
        self.fetch(loaded, entry, want, key, slot, None).await
    }

    /// One upstream fetch, with the fetch lock held by the caller; or, with
    /// `ready`, a token already in hand (the one a sign-in brought), kept
    /// exactly as a fetched one is.
    async fn fetch(
        &self,
        loaded: &Loaded,
        entry: &Entry,
        want: Option<&Want>,
        key: &str,
        slot: &Arc<Slot>,
        ready: Option<crate::providers::Fetched>,
    ) -> Result<CachedToken, FetchError> {
        let name = entry.cred.name.as_str();
        {
            let mut s = slot.lock();
            s.in_flight = true;
            s.started += 1;
        }
        let now = self.0.clock.now();
        let timeout = loaded.config.daemon.http_timeout;
        let cx = FetchContext {
            name,
            want,
            deps: self,
            http: &loaded.http,
            now,
            timeout,
        };
        let started = Instant::now();
        // HTTP calls time out by themselves at `http_timeout`, with a message
        // naming the endpoint; this outer bound, a little longer, catches
        // everything else (a hung command, a slow chain of dependencies).
        let bound = timeout + Duration::from_secs(1);
        // Every kind's token passes the same check before it is kept.
        let provider = entry.provider(&*self.0.providers, &loaded.config);
        let fetched = match ready {
            Some(ready) => Ok(Ok(ready)),
            None => tokio::time::timeout(bound, provider.fetch(&cx)).await,
        }
        .map(|r| r.and_then(|f| crate::http::check_token(&f.token).map(|()| f)));
        let outcome = match fetched {
            Ok(Ok(fetched)) if fetched.expires_at <= now => Err(FetchError::transient(format!(
                "the token fetched has already expired (expiry {})",
                credcache_shared::time::format_rfc3339(fetched.expires_at)
            ))),
            Ok(Ok(fetched)) => Ok(CachedToken {
                token: fetched.token,
                expires_at: fetched.expires_at,
                fetched_at: now,
                quota_project: fetched.quota_project,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(FetchError::transient(format!(
                "no answer within http_timeout ({})",
                humanize(timeout)
            ))),
        };
        let policy = policy_for(loaded, name).expect("entry is in loaded");
        let needed_login = slot
            .lock()
            .last_error
            .as_ref()
            .is_some_and(|e| e.class == ErrorClass::NeedsLogin);
        slot.finish(&outcome, now, policy);
        // Once per event: a credential that already needed a person does
        // not run `on_reauth` again until it is signed in anew.
        if let Err(e) = &outcome
            && e.class == ErrorClass::NeedsLogin
            && !needed_login
        {
            self.on_reauth(name, e);
        }
        self.0.wake.notify_one();
        match &outcome {
            Ok(t) => {
                tracing::info!(
                    credential = key,
                    expires_at = %credcache_shared::time::format_rfc3339(t.expires_at),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "fetched a token"
                );
                if self.current_slot(key, slot) {
                    if want.is_none() {
                        let _ = self.0.changes.send(name.to_owned());
                    }
                    let record = Record {
                        kind: entry.cred.kind().to_owned(),
                        token: t.token.clone(),
                        expires_at: t.expires_at,
                        fetched_at: t.fetched_at,
                        quota_project: t.quota_project.clone(),
                    };
                    // On disk before the answer; flushes shared with
                    // concurrent fetches (`engine/writer.rs`).
                    let written = self.0.writer.put(key, &entry.fingerprint, record).await;
                    if let Err(e) = written {
                        tracing::warn!("could not write the cache: {e}");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(credential = key, class = ?e.class, "fetch failed: {}", e.message)
            }
        }
        outcome
    }

    /// The credential `name`, or with `None` every configured one that has a
    /// token: what `refresh` and `forget` act on.
    fn targets(&self, loaded: &Loaded, name: Option<&str>) -> Result<Vec<String>, WireError> {
        if let Some(n) = name {
            return Ok(vec![self.entry(loaded, n)?.cred.name.clone()]);
        }
        let slots = self.0.slots.lock().unwrap_or_else(|p| p.into_inner());
        Ok(slots
            .iter()
            .filter(|(n, s)| loaded.entries.contains_key(n.as_str()) && s.lock().token.is_some())
            .map(|(n, _)| n.clone())
            .collect())
    }

    /// Fetches anew: one credential, or every one that has a token; with
    /// each, its tokens for other scopes and audiences (`get --scope`, the
    /// SDK endpoints), so that `refresh corp` renews all that `corp` serves.
    pub async fn refresh(&self, name: Option<&str>) -> Result<Vec<String>, WireError> {
        self.maybe_reload();
        let loaded = self.loaded();
        let mut names = self.targets(&loaded, name)?;
        // Slot keys to fetch: the credentials' own (those `targets` chose)
        // and every variant that holds a token.
        let mut keys: Vec<String> = names.clone();
        if name.is_none() {
            for owner in self.variant_owners() {
                if loaded.entries.contains_key(owner.as_str()) && !names.contains(&owner) {
                    names.push(owner);
                }
            }
        }
        for n in &names {
            keys.extend(
                self.variant_keys(n)
                    .into_iter()
                    .filter(|k| self.slot(k).lock().token.is_some()),
            );
        }
        let mut tasks = tokio::task::JoinSet::new();
        for key in keys {
            let engine = self.clone();
            let loaded = loaded.clone();
            tasks.spawn(async move {
                let entry = &loaded.entries[variant::name_of(&key)];
                let want = variant::want_of(&key);
                let result = engine
                    .token(&loaded, entry, want.as_ref(), Duration::ZERO, true)
                    .await;
                (key, result)
            });
        }
        let mut failures = Vec::new();
        let mut attempted = 0;
        while let Some(joined) = tasks.join_next().await {
            attempted += 1;
            match joined {
                Ok((_, Ok(_))) => {}
                Ok((key, Err(e))) => {
                    let mut w = wire_fetch_error(&e);
                    if name.is_none() || variant::want_of(&key).is_some() {
                        w.message = format!("{}: {}", variant::label(&key), w.message);
                    }
                    failures.push(w)
                }
                Err(e) => failures.push(WireError::new(
                    ErrorKind::Internal,
                    format!("refresh task failed: {e}"),
                )),
            }
        }
        match failures.len() {
            0 => Ok(names),
            1 => Err(failures.remove(0)),
            n => Err(WireError::new(
                failures[0].kind,
                format!(
                    "{n} of {attempted} refreshes failed; first: {}",
                    failures[0].message
                ),
            )),
        }
    }

    /// The credentials that hold tokens for other scopes or audiences.
    fn variant_owners(&self) -> Vec<String> {
        let owners: Vec<String> = self
            .0
            .variants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        owners
            .into_iter()
            .filter(|owner| !self.variant_keys(owner).is_empty())
            .collect()
    }

    /// Drops tokens from memory and disk: one credential, or all.
    pub async fn forget(&self, name: Option<&str>) -> Result<Vec<String>, WireError> {
        let loaded = self.loaded();
        let mut names = self.targets(&loaded, name)?;
        if name.is_none() {
            // Credentials with only tokens for other scopes count too.
            for owner in self.variant_owners() {
                if !names.contains(&owner) {
                    names.push(owner);
                }
            }
        }
        for n in &names {
            // Its own token and every variant (other scopes, ID tokens).
            let mut keys = self.variant_keys(n);
            keys.push(n.clone());
            for key in keys {
                // Wait out a fetch in flight so it cannot put the token back.
                let slot = self.slot(&key);
                let _flight = slot.fetch.lock().await;
                slot.clear();
                if key != *n {
                    // A variant is listed only while it exists: gone.
                    self.0
                        .slots
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&key);
                }
                let store = self.0.store.clone();
                tokio::task::spawn_blocking(move || store.remove(&key))
                    .await
                    .map_err(|e| WireError::new(ErrorKind::Internal, e.to_string()))?
                    .map_err(|e| WireError::new(ErrorKind::Internal, e.to_string()))?;
            }
        }
        if name.is_none() {
            self.clear_sources();
            let store = self.0.store.clone();
            let _ = tokio::task::spawn_blocking(move || store.retain(|_, _| false)).await;
        }
        Ok(names)
    }

    /// Flushes the cache to disk and closes it (at shutdown).
    pub fn close(&self) {
        if let Err(e) = self.0.store.close() {
            tracing::warn!("could not flush the cache: {e}");
        }
    }
}

/// What providers may ask of the engine: the tokens their `auth` names.
impl Dependencies for Engine {
    fn auth_token<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<AuthToken, FetchError>> {
        self.dependency_token(name)
    }

    fn reject(&self, name: &str, token: &Secret) {
        self.reject_token(name, token);
    }

    fn source_token<'a>(
        &'a self,
        id: SourceId<'a>,
        user: &'a str,
        source: &'a dyn Provider,
    ) -> BoxFuture<'a, Result<AuthToken, FetchError>> {
        Box::pin(self.source_token(id, user, source))
    }

    fn refresh_token<'a>(
        &'a self,
        name: &'a str,
        identity: &'a str,
    ) -> BoxFuture<'a, Option<Secret>> {
        Box::pin(async move {
            let store = self.0.store.clone();
            let (name, identity) = (name.to_owned(), identity.to_owned());
            tokio::task::spawn_blocking(move || store.refresh_token(&name, &identity))
                .await
                .ok()
                .flatten()
        })
    }

    fn keep_refresh_token<'a>(
        &'a self,
        name: &'a str,
        identity: &'a str,
        token: Secret,
    ) -> BoxFuture<'a, Result<(), FetchError>> {
        Box::pin(async move {
            let store = self.0.store.clone();
            let (name, identity) = (name.to_owned(), identity.to_owned());
            tokio::task::spawn_blocking(move || store.put_refresh_token(&name, &identity, &token))
                .await
                .map_err(|e| FetchError::transient(format!("keeping the refresh token: {e}")))?
                .map_err(|e| FetchError::transient(format!("keeping the refresh token: {e}")))
        })
    }
}

/// The refresh policy of credential `name` under `loaded`.
/// The slot of a cached token found in the store: kept warm as if just
/// asked for, its refresh planned.
fn cached_slot(loaded: &Loaded, name: &str, record: Record, now: DateTime<Utc>) -> Arc<Slot> {
    let token = CachedToken {
        token: record.token,
        expires_at: record.expires_at,
        fetched_at: record.fetched_at,
        quota_project: record.quota_project,
    };
    let due = policy_for(loaded, name)
        .map(|p| schedule::due_at(p, token.fetched_at, token.expires_at, schedule::jitter()));
    let next_refresh = due.map(|d| schedule::paced(d, token.fetched_at));
    let slot = Slot::with_token(token);
    {
        let mut s = slot.lock();
        s.warm_until = Some(now + schedule::to_chrono(schedule::WARM_FOR));
        s.due_unpaced = due;
        s.next_refresh = next_refresh;
    }
    Arc::new(slot)
}

fn policy_for(loaded: &Loaded, name: &str) -> Option<Policy> {
    let entry = loaded.entries.get(name)?;
    Some(Policy {
        refresh_ahead: loaded.config.refresh_ahead(&entry.cred),
        refresh_fraction: loaded.config.daemon.refresh_fraction,
    })
}

/// A fetch error as a client sees it; the client says which credential.
fn wire_fetch_error(e: &FetchError) -> WireError {
    let kind = match e.class {
        ErrorClass::Config => ErrorKind::Config,
        ErrorClass::Transient
        | ErrorClass::Permanent
        | ErrorClass::Rejected
        | ErrorClass::Unauthorized
        | ErrorClass::NeedsLogin => ErrorKind::Upstream,
    };
    WireError::new(kind, e.message.clone())
}

/// A lifetime as people say it: to the second, or past 5 minutes to the
/// minute (an `expires_in` of 3599 is an hour token).
fn rounded(d: Duration) -> Duration {
    let secs = (d + Duration::from_millis(500)).as_secs();
    if secs >= 300 {
        Duration::from_secs((secs + 30) / 60 * 60)
    } else {
        Duration::from_secs(secs)
    }
}

fn humanize(d: Duration) -> String {
    credcache_shared::time::format_duration_secs(d.as_secs() as i64)
}

#[cfg(test)]
mod tests;
