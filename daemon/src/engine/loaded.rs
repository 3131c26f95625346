//! The config in force, with each credential's provider and fingerprint,
//! and the stamps of its files (see `reload.rs`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use credcache_shared::config::{Config, Credential, SecretSource, Source};
use rustc_hash::FxHashMap;

use super::reload::Stamps;
use crate::fingerprint;
use crate::http::Http;
use crate::providers::Provider;
use crate::seal;

/// Makes the provider of a credential: [`providers::build`] in the daemon,
/// a scripted one in tests.
pub type ProviderFactory = dyn Fn(&Credential, &Config) -> Arc<dyn Provider> + Send + Sync;

/// A credential ready to fetch.
pub struct Entry {
    /// The same `Arc` as in `Loaded::config`: one copy of the settings.
    pub cred: Arc<Credential>,
    /// The credential's name: the same `Arc` as its key in
    /// `Loaded::entries`, handed out with each answer.
    pub name: Arc<str>,
    /// Made at the first fetch: a daemon restarted with 10,000 cached
    /// tokens fetches none of them, and building 10,000 providers (each a
    /// copy of its settings) was a tenth of its start-up and 4 MB.
    provider: OnceLock<Arc<dyn Provider>>,
    pub fingerprint: String,
}

impl Entry {
    /// This credential's provider, made by `providers` the first time.
    pub fn provider(&self, providers: &ProviderFactory, config: &Config) -> &Arc<dyn Provider> {
        self.provider.get_or_init(|| providers(&self.cred, config))
    }

    /// Takes over `old`'s provider, if it made one, when a reload leaves
    /// the fingerprint unchanged (a provider is a function of what the
    /// fingerprint covers), so what it learned outlives the reload: a
    /// workforce user's rotated refresh token, whose predecessor is spent.
    pub fn keep_provider(&self, old: &Entry) {
        if self.fingerprint == old.fingerprint
            && let Some(p) = old.provider.get()
        {
            let _ = self.provider.set(p.clone());
        }
    }
}

/// One loaded config.
pub struct Loaded {
    pub config: Config,
    pub entries: FxHashMap<Arc<str>, Entry>,
    /// Shared with the next config when its `http_timeout` is the same, so
    /// a reload keeps the clients and their open connections.
    pub http: Arc<Http>,
    /// What the files looked like when this was loaded.
    pub stamps: Stamps,
    /// Files holding secrets that others can read (as ssh warns).
    pub warnings: Vec<String>,
}

impl Loaded {
    pub fn new(config: Config, config_path: &Path) -> Self {
        let http = Arc::new(Http::new(config.daemon.http_timeout));
        let mut fingerprints = fingerprint::all(&config);
        let entries = config
            .credentials
            .values()
            .map(|cred| {
                let name: Arc<str> = cred.name.as_str().into();
                let entry = Entry {
                    cred: cred.clone(),
                    name: name.clone(),
                    provider: OnceLock::new(),
                    fingerprint: fingerprints.remove(&cred.name).unwrap_or_default(),
                };
                (name, entry)
            })
            .collect();
        let stamps = Stamps::take(config_path, &config);
        let warnings = secret_files(&config)
            .iter()
            .filter_map(|p| seal::loose_file_warning(p))
            .collect();
        Self {
            config,
            entries,
            http,
            stamps,
            warnings,
        }
    }
}

/// Files named in the config that hold secrets: key files and client
/// secret files.
fn secret_files(config: &Config) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for cred in config.credentials.values() {
        match &cred.source {
            Source::Google(g) => files.extend(g.key_file.clone()),
            Source::Azure(a) => {
                if let Some(SecretSource::File(p)) = &a.client_secret {
                    files.push(p.clone());
                }
            }
            _ => {}
        }
    }
    files
}
