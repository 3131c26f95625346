//! `method = "certificate"`: the client-credentials grant with a client
//! assertion, an RS256 JWT signed by the private key of a certificate
//! registered on the app. Its header carries `x5t` (base64url SHA-1 of the
//! certificate's DER), and `x5c` (the chain, leaf first) when
//! `send_certificate_chain` is set, for subject-name/issuer authentication.
//!
//! The file is PEM (an RSA key, PKCS#8 or PKCS#1, and the certificate,
//! in any order) or PKCS#12 (`.pfx`/`.p12`; modern PBES2/AES-256 or legacy
//! pbe-SHA1-3DES, read by `p12-keystore`). It is read afresh on every fetch,
//! and its content is part of the settings fingerprint, so a rotated
//! certificate is a new identity. Everything that can be wrong with it (no
//! key, a key that is not the certificate's, a wrong password) is reported
//! before anything is sent. An expired certificate is only warned about:
//! Entra decides, and says so in its error.

use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use credcache_shared::config::SecretSource;
use serde_json::json;
use zeroize::Zeroizing;

use crate::http;
use crate::providers::{FetchContext, FetchError, Fetched};

const JWT_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How long an assertion is valid, as the Azure identity SDKs make it.
const ASSERTION_LIFETIME_SECS: i64 = 600;

/// What the fetch needs besides the context.
pub struct Request<'a> {
    pub tenant: &'a str,
    pub client_id: &'a str,
    pub file: &'a Path,
    pub password: Option<&'a SecretSource>,
    pub send_chain: bool,
    pub authority: &'a str,
    pub scope: &'a str,
}

pub async fn fetch(r: Request<'_>, cx: &FetchContext<'_>) -> Result<Fetched, FetchError> {
    let shown = r.file.display().to_string();
    let bytes = Zeroizing::new(crate::files::read(r.file).await.map_err(|e| {
        FetchError::config(format!(
            "cannot read certificate_file {}: {e}",
            http::sanitize(&shown, 200)
        ))
    })?);
    let password = match r.password {
        Some(source) => Some(read_password(source).await?),
        None => None,
    };
    // PKCS#12 decryption is PBKDF2 work (tens of milliseconds): off the
    // runtime's threads.
    let loaded = tokio::task::spawn_blocking(move || {
        Certificate::load(&bytes, password.as_ref().map(|p| p.as_str()))
    })
    .await
    .map_err(|e| FetchError::transient(format!("reading the certificate failed: {e}")))?;
    let cert =
        loaded.map_err(|why| FetchError::config(format!("certificate_file {shown}: {why}")))?;
    let expired = cert.not_after.filter(|at| *at <= cx.now);
    if let Some(at) = expired {
        tracing::warn!(
            credential = cx.name,
            "certificate_file {shown}: the certificate expired at {}; trying anyway (Entra decides)",
            credcache_shared::time::format_rfc3339(at)
        );
    }
    let audience = format!("{}/{}/oauth2/v2.0/token", r.authority, r.tenant);
    let assertion = Zeroizing::new(cert.assertion(r.client_id, &audience, cx.now, r.send_chain)?);
    let form = [
        ("client_id", r.client_id),
        ("client_assertion_type", JWT_ASSERTION),
        ("client_assertion", assertion.as_str()),
        ("grant_type", "client_credentials"),
        ("scope", r.scope),
    ];
    let fetched = super::entra_token(cx, r.authority, r.tenant, &form).await;
    match expired {
        Some(at) => fetched.map_err(|e| {
            e.context(format_args!(
                "the certificate expired at {}",
                credcache_shared::time::format_rfc3339(at)
            ))
        }),
        None => fetched,
    }
}

/// The PKCS#12 password, exactly as given: from a variable, or a file
/// without its final line break.
async fn read_password(source: &SecretSource) -> Result<Zeroizing<String>, FetchError> {
    match source {
        SecretSource::Env(var) => std::env::var(var).map(Zeroizing::new).map_err(|_| {
            FetchError::config(format!(
                "the certificate password variable {var} is not set in the daemon's environment"
            ))
        }),
        SecretSource::File(path) => {
            let bytes = Zeroizing::new(crate::files::read(path).await.map_err(|e| {
                FetchError::config(format!(
                    "cannot read certificate_password_file {}: {e}",
                    path.display()
                ))
            })?);
            let text = std::str::from_utf8(&bytes).map_err(|_| {
                FetchError::config(format!(
                    "certificate_password_file {} is not UTF-8",
                    path.display()
                ))
            })?;
            let text = text.strip_suffix('\n').unwrap_or(text);
            Ok(Zeroizing::new(
                text.strip_suffix('\r').unwrap_or(text).to_owned(),
            ))
        }
    }
}

