//! Encryption of cache records at rest: AES-256-GCM (aws-lc-rs, already in
//! the tree for TLS) with a random 96-bit nonce per record, and the
//! credential's name and settings fingerprint as associated data, so a
//! record copied under another name or fingerprint does not open.
//!
//! The key is 32 random bytes in a 0600 file beside the config file (never
//! in the data directory, so a copied or backed-up cache leaks nothing).
//! A lost or different key makes every record unreadable, which the store
//! treats as "not cached": the daemon fetches anew and never crashes.

use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

const KEY_LEN: usize = 32;
const AAD_DOMAIN: &[u8] = b"credcache-record-v2\0";

/// Seals and opens cache records with the cache key.
pub struct Sealer {
    key: LessSafeKey,
    rng: SystemRandom,
    location: String,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// A sealer with this key; `location` says where the key lives (status).
    pub fn new(key: &[u8; KEY_LEN], location: impl Into<String>) -> Self {
        let key =
            LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte key is valid"));
        Self {
            key,
            rng: SystemRandom::new(),
            location: location.into(),
        }
    }

    /// A sealer with a fresh random key that lives only in memory.
    pub fn ephemeral(why: &str) -> Self {
        let key = random_key();
        Self::new(
            &key,
            format!("memory only ({why}); the cache will not survive a restart"),
        )
    }

    /// Where the key lives, for `status`.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// `nonce || ciphertext || tag`.
    pub fn seal(&self, name: &str, fingerprint: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .expect("the system random source works");
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + AES_256_GCM.tag_len());
        out.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(name, fingerprint)),
                &mut body,
            )
            .expect("sealing a small record cannot fail");
        out.extend_from_slice(&body);
        body.iter_mut().for_each(|b| *b = 0);
        out
    }

    /// The plaintext, or `None` if the record was sealed with another key,
    /// under another name or fingerprint, or tampered with.
    pub fn open(&self, name: &str, fingerprint: &str, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = Zeroizing::new(body.to_vec());
        let len = self
            .key
            .open_in_place(nonce, Aad::from(aad(name, fingerprint)), &mut buf)
            .ok()?
            .len();
        buf.truncate(len);
        Some(buf)
    }
}

fn aad(name: &str, fingerprint: &str) -> Vec<u8> {
    let mut aad = AAD_DOMAIN.to_vec();
    aad.extend_from_slice(name.as_bytes());
    aad.push(0);
    aad.extend_from_slice(fingerprint.as_bytes());
    aad
}

fn random_key() -> Zeroizing<[u8; KEY_LEN]> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    SystemRandom::new()
        .fill(&mut key[..])
        .expect("the system random source works");
    key
}

/// The key file: beside the config file, never in the data directory.
pub fn key_path(config_file: &Path) -> PathBuf {
    config_file
        .parent()
        .unwrap_or(Path::new("."))
        .join("cache.key")
}

/// Loads the key from `path`, creating it (0600) if it does not exist. A
/// file that is not a key (wrong size) is replaced: the cache is
/// re-derivable. If the file cannot be read or written at all, the key is
/// kept in memory only. Warnings (for the log) come back with it.
pub fn load_or_create(path: &Path) -> (Sealer, Vec<String>) {
    let mut warnings = Vec::new();
    // A FIFO or device planted as the key would block start-up or eat
    // memory: read it like every other file (`files.rs`).
    match crate::files::read_blocking(path, 4096, crate::files::READ_TIMEOUT) {
        Ok(bytes) => match crate::sys::unprotect_key(&bytes) {
            Ok(plain) if plain.len() == KEY_LEN => {
                if let Some(w) = loose_file_warning(path) {
                    warnings.push(w);
                }
                let key: Zeroizing<[u8; KEY_LEN]> =
                    Zeroizing::new(plain.as_slice().try_into().expect("length checked"));
                let mut bytes = bytes;
                bytes.iter_mut().for_each(|b| *b = 0);
                return (
                    Sealer::new(&key, file_location(path)),
                    warnings,
                );
            }
            Ok(_) => warnings.push(format!(
            "cache key {} is not a {KEY_LEN}-byte key; replacing it (cached tokens will be fetched anew)",
            path.display()
            )),
            // Windows: sealed by DPAPI for another user or machine (a copied
            // profile). The cache it protected is useless here: a new key.
            Err(why) => warnings.push(format!(
                "cache key {} cannot be used: {why}; replacing it (cached tokens will be fetched anew)",
                path.display()
            )),
        },
        Err(e) if e.is_not_found() => {}
        Err(e) => {
            warnings.push(format!("cannot read the cache key {}: {e}", path.display()));
            return (Sealer::ephemeral("the key file cannot be read"), warnings);
        }
    }
    let key = random_key();
    match write_key(path, &key) {
        Ok(()) => (Sealer::new(&key, file_location(path)), warnings),
        Err(e) => {
            warnings.push(format!(
                "cannot write the cache key {}: {e}",
                path.display()
            ));
            (
                Sealer::ephemeral("the key file cannot be written"),
                warnings,
            )
        }
    }
}

