//! The config in force, with each credential's provider and fingerprint,
//! and the stamps of its files (see `reload.rs`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use credcache_shared::config::{Config, Credential, SecretSource, Source};

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
    pub cred: Credential,
    pub provider: Arc<dyn Provider>,
    pub fingerprint: String,
}

/// One loaded config.
pub struct Loaded {
    pub config: Config,
    pub entries: HashMap<String, Entry>,
    pub http: Http,
    /// What the files looked like when this was loaded.
    pub stamps: Stamps,
    /// Files holding secrets that others can read (as ssh warns).
    pub warnings: Vec<String>,
}

impl Loaded {
    pub fn new(
        config: Config,
        config_path: &Path,
        providers: &ProviderFactory,
    ) -> Result<Self, String> {
        let http = Http::new(config.daemon.http_timeout)
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let fingerprints = fingerprint::all(&config);
        let entries = config
            .credentials
            .values()
            .map(|cred| {
                let entry = Entry {
                    cred: cred.clone(),
                    provider: providers(cred, &config),
                    fingerprint: fingerprints.get(&cred.name).cloned().unwrap_or_default(),
                };
                (cred.name.clone(), entry)
            })
            .collect();
        let stamps = Stamps::take(config_path, &config);
        let warnings = secret_files(&config)
            .iter()
            .filter_map(|p| seal::loose_file_warning(p))
            .collect();
        Ok(Self {
            config,
            entries,
            http,
            stamps,
            warnings,
        })
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