/// A private key with its certificate (and the rest of the chain).
pub struct Certificate {
    key: RsaKeyPair,
    /// The certificate's DER, then the chain's, leaf first.
    chain: Vec<Vec<u8>>,
    not_after: Option<DateTime<Utc>>,
}

impl Certificate {
    /// Reads PEM or PKCS#12 `bytes`. The error says what is wrong, in a
    /// few words that follow "certificate_file PATH: ".
    pub fn load(bytes: &[u8], password: Option<&str>) -> Result<Certificate, String> {
        let (key, certs) = if looks_like_pem(bytes) {
            from_pem(bytes)?
        } else {
            from_pkcs12(bytes, password)?
        };
        let Some(key) = key else {
            return Err(
                "it holds no private key (PEM: add the key; PKCS#12: export it with the key)"
                    .into(),
            );
        };
        if certs.is_empty() {
            return Err("it holds no certificate".into());
        }
        let key = rsa_key(&key)?;
        let public = key.public_key().as_ref().to_vec();
        // The leaf is the certificate of this key, wherever it is.
        let mut leaf = None;
        for (i, der) in certs.iter().enumerate() {
            if rsa_public_key(der)? == Some(public.clone()) {
                leaf = Some(i);
                break;
            }
        }
        let Some(leaf) = leaf else {
            return Err("the private key does not match the certificate".into());
        };
        let mut chain = certs;
        let leaf_der = chain.remove(leaf);
        chain.insert(0, leaf_der);
        let not_after = not_after(&chain[0]);
        Ok(Certificate {
            key,
            chain,
            not_after,
        })
    }

    /// The certificate's `x5t`: base64url SHA-1 of its DER.
    pub fn thumbprint(&self) -> String {
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &self.chain[0]);
        URL_SAFE_NO_PAD.encode(digest.as_ref())
    }

    /// The client assertion for `client_id` at `audience` (the token URL).
    pub fn assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: DateTime<Utc>,
        send_chain: bool,
    ) -> Result<String, FetchError> {
        let mut header = json!({"alg": "RS256", "typ": "JWT", "x5t": self.thumbprint()});
        if send_chain {
            header["x5c"] = self.chain.iter().map(|der| STANDARD.encode(der)).collect();
        }
        let now = now.timestamp();
        let claims = json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": jti()?,
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| FetchError::config("cannot sign the client assertion with the key"))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

fn looks_like_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

/// A private key as found: PKCS#8 or PKCS#1 DER.
enum KeyDer {
    Pkcs8(Zeroizing<Vec<u8>>),
    Pkcs1(Zeroizing<Vec<u8>>),
}

type Parts = (Option<KeyDer>, Vec<Vec<u8>>);

fn from_pem(bytes: &[u8]) -> Result<Parts, String> {
    let mut key = None;
    let mut certs = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(bytes) {
        let block = block.map_err(|e| format!("it is not valid PEM ({e})"))?;
        let contents = Zeroizing::new(block.contents);
        let found = match block.label.as_str() {
            "CERTIFICATE" => {
                certs.push(contents.to_vec());
                continue;
            }
            "PRIVATE KEY" => KeyDer::Pkcs8(contents),
            "RSA PRIVATE KEY" => KeyDer::Pkcs1(contents),
            "ENCRYPTED PRIVATE KEY" => {
                return Err(
                    "its private key is encrypted, which PEM files here may not be: \
                            decrypt it (`openssl pkey`) or use a password-protected PKCS#12 file"
                        .into(),
                );
            }
            "EC PRIVATE KEY" => {
                return Err(
                    "its private key is not an RSA key (Entra certificate credentials are RSA)"
                        .into(),
                );
            }
            _ => continue,
        };
        if key.is_some() {
            return Err("it holds more than one private key".into());
        }
        key = Some(found);
    }
    Ok((key, certs))
}