/// Where a key kept in `path` lives, for `status`: the file and how it is
/// protected (its mode, or DPAPI on Windows).
fn file_location(path: &Path) -> String {
    format!("file {} ({})", path.display(), crate::sys::KEY_PROTECTION)
}

/// Written whole, so a crash never leaves a half-written key that would
/// then be "replaced".
fn write_key(path: &Path, key: &[u8; KEY_LEN]) -> std::io::Result<()> {
    crate::files::replace_private(path, &crate::sys::protect_key(key)?)
}

/// The warning ssh would give for a private file that others can read.
pub fn loose_file_warning(path: &Path) -> Option<String> {
    crate::sys::loose_file_warning(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_every_way_to_fail() {
        let s = Sealer::new(&[7u8; 32], "test");
        let sealed = s.seal("gcp", "fp1", b"ya29.token");
        assert!(
            !sealed.windows(4).any(|w| w == b"ya29"),
            "ciphertext carries no plaintext"
        );
        assert_eq!(&s.open("gcp", "fp1", &sealed).unwrap()[..], b"ya29.token");
        assert!(
            s.open("gcp", "fp2", &sealed).is_none(),
            "another fingerprint"
        );
        assert!(s.open("other", "fp1", &sealed).is_none(), "another name");
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(s.open("gcp", "fp1", &tampered).is_none(), "tampered");
        assert!(s.open("gcp", "fp1", &sealed[..10]).is_none(), "truncated");
        assert!(
            Sealer::new(&[8u8; 32], "other")
                .open("gcp", "fp1", &sealed)
                .is_none(),
            "another key"
        );
        assert_ne!(
            s.seal("gcp", "fp1", b"x"),
            s.seal("gcp", "fp1", b"x"),
            "fresh nonce per record"
        );
    }

    #[test]
    fn key_file_is_created_private_reused_and_replaced_when_garbage() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("conf/cache.key");
        let (a, w) = load_or_create(&path);
        assert!(w.is_empty(), "{w:?}");
        #[cfg(unix)]
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(&path).unwrap().permissions()
            ) & 0o777,
            0o600
        );
        let sealed = a.seal("n", "f", b"secret");
        let (b, _) = load_or_create(&path);
        assert!(
            b.open("n", "f", &sealed).is_some(),
            "the same key next time"
        );
        assert!(b.location().contains("cache.key"));
        #[cfg(unix)]
        assert!(
            b.location()
                .ends_with("cache.key (protected by its file mode)"),
            "{}",
            b.location()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::write(&path, b"short").unwrap();
            let (c, w) = load_or_create(&path);
            assert!(w[0].contains("not a 32-byte key"), "{w:?}");
            assert!(c.open("n", "f", &sealed).is_none());
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(
                loose_file_warning(&path)
                    .unwrap()
                    .contains("readable by others")
            );
        }
    }

    /// Windows: the key file holds a DPAPI blob, not the key; bytes DPAPI
    /// does not open for this user (a profile copied from another machine)
    /// are one warning and a new key, never a failure.
    #[cfg(windows)]
    #[test]
    fn the_key_is_sealed_with_dpapi_and_a_foreign_one_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("conf/cache.key");
        let (a, w) = load_or_create(&path);
        assert!(w.is_empty(), "{w:?}");
        let on_disk = std::fs::read(&path).unwrap();
        assert_ne!(on_disk.len(), KEY_LEN, "a DPAPI blob, not the raw key");
        let plain = crate::sys::unprotect_key(&on_disk).unwrap();
        assert_eq!(plain.len(), KEY_LEN);
        assert!(
            !on_disk.windows(KEY_LEN).any(|w| w == plain.as_slice()),
            "the key is not in the file in the clear"
        );
        let sealed = a.seal("n", "f", b"secret");
        let (b, w) = load_or_create(&path);
        assert!(w.is_empty(), "{w:?}");
        assert!(
            b.open("n", "f", &sealed).is_some(),
            "the same key next time"
        );
        assert!(
            b.location()
                .ends_with("cache.key (sealed with DPAPI for this user)"),
            "status says how the key is kept: {}",
            b.location()
        );

        // What another machine's DPAPI would have written: not openable here.
        let mut foreign = on_disk.clone();
        let last = foreign.len() - 1;
        foreign[last] ^= 0xff;
        std::fs::write(&path, &foreign).unwrap();
        let (c, w) = load_or_create(&path);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("DPAPI cannot unseal it"), "{w:?}");
        assert!(
            c.open("n", "f", &sealed).is_none(),
            "not cached: fetched anew"
        );
        let (d, w) = load_or_create(&path);
        assert!(w.is_empty(), "the replacement key opens: {w:?}");
        assert!(d.open("n", "f", &c.seal("n", "f", b"x")).is_some());
    }
}
