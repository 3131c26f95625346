//! The on-disk token cache: the only module that knows about sled.
//!
//! Keys are `<credential name> NUL <settings fingerprint>`, so a credential
//! whose settings changed can never be served a record written under the
//! old ones. Values are one format-version byte followed by the record.
//! Version 2, the only one written, is a bincode [`Record`] sealed by
//! [`Sealer`] (AES-256-GCM, the key and fingerprint as associated data).
//! Version 1 (plaintext, written by early builds) and anything that does
//! not open (another key, tampering) is a cache miss, removed on start.
//!
//! Refresh tokens (`credcache login`, a workforce user's rotated one) are a
//! second record type, in their own tree ([`REFRESH_TREE`]): keyed by
//! credential name and identity, sealed the same way, and never touched by
//! `forget` or the start-up pruning of token records. Only `logout` (and a
//! new sign-in, which replaces it) removes one.
//!
//! A database that sled cannot open is moved aside and rebuilt: the cache is
//! re-derivable, so losing it costs one upstream fetch per credential, while
//! refusing to start would cost the user their tools.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use credcache_shared::Secret;
use serde::{Deserialize, Serialize};

use crate::seal::Sealer;

/// Sealed: a refresh token's text, or (read only) a token record whose
/// timestamps are RFC 3339 text ([`RecordV2`]).
const FORMAT_SEALED_V2: u8 = 2;

/// The token record format written today: sealed, timestamps as numbers.
const FORMAT_RECORD_V3: u8 = 3;

/// The sled tree that holds refresh tokens, apart from token records.
const REFRESH_TREE: &str = "refresh-tokens";

/// The path a memory-only store reports.
const MEMORY: &str = "(memory)";

/// sled's page cache: the records are tiny, a few MiB is plenty.
const CACHE_CAPACITY: u64 = 4 << 20;

/// A cached token as stored. Internal: it crosses no socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub kind: String,
    pub token: Secret,
    #[serde(with = "credcache_shared::time::compact")]
    pub expires_at: DateTime<Utc>,
    #[serde(with = "credcache_shared::time::compact")]
    pub fetched_at: DateTime<Utc>,
    pub quota_project: Option<String>,
}

/// A token record as written before timestamps were numbers: read, so that
/// an upgrade keeps the cached tokens, and written again only as a
/// [`Record`].
#[derive(Deserialize)]
struct RecordV2 {
    kind: String,
    token: Secret,
    expires_at: DateTime<Utc>,
    fetched_at: DateTime<Utc>,
    quota_project: Option<String>,
}

impl From<RecordV2> for Record {
    fn from(r: RecordV2) -> Self {
        Record {
            kind: r.kind,
            token: r.token,
            expires_at: r.expires_at,
            fetched_at: r.fetched_at,
            quota_project: r.quota_project,
        }
    }
}

/// One record read back at start-up.
#[derive(Debug)]
pub struct Stored {
    pub name: String,
    pub fingerprint: String,
    pub record: Record,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cache database {path} is in use by another process (another credcached with the same CREDCACHE_DATA_DIR?)"
    )]
    Locked { path: PathBuf },
    #[error("cache database {path}: {source}")]
    Sled { path: PathBuf, source: sled::Error },
    #[error("cache record for {name} cannot be encoded: {reason}")]
    Encode { name: String, reason: String },
    #[error("cache database {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The sled-backed cache.
#[derive(Clone)]
pub struct Store {
    /// Shared by every clone, so a reopen (after a full disk) is seen by
    /// all. `None` while closed for a reopen that has not succeeded yet.
    db: Arc<std::sync::RwLock<Option<sled::Db>>>,
    path: PathBuf,
    sealer: Arc<Sealer>,
}

impl Store {
    /// Opens the database at `path`, moving a corrupt one aside. The second
    /// value is a warning to log when that happened.
    pub fn open(path: &Path, sealer: Arc<Sealer>) -> Result<(Self, Option<String>), StoreError> {
        match Self::open_once(path, sealer.clone()) {
            Ok(store) => Ok((store, None)),
            Err(StoreError::Sled { source, .. }) if !is_lock_error(&source) => {
                let aside = aside_path(path);
                std::fs::rename(path, &aside).map_err(|e| StoreError::Io {
                    path: path.to_path_buf(),
                    source: e,
                })?;
                let store = Self::open_once(path, sealer)?;
                let warning = format!(
                    "cache database {} could not be opened ({source}); moved it to {} and started an empty cache",
                    path.display(),
                    aside.display()
                );
                Ok((store, Some(warning)))
            }
            Err(e) => Err(e),
        }
    }