fn from_pkcs12(bytes: &[u8], password: Option<&str>) -> Result<Parts, String> {
    use p12_keystore::error::Error as P12Error;
    use p12_keystore::{KeyStore, KeyStoreEntry, Pkcs12ImportPolicy};

    let store = KeyStore::from_pkcs12(bytes, password.unwrap_or(""), Pkcs12ImportPolicy::Relaxed)
        .map_err(|e| match e {
        P12Error::MacError(_) | P12Error::UnpadError if password.is_some() => {
            "the certificate password is wrong".to_owned()
        }
        P12Error::MacError(_) | P12Error::UnpadError => {
            "it is a password-protected PKCS#12 file: set certificate_password_env or \
                 certificate_password_file"
                .to_owned()
        }
        P12Error::DerError(_) | P12Error::InvalidVersion | P12Error::InvalidData => {
            "it is neither PEM nor a PKCS#12 (.pfx/.p12) file".to_owned()
        }
        other => format!("cannot read it as PKCS#12 ({other})"),
    })?;
    let mut key = None;
    let mut certs = Vec::new();
    if let Some((_, chain)) = store.private_key_chain() {
        key = Some(KeyDer::Pkcs8(Zeroizing::new(chain.key().as_der().to_vec())));
        certs.extend(chain.certs().iter().map(|c| c.as_der().to_vec()));
    }
    for (_, entry) in store.entries() {
        if let KeyStoreEntry::Certificate(c) = entry
            && !certs.iter().any(|known| known == c.as_der())
        {
            certs.push(c.as_der().to_vec());
        }
    }
    Ok((key, certs))
}

fn rsa_key(key: &KeyDer) -> Result<RsaKeyPair, String> {
    let parsed = match key {
        KeyDer::Pkcs8(der) => RsaKeyPair::from_pkcs8(der),
        KeyDer::Pkcs1(der) => RsaKeyPair::from_der(der),
    };
    parsed.map_err(|_| {
        "its private key is not a usable RSA key (Entra certificate credentials are RSA, 2048 bits or more)"
            .to_owned()
    })
}

/// The certificate's RSA public key (RFC 8017 `RSAPublicKey` DER); `None`
/// for another algorithm.
fn rsa_public_key(der: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("it holds a certificate that cannot be read ({e})"))?;
    let spki = cert.public_key();
    let rsa = x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION;
    Ok((spki.algorithm.algorithm == rsa).then(|| spki.subject_public_key.data.to_vec()))
}

fn not_after(der: &[u8]) -> Option<DateTime<Utc>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
}

/// A random UUID (v4) for the assertion's `jti`.
fn jti() -> Result<String, FetchError> {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b)
        .map_err(|_| FetchError::transient("no randomness for the assertion's jti"))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

// The certificates are made by the openssl program at test time, as a user
// makes them; a Windows test binary under Wine cannot run it.
#[cfg(all(test, unix))]
pub(crate) mod tests {
    use std::path::PathBuf;
    use std::process::Command;

    use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::Value;

    use super::*;
    use crate::fetch_error::ErrorClass;
    use crate::loopback::{Peer, Reply};
    use crate::providers::testing::Harness;

    /// Runs `openssl` in `dir`, as a user would make these files.
    fn openssl(dir: &Path, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Key and certificate files made by openssl in a temp dir: `key.pem`
    /// (PKCS#8), `rsa.pem` (PKCS#1), `cert.pem` (valid `days` from now),
    /// `other.pem` (another key), `modern.pfx` and `legacy.pfx` (password
    /// "pw"), `nokey.pfx`.
    pub(crate) struct Files {
        pub dir: tempfile::TempDir,
    }

    impl Files {
        pub(crate) fn new(days: u32) -> Files {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            let days = days.to_string();
            openssl(
                d,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    "key.pem",
                    "-out",
                    "cert.pem",
                    "-subj",
                    "/CN=credcache-test",
                    "-days",
                    &days,
                ],
            );
            openssl(
                d,
                &["rsa", "-in", "key.pem", "-traditional", "-out", "rsa.pem"],
            );
            openssl(
                d,
                &[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                    "-out",
                    "other.pem",
                ],
            );
            openssl(
                d,
                &[
                    "pkcs12",
                    "-export",
                    "-inkey",
                    "key.pem",
                    "-in",
                    "cert.pem",
                    "-out",
                    "modern.pfx",
                    "-passout",
                    "pass:pw",
                ],
            );
            openssl(
                d,
                &[
                    "pkcs12",
                    "-export",
                    "-legacy",
                    "-inkey",
                    "key.pem",
                    "-in",
                    "cert.pem",
                    "-out",
                    "legacy.pfx",
                    "-passout",
                    "pass:pw",
                ],
            );
            openssl(
                d,
                &[
                    "pkcs12",
                    "-export",
                    "-nokeys",
                    "-in",
                    "cert.pem",
                    "-out",
                    "nokey.pfx",
                    "-passout",
                    "pass:pw",
                ],
            );
            openssl(
                d,
                &[
                    "pkcs12",
                    "-export",
                    "-inkey",
                    "key.pem",
                    "-in",
                    "cert.pem",
                    "-out",
                    "empty.pfx",
                    "-passout",
                    "pass:",
                ],
            );
            // What `openssl pkcs12 -nodes` prints: bag attributes around the blocks.
            openssl(
                d,
                &[
                    "pkcs12",
                    "-in",
                    "modern.pfx",
                    "-nodes",
                    "-passin",
                    "pass:pw",
                    "-out",
                    "bags.pem",
                ],
            );
            Files { dir }
        }

        pub(crate) fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        pub(crate) fn bytes(&self, name: &str) -> Vec<u8> {
            std::fs::read(self.path(name)).unwrap()
        }

        /// The concatenation of these files.
        pub(crate) fn joined(&self, names: &[&str]) -> Vec<u8> {
            names.iter().flat_map(|n| self.bytes(n)).collect()
        }

        /// The certificate's DER.
        fn cert_der(&self) -> Vec<u8> {
            let pem = x509_parser::pem::Pem::iter_from_buffer(&self.bytes("cert.pem"))
                .next()
                .unwrap()
                .unwrap();
            pem.contents
        }
    }

