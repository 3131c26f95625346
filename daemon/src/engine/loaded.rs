//! The config in force, with each credential's provider and fingerprint,
//! and the cheap check that notices the file (or an identity file) changed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use credcache_shared::config::{Config, ConfigError, Credential, SecretSource, Source};

use crate::fingerprint;
use crate::http::Http;
use crate::providers::{self, Provider};
use crate::seal;

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
    pub fn new(config: Config, config_path: &Path) -> Result<Self, String> {
        let http = Http::new(config.daemon.http_timeout)
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let fingerprints = fingerprint::all(&config);
        let entries = config
            .credentials
            .values()
            .map(|cred| {
                let entry = Entry {
                    cred: cred.clone(),
                    provider: providers::build(cred, &config),
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
                .flat_map(fingerprint::identity_files),
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

/// Reads the config file; the error is one line.
pub fn read_config(path: &Path) -> Result<Config, ConfigError> {
    Config::load(path)
}

/// When the config was last checked, to check at most once a second.
pub struct Watch {
    pub last_check: SystemTime,
    /// Set while the file on disk is invalid and the previous config is in
    /// force.
    pub error: Option<String>,
    /// The stamps of the invalid file, so it is not re-read on every check.
    pub error_stamps: Option<Stamps>,
}
