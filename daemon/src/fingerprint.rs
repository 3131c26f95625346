//! The settings fingerprint (SPEC §5): a hash of everything that decides
//! which token a credential yields, so that a changed config, a rotated key
//! file or a changed identity behind `auth` never serves an old token.

use std::collections::BTreeMap;
use std::path::Path;

use credcache_shared::config::{Config, Credential, Source};
use sha2::{Digest, Sha256};

/// Fingerprints of every credential of `config`, by name. A credential's
/// fingerprint covers its own settings, the content of any identity file it
/// reads, and the fingerprint of the credential named by its `auth`.
pub fn all(config: &Config) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for name in config.credentials.keys() {
        fingerprint_of(config, name, &mut out, 0);
    }
    out
}

fn fingerprint_of(
    config: &Config,
    name: &str,
    done: &mut BTreeMap<String, String>,
    depth: usize,
) -> String {
    if let Some(fp) = done.get(name) {
        return fp.clone();
    }
    let Some(cred) = config.credential(name) else {
        return String::new();
    };
    let mut h = Sha256::new();
    h.update(b"credcache-fingerprint-v1\0");
    h.update(serde_json::to_vec(&cred.source).expect("settings serialize"));
    for file in identity_files(cred) {
        h.update(b"\0file\0");
        h.update(file.as_os_str().as_encoded_bytes());
        h.update(b"\0");
        match std::fs::read(&file) {
            Ok(bytes) => h.update(Sha256::digest(&bytes)),
            Err(e) => h.update(e.kind().to_string().as_bytes()),
        }
    }
    // Validation rejects cycles; the depth bound keeps a bug from looping.
    if let Some(auth) = cred.auth()
        && depth < 16
    {
        h.update(b"\0auth\0");
        h.update(fingerprint_of(config, auth, done, depth + 1).as_bytes());
    }
    let fp: String = h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    done.insert(name.to_owned(), fp.clone());
    fp
}

/// Files whose content decides the identity a credential acts as.
pub fn identity_files(cred: &Credential) -> Vec<std::path::PathBuf> {
    match &cred.source {
        Source::Google(g) => match &g.key_file {
            Some(path) => vec![path.clone()],
            None => crate::providers::google::adc_file().into_iter().collect(),
        },
        _ => Vec::new(),
    }
}

/// Size, mtime (seconds and nanoseconds) and inode of a file.
pub type FileStamp = (u64, i64, i64, u64);

/// Cheap change detection for identity files: size, mtime and inode.
pub fn file_stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.mtime(), m.mtime_nsec(), m.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse(text, Path::new("t.toml")).unwrap()
    }

    #[test]
    fn changes_with_settings_key_content_and_auth() {
        let tmp = tempfile::tempdir().unwrap();
        let key = tmp.path().join("sa.json");
        std::fs::write(&key, "one").unwrap();
        let text = |scope: &str| {
            format!(
                "[credentials.gcp]\nkind = \"google\"\nkey_file = {key:?}\nscopes = [{scope:?}]\n\
                 [credentials.gke]\nkind = \"gke-cluster\"\nauth = \"gcp\"\ncluster = \"projects/p/locations/l/azureClusters/c\"\n"
            )
        };
        let a = all(&parse(&text("s1")));
        assert_eq!(a, all(&parse(&text("s1"))), "deterministic");
        let b = all(&parse(&text("s2")));
        assert_ne!(a["gcp"], b["gcp"]);
        assert_ne!(
            a["gke"], b["gke"],
            "a changed identity changes its dependents"
        );
        assert_eq!(a["azure"], b["azure"]);
        std::fs::write(&key, "two").unwrap();
        let c = all(&parse(&text("s1")));
        assert_ne!(
            a["gcp"], c["gcp"],
            "a rotated key file changes the fingerprint"
        );
    }
}
