//! The credential files the emulator issues: Google service-account keys and
//! authorized-user files, each with fresh secrets generated at run time (no
//! private key is ever stored in the repository).

use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use super::state::{AuthorizedUserRecord, ServiceAccountRecord, Shared, random_hex, random_token};

/// The project every emulated identity belongs to.
pub const PROJECT_ID: &str = "emu-project";

/// A service-account key file the emulator wrote and will accept JWTs from.
#[derive(Debug, Clone)]
pub struct ServiceAccount {
    pub path: PathBuf,
    pub client_email: String,
    pub client_id: String,
    /// The JWT `kid`.
    pub private_key_id: String,
    pub project_id: String,
    /// The PKCS#8 PEM, exactly as written in the file.
    pub private_key_pem: String,
}

/// An `authorized_user` file (what `gcloud auth application-default login`
/// writes) whose refresh token the emulator accepts until revoked.
#[derive(Debug, Clone)]
pub struct AuthorizedUser {
    pub path: PathBuf,
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
    pub quota_project_id: Option<String>,
}

/// A `service_account` key file, fields in the order Google writes them.
#[derive(Serialize)]
struct ServiceAccountFile<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    project_id: &'static str,
    private_key_id: &'a str,
    private_key: &'a str,
    client_email: &'a str,
    client_id: &'a str,
    auth_uri: String,
    token_uri: String,
    auth_provider_x509_cert_url: String,
    client_x509_cert_url: String,
    universe_domain: &'static str,
}

/// An `authorized_user` file as gcloud writes it, plus a `token_uri` (which
/// gcloud leaves out, and Google's libraries honour) so that the file works
/// against the emulator as written.
#[derive(Serialize)]
struct AuthorizedUserFile<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    client_id: &'a str,
    client_secret: &'a str,
    refresh_token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    quota_project_id: Option<&'a str>,
    token_uri: String,
    universe_domain: &'static str,
}

/// Generates an RSA 2048 key, writes a `service_account` key file at `path`
/// (mode 0600) whose `token_uri` is the emulator's, and registers its public
/// half. Takes about 100 ms.
pub(crate) fn write_service_account(shared: &Shared, path: &Path) -> io::Result<ServiceAccount> {
    let key = KeyPair::generate(KeySize::Rsa2048)
        .map_err(|_| io::Error::other("RSA key generation failed"))?;
    let pkcs8: Pkcs8V1Der<'static> = key
        .as_der()
        .map_err(|_| io::Error::other("PKCS#8 export failed"))?;
    let public_key_der = key.public_key().as_ref().to_vec();

    let private_key_id = random_hex(20);
    let suffix = &private_key_id[..8];
    let client_email = format!("emu-{suffix}@{PROJECT_ID}.iam.gserviceaccount.com");
    let client_id = numeric_id(&private_key_id);
    let private_key_pem = pem("PRIVATE KEY", pkcs8.as_ref());
    let base = shared.lock().base.clone();

    let file = ServiceAccountFile {
        kind: "service_account",
        project_id: PROJECT_ID,
        private_key_id: &private_key_id,
        private_key: &private_key_pem,
        client_email: &client_email,
        client_id: &client_id,
        auth_uri: format!("{base}/o/oauth2/auth"),
        token_uri: format!("{base}/token"),
        auth_provider_x509_cert_url: format!("{base}/oauth2/v1/certs"),
        client_x509_cert_url: format!("{base}/robot/v1/metadata/x509/{client_email}"),
        universe_domain: "googleapis.com",
    };
    write_private(path, &pretty(&file))?;

    shared.lock().registry.service_accounts.insert(
        private_key_id.clone(),
        ServiceAccountRecord {
            client_email: client_email.clone(),
            public_key_der,
            disabled: false,
        },
    );
    Ok(ServiceAccount {
        path: path.to_owned(),
        client_email,
        client_id,
        private_key_id,
        project_id: PROJECT_ID.to_owned(),
        private_key_pem,
    })
}

/// Writes an `authorized_user` file at `path` (mode 0600) with a fresh OAuth
/// client and refresh token, and registers them. Its `token_uri` is the
/// emulator's.
pub(crate) fn write_authorized_user(
    shared: &Shared,
    path: &Path,
    quota_project_id: Option<&str>,
) -> io::Result<AuthorizedUser> {
    let client_id = format!(
        "{}-emu.apps.googleusercontent.com",
        numeric_id(&random_hex(8))
    );
    let client_secret = format!("GOCSPX-emu{}", random_token(18));
    let refresh_token = format!("1//emu-{}", random_token(36));
    let base = shared.lock().base.clone();

    let file = AuthorizedUserFile {
        kind: "authorized_user",
        client_id: &client_id,
        client_secret: &client_secret,
        refresh_token: &refresh_token,
        quota_project_id,
        token_uri: format!("{base}/token"),
        universe_domain: "googleapis.com",
    };
    write_private(path, &pretty(&file))?;

    let mut inner = shared.lock();
    let record = inner
        .registry
        .authorized_users
        .entry(client_id.clone())
        .or_insert_with(|| AuthorizedUserRecord {
            client_secret: client_secret.clone(),
            refresh_tokens: Default::default(),
        });
    record.refresh_tokens.insert(refresh_token.clone());
    Ok(AuthorizedUser {
        path: path.to_owned(),
        client_id,
        client_secret,
        refresh_token,
        quota_project_id: quota_project_id.map(str::to_owned),
    })
}

