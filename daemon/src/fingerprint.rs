//! The settings fingerprint (docs/behaviour.md, caching): a hash of everything that decides
//! which token a credential yields, so that a changed config, a rotated key
//! file or a changed identity behind `auth` never serves an old token.

use std::collections::HashMap;
use std::path::Path;

use credcache_shared::config::{Config, Credential, Source};
use sha2::{Digest, Sha256};

use crate::providers::azure;

/// Fingerprints of every credential of `config`, by name. A credential's
/// fingerprint covers its own settings, the content of any identity file it
/// reads, and the fingerprint of the credential named by its `auth`.
pub fn all(config: &Config) -> HashMap<String, String> {
    all_in(config, &azure::process_env)
}

/// [`all`] with the environment that decides env-derived identities.
fn all_in(config: &Config, env: azure::Env<'_>) -> HashMap<String, String> {
    let mut out = HashMap::with_capacity(config.credentials.len());
    for name in config.credentials.keys() {
        fingerprint_of(config, name, env, &mut out, 0);
    }
    out
}

fn fingerprint_of(
    config: &Config,
    name: &str,
    env: azure::Env<'_>,
    done: &mut HashMap<String, String>,
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
    // Streamed into the hash: the same bytes as `to_vec`, without a buffer
    // per credential (10,000 of them at start, issue 15).
    serde_json::to_writer(&mut h, &cred.source).expect("settings serialize");
    // What the environment adds to an Azure identity (AZURE_CLIENT_ID, the
    // method `auto` chose, ...): no secrets, and not the federated token
    // file's content, which rotates while the identity stays the same.
    if let Source::Azure(settings) = &cred.source {
        h.update(b"\0azure\0");
        let plan = azure::plan(settings, env).plan;
        serde_json::to_writer(&mut h, &plan).expect("plan serializes");
    }
    for file in identity_files_in(cred, env) {
        h.update(b"\0file\0");
        h.update(file.as_os_str().as_encoded_bytes());
        h.update(b"\0");
        match crate::files::read_blocking(&file, crate::files::MAX_FILE, crate::files::READ_TIMEOUT)
        {
            Ok(bytes) => h.update(Sha256::digest(&bytes)),
            Err(e) => h.update(e.to_string().as_bytes()),
        }
    }
    // Validation rejects cycles; the depth bound keeps a bug from looping.
    if let Some(auth) = cred.auth()
        && depth < 16
    {
        h.update(b"\0auth\0");
        h.update(fingerprint_of(config, auth, env, done, depth + 1).as_bytes());
    }
    let mut fp = String::with_capacity(32);
    for b in &h.finalize()[..16] {
        fp.push(char::from_digit(u32::from(b >> 4), 16).expect("a nibble"));
        fp.push(char::from_digit(u32::from(b & 15), 16).expect("a nibble"));
    }
    done.insert(name.to_owned(), fp.clone());
    fp
}

/// Files whose content decides the identity a credential acts as.
pub fn identity_files(cred: &Credential) -> Vec<std::path::PathBuf> {
    identity_files_in(cred, &azure::process_env)
}

fn identity_files_in(cred: &Credential, env: azure::Env<'_>) -> Vec<std::path::PathBuf> {
    match &cred.source {
        Source::Google(g) => match (&g.oauth_client_file, &g.key_file) {
            (Some(path), _) | (None, Some(path)) => vec![path.clone()],
            (None, None) => crate::providers::google::adc_file().into_iter().collect(),
        },
        Source::Azure(a) => azure::identity_files(a, env),
        _ => Vec::new(),
    }
}

/// Size, mtime (seconds and nanoseconds) and inode of a file.
pub type FileStamp = (u64, i64, i64, u64);

/// Cheap change detection for identity files: size, mtime and inode.
pub fn file_stamp(path: &Path) -> Option<FileStamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(crate::sys::file_stamp(&m))
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

    #[test]
    fn azure_changes_with_the_identity_from_the_environment_only() {
        let tmp = tempfile::tempdir().unwrap();
        let token_file = tmp.path().join("federated");
        std::fs::write(&token_file, "assertion-1").unwrap();
        let config = parse("[credentials.wi]\nkind = \"azure\"\nmethod = \"workload-identity\"\n");
        let fp = |vars: &[(&str, &str)]| {
            let vars: HashMap<String, String> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let env = |n: &str| vars.get(n).cloned();
            all_in(&config, &env)
        };
        let file = token_file.display().to_string();
        let base = [
            ("AZURE_CLIENT_ID", "client-a"),
            ("AZURE_TENANT_ID", "tenant"),
            ("AZURE_FEDERATED_TOKEN_FILE", file.as_str()),
        ];
        let a = fp(&base);
        std::fs::write(&token_file, "assertion-2").unwrap();
        assert_eq!(
            a,
            fp(&base),
            "a rotated federated token is the same identity"
        );
        let mut other = base;
        other[0].1 = "client-b";
        let b = fp(&other);
        assert_ne!(a["wi"], b["wi"], "another client id is another identity");
        assert_ne!(
            a["azure"], b["azure"],
            "auto chose workload identity, as client-b"
        );
        let vm = fp(&[
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token"),
            ("IDENTITY_HEADER", "h1"),
        ]);
        let vm2 = fp(&[
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token"),
            ("IDENTITY_HEADER", "h2"),
        ]);
        assert_eq!(
            vm["azure"], vm2["azure"],
            "IDENTITY_HEADER is a secret, not an identity"
        );
        assert_ne!(vm["azure"], fp(&[])["azure"], "App Service is not IMDS");
    }

    /// The fingerprint is the documented bytes hashed, so cache keys written
    /// by an earlier build still match: a `command` credential (no files,
    /// no environment, no `auth`) is SHA-256 of the version tag and its
    /// settings as JSON, the first 16 bytes in hex.
    #[test]
    fn is_the_hash_of_the_settings_as_json() {
        let config =
            parse("[credentials.vault]\nkind = \"command\"\ncommand = [\"vault-token\"]\n");
        let mut h = Sha256::new();
        h.update(b"credcache-fingerprint-v1\0");
        h.update(serde_json::to_vec(&config.credentials["vault"].source).unwrap());
        let want: String = h.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(all(&config)["vault"], want);
    }
}