    /// [`Store::open`], waiting up to `patience` for a database another
    /// process holds. The daemon holds the daemon lock when it opens the
    /// cache, so a holder is almost always the previous daemon on its way
    /// out; one that is not (another socket, the same data directory) is
    /// still refused as [`StoreError::Locked`] once `patience` is spent.
    pub fn open_waiting(
        path: &Path,
        sealer: Arc<Sealer>,
        patience: Duration,
    ) -> Result<(Self, Option<String>), StoreError> {
        const POLL: Duration = Duration::from_millis(10);
        let deadline = Instant::now() + patience;
        loop {
            match Self::open(path, sealer.clone()) {
                Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(POLL);
                }
                opened => return opened,
            }
        }
    }

    /// A cache that lives only as long as the daemon: for a data directory
    /// that cannot be written (read-only, full, not ours to write). sled's
    /// temporary mode keeps its files in `/dev/shm` (memory) and removes
    /// them on exit; records are sealed there as everywhere.
    pub fn open_memory(sealer: Arc<Sealer>) -> Result<Self, StoreError> {
        let path = PathBuf::from(MEMORY);
        let db = sled::Config::new()
            .temporary(true)
            .cache_capacity(CACHE_CAPACITY)
            .mode(sled::Mode::LowSpace)
            .open()
            .map_err(|source| StoreError::Sled {
                path: path.clone(),
                source,
            })?;
        Ok(Self {
            db: Arc::new(std::sync::RwLock::new(Some(db))),
            path,
            sealer,
        })
    }

    fn open_once(path: &Path, sealer: Arc<Sealer>) -> Result<Self, StoreError> {
        let sled_err = |source: sled::Error| {
            if is_lock_error(&source) {
                StoreError::Locked {
                    path: path.to_path_buf(),
                }
            } else {
                StoreError::Sled {
                    path: path.to_path_buf(),
                    source,
                }
            }
        };
        // sled panics on some kinds of corruption instead of returning an
        // error; a panic here must not take the daemon down either.
        let opened = std::panic::catch_unwind(|| {
            sled::Config::new()
                .path(path)
                .cache_capacity(CACHE_CAPACITY)
                .mode(sled::Mode::LowSpace)
                .open()
        });
        let db = match opened {
            Ok(result) => result.map_err(sled_err)?,
            Err(_) => {
                return Err(StoreError::Sled {
                    path: path.to_path_buf(),
                    source: sled::Error::Corruption { at: None, bt: () },
                });
            }
        };
        restrict_permissions(path);
        Ok(Self {
            db: Arc::new(std::sync::RwLock::new(Some(db))),
            path: path.to_path_buf(),
            sealer,
        })
    }

    /// The database, or an error while it is closed for a reopen.
    fn db(&self) -> Result<sled::Db, StoreError> {
        self.db
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| StoreError::Io {
                path: self.path.clone(),
                source: std::io::Error::other("closed after a write error; reopening"),
            })
    }

    /// Closes the database and opens it again. After an I/O error (a full
    /// disk) sled refuses every later write until it is reopened; this is
    /// how the cache heals without a restart once space returns. No
    /// move-aside here: a disk that is still full is not corruption.
    pub fn reopen(&self) -> Result<(), StoreError> {
        if self.path == Path::new(MEMORY) {
            return Ok(());
        }
        let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
        // The old handle must be gone before the new open takes sled's lock.
        drop(slot.take());
        let fresh = Self::open_once(&self.path, self.sealer.clone())?;
        let db = fresh.db.write().unwrap_or_else(|p| p.into_inner()).take();
        *slot = db;
        Ok(())
    }

    /// Where the cache key lives, for `status`.
    pub fn key_location(&self) -> &str {
        self.sealer.location()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every readable record. Unreadable ones (unknown format, garbage) are
    /// removed and skipped: they are cache misses, not errors.
    pub fn load_all(&self) -> Vec<Stored> {
        let mut out = Vec::new();
        let mut bad = Vec::new();
        let Ok(db) = self.db() else {
            return Vec::new();
        };
        for item in db.iter() {
            let Ok((key, value)) = item else { continue };
            match decode(&self.sealer, &key, &value) {
                Some(stored) => out.push(stored),
                None => bad.push(key),
            }
        }
        if !bad.is_empty() {
            // One line, not one per record: a new key makes them all fail.
            tracing::warn!(
                count = bad.len(),
                "dropping cache records that do not open with the cache key (another key, \
                 an older format, or tampering); those tokens will be fetched anew"
            );
        }
        for key in bad {
            let _ = db.remove(key);
        }
        out
    }

    /// The record of `name` under `fingerprint`, if there is one and it
    /// opens: one read, for a token asked for before [`Store::load_all`]
    /// got to it (a record that does not open is left to `load_all`).
    pub fn get(&self, name: &str, fingerprint: &str) -> Option<Record> {
        let key = key(name, fingerprint);
        let value = self.db().ok()?.get(&key).ok()??;
        decode(&self.sealer, &key, &value).map(|stored| stored.record)
    }

    /// Writes a record for `name` under `fingerprint`, replacing every other
    /// record of that name, and flushes it to disk so it survives a crash.
    pub fn put(&self, name: &str, fingerprint: &str, record: &Record) -> Result<(), StoreError> {
        self.put_all([(name, fingerprint, record)])
    }

    /// [`put`](Store::put) for several records, with one flush for all: the
    /// engine's writer hands over every record that queued during the last
    /// flush (group commit).
    pub fn put_all<'a>(
        &self,
        records: impl IntoIterator<Item = (&'a str, &'a str, &'a Record)>,
    ) -> Result<(), StoreError> {
        let db = self.db()?;
        let mut unencodable = None;
        for (name, fingerprint, record) in records {
            // Tokens are capped well below a frame (`http::check_token`), but
            // a record that does not encode is this record's error, never a
            // panic that would take the writer thread down, nor a reason not
            // to write the others.
            let plain = match credcache_shared::codec::to_vec(record) {
                Ok(plain) => zeroize::Zeroizing::new(plain),
                Err(e) => {
                    unencodable.get_or_insert(StoreError::Encode {
                        name: name.to_owned(),
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            let mut value = vec![FORMAT_RECORD_V3];
            value.extend(self.sealer.seal(name, fingerprint, &plain));
            self.remove_except(name, Some(fingerprint))?;
            db.insert(key(name, fingerprint), value)
                .map_err(|e| self.err(e))?;
        }
        self.db()?.flush().map_err(|e| self.err(e))?;
        unencodable.map_or(Ok(()), Err)
    }

    /// Removes every record of `name`.
    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        self.remove_except(name, None)?;
        self.db()?.flush().map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Removes every record for which `keep(name, fingerprint)` is false.
    pub fn retain(&self, keep: impl Fn(&str, &str) -> bool) -> Result<usize, StoreError> {
        let mut removed = 0;
        let db = self.db()?;
        for item in db.iter() {
            let Ok((k, _)) = item else { continue };
            let drop = match split_key(&k) {
                Some((name, fp)) => !keep(name, fp),
                None => true,
            };
            if drop {
                db.remove(k).map_err(|e| self.err(e))?;
                removed += 1;
            }
        }
        self.db()?.flush().map_err(|e| self.err(e))?;
        Ok(removed)
    }

    /// Removes the records of these names and fingerprints, and flushes if
    /// there were any.
    pub fn remove_all<'a>(
        &self,
        records: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<usize, StoreError> {
        let db = self.db()?;
        let mut removed = 0;
        for (name, fingerprint) in records {
            if db
                .remove(key(name, fingerprint))
                .map_err(|e| self.err(e))?
                .is_some()
            {
                removed += 1;
            }
        }
        if removed > 0 {
            db.flush().map_err(|e| self.err(e))?;
        }
        Ok(removed)
    }

    pub fn flush(&self) -> Result<(), StoreError> {
        self.db()?.flush().map(drop).map_err(|e| self.err(e))
    }

    /// Flushes and closes the database, which releases sled's lock on it.
    /// The daemon does this at shutdown before it lets go of the daemon
    /// lock, so the daemon started next never finds the cache still held.
    /// Every later call is an error.
    pub fn close(&self) -> Result<(), StoreError> {
        let db = self.db.write().unwrap_or_else(|p| p.into_inner()).take();
        match db {
            Some(db) => db.flush().map(drop).map_err(|e| self.err(e)),
            None => Ok(()),
        }
    }

    /// Bytes on disk, for status and benchmarks.
    pub fn size_on_disk(&self) -> u64 {
        self.db()
            .ok()
            .and_then(|db| db.size_on_disk().ok())
            .unwrap_or(0)
    }

    /// The refresh token kept for credential `name` and `identity` (what
    /// it was signed in as), if any. One that does not open is `None`.
    pub fn refresh_token(&self, name: &str, identity: &str) -> Option<Secret> {
        let tree = self.db().ok()?.open_tree(REFRESH_TREE).ok()?;
        let value = tree.get(key(name, identity)).ok()??;
        let (&format, body) = value.split_first()?;
        if format != FORMAT_SEALED_V2 {
            return None;
        }
        let plain = self.sealer.open(name, &refresh_aad(identity), body)?;
        let text = std::str::from_utf8(&plain).ok()?;
        Some(Secret::new(text))
    }

    /// Keeps `token` as the refresh token of `name` under `identity`,
    /// replacing every other one of that name, and flushes it to disk
    /// before returning: a rotated refresh token must survive a crash, or
    /// the spent one would be sent again.
    pub fn put_refresh_token(
        &self,
        name: &str,
        identity: &str,
        token: &Secret,
    ) -> Result<(), StoreError> {
        let tree = self
            .db()?
            .open_tree(REFRESH_TREE)
            .map_err(|e| self.err(e))?;
        let mut prefix = name.as_bytes().to_vec();
        prefix.push(0);
        let wanted = key(name, identity);
        for item in tree.scan_prefix(&prefix) {
            let Ok((k, _)) = item else { continue };
            if *k != *wanted {
                tree.remove(k).map_err(|e| self.err(e))?;
            }
        }
        let mut value = vec![FORMAT_SEALED_V2];
        value.extend(
            self.sealer
                .seal(name, &refresh_aad(identity), token.expose().as_bytes()),
        );
        tree.insert(wanted, value).map_err(|e| self.err(e))?;
        tree.flush().map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Whether any refresh token of `name` is kept, under any identity.
    pub fn has_refresh_token(&self, name: &str) -> bool {
        let Ok(tree) = self
            .db()
            .and_then(|db| db.open_tree(REFRESH_TREE).map_err(|e| self.err(e)))
        else {
            return false;
        };
        let mut prefix = name.as_bytes().to_vec();
        prefix.push(0);
        tree.scan_prefix(&prefix).next().is_some()
    }

    /// Removes every refresh token of `name` (`logout`). True if there was one.
    pub fn remove_refresh_tokens(&self, name: &str) -> Result<bool, StoreError> {
        let tree = self
            .db()?
            .open_tree(REFRESH_TREE)
            .map_err(|e| self.err(e))?;
        let mut prefix = name.as_bytes().to_vec();
        prefix.push(0);
        let mut removed = false;
        for item in tree.scan_prefix(&prefix) {
            let Ok((k, _)) = item else { continue };
            tree.remove(k).map_err(|e| self.err(e))?;
            removed = true;
        }
        tree.flush().map_err(|e| self.err(e))?;
        Ok(removed)
    }

    fn remove_except(&self, name: &str, keep: Option<&str>) -> Result<(), StoreError> {
        let mut prefix = name.as_bytes().to_vec();
        prefix.push(0);
        let db = self.db()?;
        for item in db.scan_prefix(&prefix) {
            let Ok((k, _)) = item else { continue };
            if keep.is_some_and(|fp| k[prefix.len()..] == *fp.as_bytes()) {
                continue;
            }
            db.remove(k).map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    fn err(&self, source: sled::Error) -> StoreError {
        StoreError::Sled {
            path: self.path.clone(),
            source,
        }
    }
}

/// The associated data of a refresh-token record: never that of a token
/// record, so neither opens as the other.
fn refresh_aad(identity: &str) -> String {
    format!("refresh-token {identity}")
}

fn key(name: &str, fingerprint: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 1 + fingerprint.len());
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k.extend_from_slice(fingerprint.as_bytes());
    k
}

fn split_key(key: &[u8]) -> Option<(&str, &str)> {
    let at = key.iter().position(|b| *b == 0)?;
    let name = std::str::from_utf8(&key[..at]).ok()?;
    let fp = std::str::from_utf8(&key[at + 1..]).ok()?;
    Some((name, fp))
}

fn decode(sealer: &Sealer, key: &[u8], value: &[u8]) -> Option<Stored> {
    let (name, fingerprint) = split_key(key)?;
    let (&format, body) = value.split_first()?;
    if format != FORMAT_RECORD_V3 && format != FORMAT_SEALED_V2 {
        return None;
    }
    let plain = sealer.open(name, fingerprint, body)?;
    let record = if format == FORMAT_RECORD_V3 {
        credcache_shared::codec::from_slice(&plain).ok()?
    } else {
        credcache_shared::codec::from_slice::<RecordV2>(&plain)
            .ok()?
            .into()
    };
    Some(Stored {
        name: name.to_owned(),
        fingerprint: fingerprint.to_owned(),
        record,
    })
}

fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock
        || io.to_string().contains("could not acquire lock"))
}

fn aside_path(path: &Path) -> PathBuf {
    let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".corrupt-{stamp}"));
    path.with_file_name(name)
}

/// sled creates its files with the process umask; the daemon sets 077, and
/// this makes sure of it for files that already existed (`sys`: on Windows
/// the directory's owner-only DACL is inherited instead).
fn restrict_permissions(path: &Path) {
    let Ok(entries) = walk(path) else { return };
    crate::sys::restrict_tree(path, &entries);
}

fn walk(dir: &Path) -> std::io::Result<Vec<(PathBuf, bool)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        if ft.is_dir() {
            out.extend(walk(&entry.path())?);
            out.push((entry.path(), true));
        } else if ft.is_file() {
            out.push((entry.path(), false));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Arc<Sealer> {
        Arc::new(Sealer::new(&[3u8; 32], "test"))
    }

    /// Opens a database a dropped store held, as the daemon's start does:
    /// sled's flusher thread lets go of its lock a moment after the drop.
    fn reopen(path: &Path, sealer: Arc<Sealer>) -> (Store, Option<String>) {
        Store::open_waiting(path, sealer, Duration::from_secs(10)).unwrap()
    }

    #[test]
    fn records_are_sealed_and_a_tampered_or_foreign_one_is_a_miss() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cache");
        let (store, _) = Store::open(&path, sealer()).unwrap();
        store
            .put("gcp", "fp", &record("ya29.secret-token"))
            .unwrap();
        let raw = store.db().unwrap().get(key("gcp", "fp")).unwrap().unwrap();
        assert!(
            !raw.windows(9).any(|w| w == b"ya29.secr"),
            "no token bytes on disk"
        );
        // Tamper with one byte: a miss, and the record is removed.
        let mut bad = raw.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0x40;
        store.db().unwrap().insert(key("gcp", "fp"), bad).unwrap();
        assert!(store.load_all().is_empty());
        assert_eq!(store.db().unwrap().len(), 0);
        // Another key cannot read what this one wrote.
        store.put("gcp", "fp", &record("t")).unwrap();
        drop(store);
        let (other, _) = reopen(&path, Arc::new(Sealer::new(&[4u8; 32], "other")));
        assert!(other.load_all().is_empty());
        // A record moved under another name does not open either.
        let (store, _) = Store::open(&tmp.path().join("c2"), sealer()).unwrap();
        store.put("a", "fp", &record("t")).unwrap();
        let v = store.db().unwrap().get(key("a", "fp")).unwrap().unwrap();
        store.db().unwrap().insert(key("b", "fp"), v).unwrap();
        let names: Vec<String> = store.load_all().into_iter().map(|s| s.name).collect();
        assert_eq!(names, vec!["a".to_owned()]);
    }

    /// A cache written before timestamps were numbers still serves its
    /// tokens after an upgrade, and is rewritten in today's format.
    #[test]
    fn a_record_of_the_previous_format_is_read() {
        #[derive(Serialize)]
        struct Old<'a> {
            kind: &'a str,
            token: &'a str,
            expires_at: DateTime<Utc>,
            fetched_at: DateTime<Utc>,
            quota_project: Option<&'a str>,
        }
        let tmp = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&tmp.path().join("cache"), sealer()).unwrap();
        let expires_at = DateTime::parse_from_rfc3339("2026-12-02T10:00:00.5Z")
            .unwrap()
            .to_utc();
        let fetched_at = expires_at - chrono::Duration::hours(1);
        let plain = credcache_shared::codec::to_vec(&Old {
            kind: "gke-cluster",
            token: "old-token",
            expires_at,
            fetched_at,
            quota_project: Some("p"),
        })
        .unwrap();
        let mut value = vec![FORMAT_SEALED_V2];
        value.extend(store.sealer.seal("gke", "fp", &plain));
        store.db().unwrap().insert(key("gke", "fp"), value).unwrap();

        let loaded = store.load_all();
        assert_eq!(loaded.len(), 1);
        let old = &loaded[0];
        assert_eq!((old.name.as_str(), old.fingerprint.as_str()), ("gke", "fp"));
        assert_eq!(
            old.record,
            Record {
                kind: "gke-cluster".into(),
                token: Secret::new("old-token"),
                expires_at,
                fetched_at,
                quota_project: Some("p".into()),
            }
        );
        store.put("gke", "fp", &old.record).unwrap();
        let raw = store.db().unwrap().get(key("gke", "fp")).unwrap().unwrap();
        assert_eq!(raw[0], FORMAT_RECORD_V3);
        assert_eq!(store.load_all()[0].record, old.record);
    }

    fn record(token: &str) -> Record {
        let now = Utc::now();
        Record {
            kind: "google".into(),
            token: Secret::new(token),
            expires_at: now,
            fetched_at: now,
            quota_project: None,
        }
    }

    /// Regression: a record over the frame limit panicked the writer
    /// thread (`expect`), and nothing was saved again.
    #[test]
    fn a_record_too_big_to_encode_is_an_error_not_a_panic() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&tmp.path().join("cache"), sealer()).unwrap();
        let huge = record(&"A".repeat(credcache_shared::codec::MAX_FRAME + 1));
        match store.put("big", "fp", &huge) {
            Err(StoreError::Encode { name, .. }) => assert_eq!(name, "big"),
            other => panic!("wanted an encode error, got {other:?}"),
        }
        store.put("small", "fp", &record("t")).unwrap();
        assert_eq!(store.load_all().len(), 1);
    }

    #[test]
    fn put_replaces_other_fingerprints_and_survives_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cache");
        {
            let (store, warning) = Store::open(&path, sealer()).unwrap();
            assert!(warning.is_none());
            store.put("gcp", "fp1", &record("a")).unwrap();
            store.put("gcp", "fp2", &record("b")).unwrap();
            store.put("other", "fp1", &record("c")).unwrap();
        }
        let (store, _) = reopen(&path, sealer());
        let mut all = store.load_all();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(all.len(), 2);
        assert_eq!(
            (all[0].name.as_str(), all[0].fingerprint.as_str()),
            ("gcp", "fp2")
        );
        assert_eq!(all[0].record.token.expose(), "b");
        store.remove("gcp").unwrap();
        assert_eq!(store.load_all().len(), 1);
        assert_eq!(store.retain(|_, _| false).unwrap(), 1);
        assert!(store.load_all().is_empty());
    }

    /// What the engine's start prunes: exactly the records named, by name
    /// and fingerprint; a record already gone is no error.
    #[test]
    fn remove_all_removes_the_records_named_and_no_other() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&tmp.path().join("cache"), sealer()).unwrap();
        store.put("a", "fp1", &record("a")).unwrap();
        store.put("b", "fp1", &record("b")).unwrap();
        store.put("c", "fp1", &record("c")).unwrap();
        let removed = store
            .remove_all([("a", "fp1"), ("b", "fp2"), ("gone", "fp1")])
            .unwrap();
        assert_eq!(removed, 1);
        let mut left: Vec<_> = store.load_all().into_iter().map(|s| s.name).collect();
        left.sort();
        assert_eq!(left, ["b", "c"]);
    }

    #[test]
    fn refresh_tokens_are_sealed_apart_from_tokens_and_survive_forget_and_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cache");
        {
            let (store, _) = Store::open(&path, sealer()).unwrap();
            store.put("me", "fp", &record("t")).unwrap();
            store
                .put_refresh_token("me", "id1", &Secret::new("rt-secret-one"))
                .unwrap();
            store
                .put_refresh_token("me", "id1", &Secret::new("rt-secret-two"))
                .unwrap();
            // Token records go; the refresh token stays.
            store.remove("me").unwrap();
            assert_eq!(store.retain(|_, _| false).unwrap(), 0);
            assert!(store.load_all().is_empty());
        }
        let (store, _) = reopen(&path, sealer());
        assert_eq!(
            store.refresh_token("me", "id1").unwrap().expose(),
            "rt-secret-two"
        );
        assert!(store.refresh_token("me", "id2").is_none());
        let tree = store.db().unwrap().open_tree(REFRESH_TREE).unwrap();
        let raw = tree.get(key("me", "id1")).unwrap().unwrap();
        assert!(!raw.windows(9).any(|w| w == b"rt-secret"), "sealed on disk");
        // Another identity replaces it; logout removes it.
        store
            .put_refresh_token("me", "id2", &Secret::new("rt-three"))
            .unwrap();
        assert!(store.refresh_token("me", "id1").is_none());
        assert!(store.remove_refresh_tokens("me").unwrap());
        assert!(store.refresh_token("me", "id2").is_none());
        assert!(!store.remove_refresh_tokens("me").unwrap());
    }

    #[test]
    fn unreadable_records_are_skipped_and_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&tmp.path().join("cache"), sealer()).unwrap();
        store
            .db()
            .unwrap()
            .insert(key("x", "fp"), vec![99, 1, 2, 3])
            .unwrap();
        store
            .db()
            .unwrap()
            .insert(b"no-separator", vec![1])
            .unwrap();
        store
            .db()
            .unwrap()
            .insert(key("y", "fp"), vec![FORMAT_SEALED_V2, 0xFF, 0xFF])
            .unwrap();
        assert!(store.load_all().is_empty());
        assert_eq!(store.db().unwrap().len(), 0);
    }

    #[test]
    fn a_second_open_is_refused_as_locked() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cache");
        let _first = Store::open(&path, sealer()).unwrap();
        match Store::open(&path, sealer()) {
            Err(StoreError::Locked { .. }) => {}
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("second open succeeded"),
        }
    }

    #[test]
    fn a_closed_database_opens_and_one_still_held_is_locked_after_the_wait() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cache");
        let (first, _) = Store::open(&path, sealer()).unwrap();
        first.put("gcp", "fp", &record("kept")).unwrap();
        match Store::open_waiting(&path, sealer(), Duration::from_millis(50)) {
            Err(StoreError::Locked { .. }) => {}
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("opened a database another handle holds"),
        }
        // A store that is closed lets go of the database even while a
        // clone of it lives on, as the daemon's tasks' clones do.
        let clone = first.clone();
        let waiting = {
            let path = path.clone();
            std::thread::spawn(move || {
                Store::open_waiting(&path, sealer(), Duration::from_secs(60))
            })
        };
        first.close().unwrap();
        let (second, _) = waiting.join().unwrap().unwrap();
        assert_eq!(
            second.load_all().len(),
            1,
            "what was put before close was flushed"
        );
        assert!(clone.flush().is_err(), "a closed store refuses further use");
    }

    #[test]
    fn a_corrupt_database_is_moved_aside() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cache");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(
            path.join("conf"),
            b"\xFF\xFEgarbage that is not a sled config",
        )
        .unwrap();
        std::fs::write(path.join("db"), vec![0xAB; 4096]).unwrap();
        let (store, warning) = Store::open(&path, sealer()).unwrap();
        assert!(warning.unwrap().contains("moved it to"));
        store.put("a", "fp", &record("t")).unwrap();
        let aside: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("cache.corrupt-")
            })
            .collect();
        assert_eq!(aside.len(), 1);
    }
}