/// Writes an `external_account_authorized_user` file (workforce sign-in,
/// `gcloud auth application-default login --login-config`) at `path`
/// whose `token_url` is this emulator's `/v1/oauthtoken`, and registers
/// its client and refresh token (rotated on every use there).
pub(crate) fn write_workforce_user(shared: &Shared, path: &Path) -> io::Result<AuthorizedUser> {
    let client_id = format!("emu-wf-{}", random_hex(8));
    let client_secret = format!("emu-wf-secret-{}", random_token(18));
    let refresh_token = format!("emu-wf-rt-{}", random_token(36));
    let base = shared.lock().base.clone();
    let file = serde_json::json!({
        "type": "external_account_authorized_user",
        "audience": "//iam.googleapis.com/locations/global/workforcePools/emu-pool/providers/emu-idp",
        "client_id": client_id,
        "client_secret": client_secret,
        "refresh_token": refresh_token,
        "token_url": format!("{base}/v1/oauthtoken"),
        "token_info_url": format!("{base}/v1/introspect"),
        "revoke_url": format!("{base}/v1/revoke"),
        "quota_project_id": "emu-wf-quota",
    });
    write_private(
        path,
        &serde_json::to_string_pretty(&file).unwrap_or_default(),
    )?;
    let mut inner = shared.lock();
    let record = inner
        .registry
        .authorized_users
        .entry(client_id.clone())
        .or_insert_with(|| AuthorizedUserRecord {
            client_secret: client_secret.clone(),
            refresh_tokens: Default::default(),
        });
    record.refresh_tokens.insert(refresh_token.clone());
    Ok(AuthorizedUser {
        path: path.to_owned(),
        client_id,
        client_secret,
        refresh_token,
        quota_project_id: Some("emu-wf-quota".to_owned()),
    })
}

/// Writes a Google "Desktop app" OAuth client file at `path` pointing at
/// this emulator, and registers the client (with no refresh token yet).
pub(crate) fn write_desktop_client(shared: &Shared, path: &Path) -> io::Result<AuthorizedUser> {
    let client_id = format!(
        "{}-desktop.apps.googleusercontent.com",
        numeric_id(&random_hex(8))
    );
    let client_secret = format!("GOCSPX-desk{}", random_token(18));
    let base = shared.lock().base.clone();
    let file = serde_json::json!({
        "installed": {
            "client_id": client_id,
            "project_id": PROJECT_ID,
            "auth_uri": format!("{base}/o/oauth2/auth"),
            "token_uri": format!("{base}/token"),
            "auth_provider_x509_cert_url": format!("{base}/oauth2/v1/certs"),
            "client_secret": client_secret,
            "redirect_uris": ["http://localhost"],
        }
    });
    write_private(
        path,
        &serde_json::to_string_pretty(&file).unwrap_or_default(),
    )?;
    shared
        .lock()
        .registry
        .authorized_users
        .entry(client_id.clone())
        .or_insert_with(|| AuthorizedUserRecord {
            client_secret: client_secret.clone(),
            refresh_tokens: Default::default(),
        });
    Ok(AuthorizedUser {
        path: path.to_owned(),
        client_id,
        client_secret,
        refresh_token: String::new(),
        quota_project_id: None,
    })
}

/// PEM armour: base64 in 64-column lines between BEGIN/END labels.
pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    let encoded = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        // Base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A 21-digit decimal id (Google's client_id form) derived from hex.
fn numeric_id(hex: &str) -> String {
    let digits: String = hex
        .bytes()
        .map(|b| char::from(b'0' + b % 10))
        .chain(std::iter::repeat('7'))
        .take(20)
        .collect();
    format!("1{digits}")
}

/// Pretty JSON in the struct's field order (the order gcloud writes).
fn pretty(file: &impl Serialize) -> String {
    // These structs hold only strings: serializing them cannot fail.
    serde_json::to_string_pretty(file).unwrap_or_default() + "\n"
}

/// Writes a secret-bearing file readable by its owner only.
fn write_private(path: &Path, contents: &str) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_file_has_googles_fields() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Shared::new("http://127.0.0.1:9".to_owned());
        let path = dir.path().join("sa.json");
        let sa = write_service_account(&shared, &path).unwrap();
        let file: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(file["type"], "service_account");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("{\n  \"type\": \"service_account\""),
            "{text}"
        );
        assert_eq!(file["token_uri"], "http://127.0.0.1:9/token");
        assert_eq!(file["client_email"], sa.client_email.as_str());
        assert_eq!(file["private_key_id"], sa.private_key_id.as_str());
        let pem = file["private_key"].as_str().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(pem.ends_with("-----END PRIVATE KEY-----\n"));
        assert_eq!(sa.client_id.len(), 21);
        // A standard JWT library accepts the key as written.
        assert!(jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn authorized_user_file_shape() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Shared::new("http://127.0.0.1:9".to_owned());
        let path = dir.path().join("adc.json");
        let user = write_authorized_user(&shared, &path, Some("quota-proj")).unwrap();
        let file: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(file["type"], "authorized_user");
        assert_eq!(file["refresh_token"], user.refresh_token.as_str());
        assert_eq!(file["quota_project_id"], "quota-proj");
        assert_eq!(file["token_uri"], "http://127.0.0.1:9/token");
        let inner = shared.lock();
        assert!(
            inner.registry.authorized_users[&user.client_id]
                .refresh_tokens
                .contains(&user.refresh_token)
        );
    }
}