    fn decode(part: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    /// Checks `jwt` is signed by the certificate's key and returns its
    /// header and claims.
    fn verified(jwt: &str, cert_der: &[u8]) -> (Value, Value) {
        let (signed, signature) = jwt.rsplit_once('.').unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(cert_der).unwrap();
        let public = cert.public_key().subject_public_key.data.to_vec();
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public)
            .verify(
                signed.as_bytes(),
                &URL_SAFE_NO_PAD.decode(signature).unwrap(),
            )
            .expect("the assertion verifies with the certificate's key");
        let (header, claims) = signed.split_once('.').unwrap();
        (decode(header), decode(claims))
    }

    #[test]
    fn pem_with_a_pkcs8_or_pkcs1_key_in_either_order_signs_assertions() {
        let f = Files::new(3650);
        let der = f.cert_der();
        let now = crate::providers::testing::now();
        // A PKCS#12 file exported with an empty password needs none.
        Certificate::load(&f.bytes("empty.pfx"), None).unwrap();
        let bags = Certificate::load(&f.bytes("bags.pem"), None).unwrap();
        let jwt = bags.assertion("c", "aud", now, false).unwrap();
        verified(&jwt, &der);
        for names in [
            ["key.pem", "cert.pem"],
            ["cert.pem", "key.pem"],
            ["rsa.pem", "cert.pem"],
        ] {
            let cert = Certificate::load(&f.joined(&names), None).unwrap();
            let jwt = cert
                .assertion(
                    "client-1",
                    "https://login.example/t/oauth2/v2.0/token",
                    now,
                    false,
                )
                .unwrap();
            let (header, claims) = verified(&jwt, &der);
            assert_eq!(header["alg"], "RS256");
            assert_eq!(header["typ"], "JWT");
            assert!(header.get("x5c").is_none(), "{header}");
            // x5t is SHA-1 of the DER, as `openssl x509 -fingerprint -sha1` prints it.
            let x5t = URL_SAFE_NO_PAD
                .decode(header["x5t"].as_str().unwrap())
                .unwrap();
            let sha1 =
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &der);
            assert_eq!(x5t, sha1.as_ref());
            assert_eq!(claims["aud"], "https://login.example/t/oauth2/v2.0/token");
            assert_eq!(
                (&claims["iss"], &claims["sub"]),
                (&Value::from("client-1"), &Value::from("client-1"))
            );
            assert_eq!(claims["iat"], now.timestamp());
            assert_eq!(claims["nbf"], now.timestamp());
            assert_eq!(claims["exp"], now.timestamp() + 600);
            assert_eq!(claims["jti"].as_str().unwrap().len(), 36);
        }
    }

    #[test]
    fn pkcs12_in_both_encryptions_with_its_password() {
        let f = Files::new(3650);
        let der = f.cert_der();
        let now = crate::providers::testing::now();
        for name in ["modern.pfx", "legacy.pfx"] {
            let cert = Certificate::load(&f.bytes(name), Some("pw"))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let jwt = cert.assertion("c", "aud", now, true).unwrap();
            let (header, _) = verified(&jwt, &der);
            assert_eq!(
                header["x5c"],
                serde_json::json!([STANDARD.encode(&der)]),
                "{name}"
            );
            let wrong = Certificate::load(&f.bytes(name), Some("nope"))
                .err()
                .unwrap();
            assert_eq!(wrong, "the certificate password is wrong", "{name}");
            let none = Certificate::load(&f.bytes(name), None).err().unwrap();
            assert!(
                none.starts_with(
                    "it is a password-protected PKCS#12 file: set certificate_password_env"
                ),
                "{name}: {none}"
            );
        }
    }

    #[test]
    fn every_bad_file_is_one_clear_line() {
        let f = Files::new(3650);
        let cases: Vec<(Vec<u8>, Option<&str>, &str)> = vec![
            (f.bytes("cert.pem"), None, "it holds no private key"),
            (f.bytes("nokey.pfx"), Some("pw"), "it holds no private key"),
            (f.bytes("key.pem"), None, "it holds no certificate"),
            (f.joined(&["other.pem", "cert.pem"]), None, "the private key does not match the certificate"),
            (f.joined(&["key.pem", "other.pem", "cert.pem"]), None, "more than one private key"),
            (b"not a certificate at all".to_vec(), None, "neither PEM nor a PKCS#12"),
            (b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n".to_vec(), None, "encrypted"),
        ];
        for (bytes, password, want) in cases {
            let e = Certificate::load(&bytes, password).err().unwrap();
            assert!(e.contains(want), "wanted {want:?}, got {e:?}");
            assert!(!e.contains('\n'), "{e:?}");
        }
    }

    async fn fetch_with(file: &Path, peer: &Peer, send_chain: bool) -> Result<Fetched, FetchError> {
        let h = Harness::new();
        let authority = peer.url();
        let r = Request {
            tenant: "tenant-1",
            client_id: "client-1",
            file,
            password: None,
            send_chain,
            authority: &authority,
            scope: "https://management.azure.com/.default",
        };
        fetch(r, &h.cx()).await
    }

    #[tokio::test]
    async fn fetch_posts_the_assertion_for_the_client() {
        let f = Files::new(3650);
        let file = f.path("both.pem");
        std::fs::write(&file, f.joined(&["key.pem", "cert.pem"])).unwrap();
        let peer = Peer::start(vec![Reply::json(
            200,
            r#"{"access_token":"eyJ.cert","expires_in":3599,"token_type":"Bearer"}"#,
        )])
        .await;
        let got = fetch_with(&file, &peer, false).await.unwrap();
        assert_eq!(got.token.expose(), "eyJ.cert");
        let r = &peer.requests()[0];
        assert_eq!(r.path(), "/tenant-1/oauth2/v2.0/token");
        assert_eq!(
            r.form("client_assertion_type").as_deref(),
            Some(JWT_ASSERTION)
        );
        assert_eq!(r.form("grant_type").as_deref(), Some("client_credentials"));
        assert_eq!(r.form("client_id").as_deref(), Some("client-1"));
        let (_, claims) = verified(&r.form("client_assertion").unwrap(), &f.cert_der());
        assert_eq!(
            claims["aud"],
            format!("{}/tenant-1/oauth2/v2.0/token", peer.url())
        );
    }

    #[tokio::test]
    async fn a_bad_file_sends_nothing_and_an_expired_certificate_is_tried() {
        let f = Files::new(1);
        let peer = Peer::start(vec![Reply::json(401, r#"{"error":"invalid_client","error_description":"AADSTS700027: Client assertion contains an invalid signature."}"#)]).await;
        let mismatched = f.path("mismatched.pem");
        std::fs::write(&mismatched, f.joined(&["other.pem", "cert.pem"])).unwrap();
        let e = fetch_with(&mismatched, &peer, false).await.unwrap_err();
        assert_eq!(e.class, ErrorClass::Config);
        assert_eq!(
            e.message,
            format!(
                "certificate_file {}: the private key does not match the certificate",
                mismatched.display()
            )
        );
        assert!(peer.requests().is_empty());

        // The harness's clock is in 2030: this certificate expired then.
        let expired = f.path("expired.pem");
        std::fs::write(&expired, f.joined(&["key.pem", "cert.pem"])).unwrap();
        let e = fetch_with(&expired, &peer, false).await.unwrap_err();
        assert_eq!(peer.requests().len(), 1, "tried all the same");
        assert!(
            e.message.starts_with("the certificate expired at 20"),
            "{}",
            e.message
        );
        assert!(e.message.contains("AADSTS700027"), "{}", e.message);
    }
}
