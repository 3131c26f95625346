//! `kind = "azure"` beyond secrets: certificates (PEM and PKCS#12 files
//! made by `openssl` as a user would, verified by the emulator with the
//! registered certificate's key), managed identity on Cloud Shell, App
//! Service's 2017 API and Azure Arc (with its challenge file, and a hostile
//! challenge that names a file outside the token directory), user-assigned
//! identities by object id and resource id, and `azd` (a stand-in script).
//! Every endpoint is the emulator's, on 127.0.0.1.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use credcache_tests::emulator::{Emulator, Endpoint, Msi2017Form};
use credcache_tests::eventually::eventually;

use crate::azure::{CLIENT, TENANT};
use crate::harness::{Out, Sandbox};

const MANAGEMENT_RESOURCE: &str = "https://management.azure.com";

/// Runs `openssl` in `dir`.
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

/// A service principal's files, made by `openssl` in `dir` under `name`:
/// `NAME.key` (PKCS#8), `NAME.rsa` (PKCS#1), `NAME.crt`, `NAME.pem` (key
/// and certificate), `NAME-modern.pfx` and `NAME-legacy.pfx` (password
/// `pfx-pass-123`).
struct Cert {
    dir: PathBuf,
    name: String,
}

const PFX_PASSWORD: &str = "pfx-pass-123";

impl Cert {
    fn new(dir: &Path, name: &str) -> Cert {
        let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &crt,
                "-subj",
                &format!("/CN={name}"),
                "-days",
                "2",
            ],
        );
        openssl(
            dir,
            &[
                "rsa",
                "-in",
                &key,
                "-traditional",
                "-out",
                &format!("{name}.rsa"),
            ],
        );
        let pass = format!("pass:{PFX_PASSWORD}");
        for (file, legacy) in [
            (format!("{name}-modern.pfx"), false),
            (format!("{name}-legacy.pfx"), true),
        ] {
            let mut args = vec![
                "pkcs12", "-export", "-inkey", &key, "-in", &crt, "-out", &file, "-passout", &pass,
            ];
            if legacy {
                args.push("-legacy");
            }
            openssl(dir, &args);
        }
        let cert = Cert {
            dir: dir.to_owned(),
            name: name.to_owned(),
        };
        cert.join(&["key", "crt"], "pem");
        cert
    }

    fn path(&self, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", self.name))
    }

    fn pfx(&self, kind: &str) -> PathBuf {
        self.dir.join(format!("{}-{kind}.pfx", self.name))
    }

    /// Writes the concatenation of `parts` (extensions) as `NAME.ext`.
    fn join(&self, parts: &[&str], ext: &str) -> PathBuf {
        let bytes: Vec<u8> = parts
            .iter()
            .flat_map(|p| std::fs::read(self.path(p)).unwrap())
            .collect();
        let out = self.path(ext);
        std::fs::write(&out, bytes).unwrap();
        out
    }

    fn certificate(&self) -> Vec<u8> {
        std::fs::read(self.path("crt")).unwrap()
    }
}

/// A sandbox with credential `sp` (method certificate) for `file`, and
/// `extra` config lines.
fn certificate_sandbox(emu: &Emulator, file: &Path, extra: &str) -> Sandbox {
    let sb = Sandbox::new();
    sb.write_config(&format!(
        "[credentials.sp]\nkind = \"azure\"\nmethod = \"certificate\"\ntenant_id = \"{TENANT}\"\n\
         client_id = \"{CLIENT}\"\ncertificate_file = \"{}\"\nauthority_host = \"{}\"\n{extra}",
        file.display(),
        emu.url()
    ));
    sb
}

#[track_caller]
fn assert_one_line(out: &Out, code: i32, wanted: &[&str]) {
    assert_eq!(out.code, code, "{out:#?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:#?}");
    for w in wanted {
        assert!(out.stderr.contains(w), "wanted {w:?} in {out:#?}");
    }
}

#[test]
fn certificate_pem_with_a_pkcs8_or_pkcs1_key() {
    let emu = Emulator::start();
    let tmp = tempfile::tempdir().unwrap();
    let cert = Cert::new(tmp.path(), "sp");
    emu.register_certificate(TENANT, CLIENT, &cert.certificate());
    let pkcs1 = cert.join(&["crt", "rsa"], "pkcs1.pem");
    for file in [cert.path("pem"), pkcs1] {
        let sb = certificate_sandbox(&emu, &file, "");
        let token = sb.get("sp");
        assert_eq!(emu.last_token(Endpoint::EntraToken).unwrap().token, token);
        let call = emu.calls_to(Endpoint::EntraToken).pop().unwrap();
        assert_eq!(call.status, 200, "the emulator verified the assertion");
        assert_eq!(call.client_id.as_deref(), Some(CLIENT));
    }
}

#[test]
fn certificate_pfx_in_both_encryptions_with_its_password_from_env_or_file() {
    let emu = Emulator::start();
    let tmp = tempfile::tempdir().unwrap();
    let cert = Cert::new(tmp.path(), "sp");
    emu.register_certificate(TENANT, CLIENT, &cert.certificate());
    let password_file = tmp.path().join("pfx-password");
    std::fs::write(&password_file, format!("{PFX_PASSWORD}\n")).unwrap();
    for kind in ["modern", "legacy"] {
        let mut sb = certificate_sandbox(
            &emu,
            &cert.pfx(kind),
            "certificate_password_env = \"SP_PASS\"\n",
        );
        sb.env("SP_PASS", PFX_PASSWORD);
        let token = sb.get("sp");
        assert_eq!(
            emu.last_token(Endpoint::EntraToken).unwrap().token,
            token,
            "{kind}"
        );
        let extra = format!(
            "certificate_password_file = \"{}\"\n",
            password_file.display()
        );
        let sb = certificate_sandbox(&emu, &cert.pfx(kind), &extra);
        let token = sb.get("sp");
        assert_eq!(
            emu.last_token(Endpoint::EntraToken).unwrap().token,
            token,
            "{kind}"
        );
        assert!(!sb.log().contains(PFX_PASSWORD));
    }
}

#[test]
fn certificate_wrong_password_or_foreign_key_is_one_line_and_nothing_is_sent() {
    let emu = Emulator::start();
    let tmp = tempfile::tempdir().unwrap();
    let cert = Cert::new(tmp.path(), "sp");
    let other = Cert::new(tmp.path(), "other");
    emu.register_certificate(TENANT, CLIENT, &cert.certificate());

    let mut sb = certificate_sandbox(
        &emu,
        &cert.pfx("legacy"),
        "certificate_password_env = \"SP_PASS\"\n",
    );
    sb.env("SP_PASS", "not-the-password");
    let out = sb.run(["get", "sp"]);
    assert_one_line(
        &out,
        2,
        &["certificate_file", "the certificate password is wrong"],
    );
    assert!(!out.stderr.contains("not-the-password"));

    let sb = certificate_sandbox(&emu, &cert.pfx("modern"), "");
    let out = sb.run(["get", "sp"]);
    assert_one_line(
        &out,
        2,
        &["password-protected PKCS#12 file: set certificate_password_env"],
    );

    let mismatched = tmp.path().join("mismatched.pem");
    let bytes = [
        std::fs::read(other.path("key")).unwrap(),
        cert.certificate(),
    ]
    .concat();
    std::fs::write(&mismatched, bytes).unwrap();
    let out = certificate_sandbox(&emu, &mismatched, "").run(["get", "sp"]);
    assert_one_line(&out, 2, &["the private key does not match the certificate"]);

    let out = certificate_sandbox(&emu, &cert.path("crt"), "").run(["get", "sp"]);
    assert_one_line(&out, 2, &["it holds no private key"]);

    assert_eq!(emu.calls(Endpoint::EntraToken), 0, "nothing was sent");
}

#[test]
fn certificate_not_registered_shows_entras_error() {
    let emu = Emulator::start();
    let tmp = tempfile::tempdir().unwrap();
    let cert = Cert::new(tmp.path(), "sp");
    let other = Cert::new(tmp.path(), "other");
    emu.register_certificate(TENANT, CLIENT, &other.certificate());
    let out = certificate_sandbox(&emu, &cert.path("pem"), "").run(["get", "sp"]);
    assert_one_line(
        &out,
        5,
        &["invalid_client: AADSTS700027: The certificate with identifier"],
    );
}

#[test]
fn certificate_chain_is_sent_for_subject_name_and_issuer_authentication() {
    let emu = Emulator::start();
    let tmp = tempfile::tempdir().unwrap();
    let cert = Cert::new(tmp.path(), "sni-app");
    emu.register_certificate_subject(TENANT, CLIENT, "sni-app");
    let out = certificate_sandbox(&emu, &cert.path("pem"), "").run(["get", "sp"]);
    assert_one_line(&out, 5, &["AADSTS700027"]);
    let sb = certificate_sandbox(&emu, &cert.path("pem"), "send_certificate_chain = true\n");
    let token = sb.get("sp");
    assert_eq!(emu.last_token(Endpoint::EntraToken).unwrap().token, token);
}

#[test]
fn a_rotated_certificate_is_a_new_identity() {
    let emu = Emulator::start();
    let tmp = tempfile::tempdir().unwrap();
    let first = Cert::new(tmp.path(), "first");
    let second = Cert::new(tmp.path(), "second");
    emu.register_certificate(TENANT, CLIENT, &first.certificate());
    emu.register_certificate(TENANT, CLIENT, &second.certificate());
    let file = tmp.path().join("sp.pem");
    std::fs::copy(first.path("pem"), &file).unwrap();
    let sb = certificate_sandbox(&emu, &file, "");
    let old = sb.get("sp");
    assert_eq!(sb.get("sp"), old, "cached");
    std::fs::copy(second.path("pem"), &file).unwrap();
    let new = eventually(Duration::from_secs(10), || {
        let token = sb.get("sp");
        if token != old { Ok(token) } else { Err(token) }
    });
    assert_eq!(emu.last_token(Endpoint::EntraToken).unwrap().token, new);
    assert_eq!(emu.calls(Endpoint::EntraToken), 2);
}

#[test]
fn auto_takes_the_certificate_from_the_environment() {
    let emu = Emulator::start();
    let tmp = tempfile::tempdir().unwrap();
    let cert = Cert::new(tmp.path(), "env-sp");
    emu.register_certificate_subject(TENANT, CLIENT, "env-sp");
    let mut sb = Sandbox::new();
    sb.env("AZURE_TENANT_ID", TENANT)
        .env("AZURE_CLIENT_ID", CLIENT)
        .env("AZURE_AUTHORITY_HOST", emu.url())
        .env(
            "AZURE_CLIENT_CERTIFICATE_PATH",
            cert.pfx("legacy").display().to_string(),
        )
        .env("AZURE_CLIENT_CERTIFICATE_PASSWORD", PFX_PASSWORD)
        .env("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN", "true");
    sb.write_config("[credentials.auto]\nkind = \"azure\"\n");
    let token = sb.get("auto");
    assert_eq!(emu.last_token(Endpoint::EntraToken).unwrap().token, token);
    assert!(!sb.log().contains(PFX_PASSWORD));
}

// ---- managed identity hosts ----

const MI_CONFIG: &str = "[credentials.mi]\nkind = \"azure\"\nmethod = \"managed-identity\"\n";

#[test]
fn cloud_shell_posts_the_resource() {
    let emu = Emulator::start();
    let mut sb = Sandbox::new();
    sb.env("MSI_ENDPOINT", format!("{}/oauth2/token", emu.url()));
    sb.write_config(MI_CONFIG);
    let token = sb.get("mi");
    assert_eq!(
        emu.last_token(Endpoint::CloudShellMsi).unwrap().token,
        token
    );
    let call = &emu.calls_to(Endpoint::CloudShellMsi)[0];
    assert_eq!((call.method.as_str(), call.status), ("POST", 200));
    assert_eq!(call.scope.as_deref(), Some(MANAGEMENT_RESOURCE));
    assert_eq!(emu.calls(Endpoint::Imds), 0);
}

#[test]
fn app_service_2017_reads_each_expires_on_form() {
    let emu = Emulator::start();
    emu.set_msi_secret("the-msi-secret");
    let mut sb = Sandbox::new();
    sb.env("MSI_ENDPOINT", format!("{}/MSI/token/", emu.url()))
        .env("MSI_SECRET", "the-msi-secret");
    sb.write_config(&format!("{MI_CONFIG}client_id = \"{CLIENT}\"\n"));
    for form in [
        Msi2017Form::TwelveHour,
        Msi2017Form::TwentyFourHour,
        Msi2017Form::Epoch,
    ] {
        emu.set_msi_2017_form(form);
        let out = sb.run(["get", "mi", "--refresh", "--format", "json"]);
        let json: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
        let issued = emu.last_token(Endpoint::AppService2017Msi).unwrap();
        assert_eq!(json["token"], issued.token.as_str(), "{form:?}");
        let expires_at = credcache_shared::time::parse_rfc3339(
            "expires_at",
            json["expires_at"].as_str().unwrap(),
        )
        .unwrap();
        assert_eq!(
            expires_at.timestamp(),
            issued.expires_at.timestamp(),
            "{form:?}"
        );
    }
    let call = &emu.calls_to(Endpoint::AppService2017Msi)[0];
    assert_eq!(call.client_id.as_deref(), Some(CLIENT), "as `clientid`");
    assert!(!sb.log().contains("the-msi-secret"));

    let mut wrong = Sandbox::new();
    wrong
        .env("MSI_ENDPOINT", format!("{}/MSI/token/", emu.url()))
        .env("MSI_SECRET", "stale");
    wrong.write_config(MI_CONFIG);
    let out = wrong.run(["get", "mi"]);
    assert_one_line(
        &out,
        5,
        &["App Service (2017) identity endpoint answered 401"],
    );
    assert!(!out.stderr.contains("stale"));
}

/// A sandbox on an Arc machine: `IDENTITY_ENDPOINT` and `IMDS_ENDPOINT`
/// the emulator's, the token directory its scratch one.
fn arc_sandbox(emu: &Emulator) -> Sandbox {
    let mut sb = Sandbox::new();
    sb.env(
        "IDENTITY_ENDPOINT",
        format!("{}/arc/metadata/identity/oauth2/token", emu.url()),
    )
    .env("IMDS_ENDPOINT", emu.url());
    sb.write_config(&format!(
        "{MI_CONFIG}arc_token_dir = \"{}\"\n",
        emu.arc_token_dir().display()
    ));
    sb
}

#[test]
fn arc_answers_the_challenge_from_its_token_directory() {
    let emu = Emulator::start();
    let sb = arc_sandbox(&emu);
    let token = sb.get("mi");
    assert_eq!(emu.last_token(Endpoint::ArcMsi).unwrap().token, token);
    let statuses: Vec<u16> = emu
        .calls_to(Endpoint::ArcMsi)
        .iter()
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, [401, 200]);
}

#[test]
fn arc_challenge_outside_the_token_directory_is_refused_and_not_read() {
    let emu = Emulator::start();
    let sb = arc_sandbox(&emu);
    // What a hostile process on the endpoint's port would name.
    let secret = sb.dir.path().join("id_rsa.key");
    std::fs::write(&secret, "-----BEGIN OPENSSH PRIVATE KEY----- do-not-send").unwrap();
    for path in [
        secret.display().to_string(),
        format!("{}/../{}", emu.arc_token_dir().display(), secret.display()),
        "/etc/passwd".to_owned(),
    ] {
        emu.set_arc_challenge_path(Some(&path));
        let out = sb.run(["get", "mi", "--refresh"]);
        assert_one_line(&out, 5, &["refused challenge file"]);
    }
    let calls = emu.calls_to(Endpoint::ArcMsi);
    assert_eq!(
        calls.len(),
        3,
        "one challenge each, never answered: {calls:#?}"
    );
    assert!(calls.iter().all(|c| c.status == 401));
    assert!(!sb.log().contains("do-not-send"));
}

#[test]
fn user_assigned_identity_by_object_id_or_resource_id() {
    let emu = Emulator::start();
    let res = "/subscriptions/651f8027-33e8-4ec4-97b4-f6e9f3dc8744/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/ua";
    let sb = Sandbox::new();
    sb.write_config(&format!(
        "{MI_CONFIG}identity_endpoint = \"{url}\"\nobject_id = \"{CLIENT}\"\n\
         [credentials.by-res]\nkind = \"azure\"\nmethod = \"managed-identity\"\nidentity_endpoint = \"{url}\"\nmi_res_id = \"{res}\"\n",
        url = emu.url()
    ));
    sb.get("mi");
    sb.get("by-res");
    let calls = emu.calls_to(Endpoint::Imds);
    assert_eq!(
        calls[0].identity.as_deref(),
        Some(format!("object_id={CLIENT}").as_str())
    );
    assert_eq!(
        calls[1].identity.as_deref(),
        Some(format!("msi_res_id={res}").as_str())
    );
    assert!(
        calls
            .iter()
            .all(|c| c.status == 200 && c.client_id.is_none())
    );
}

// ---- azd ----

/// Writes a stand-in `azd` that records its arguments in `azd.args` and
/// runs `body`.
fn fake_azd(sb: &Sandbox, body: &str) -> PathBuf {
    let dir = sb.dir.path();
    let script = dir.join("azd");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}/azd.args'\n{body}",
            dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

const AZD_LOGGED_IN: &str = "exp=$(date -u -d @$(( $(date +%s) + 3600 )) +%Y-%m-%dT%H:%M:%SZ)\n\
     printf '{\"token\": \"eyJ.azd-1\", \"expiresOn\": \"%s\"}\\n' \"$exp\"\n";

#[test]
fn azd_prints_a_token_for_the_scope() {
    let mut sb = Sandbox::new();
    let azd = fake_azd(&sb, AZD_LOGGED_IN);
    sb.env("CREDCACHE_AZD", azd.display().to_string());
    sb.write_config(&format!(
        "[credentials.dev]\nkind = \"azure\"\nmethod = \"azd\"\ntenant_id = \"{TENANT}\"\n"
    ));
    let out = sb.run(["get", "dev", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    assert_eq!(json["token"], "eyJ.azd-1");
    let left = json["expires_in"].as_i64().unwrap();
    assert!((3000..=3600).contains(&left), "{json}");
    let args = std::fs::read_to_string(sb.dir.path().join("azd.args")).unwrap();
    let args: Vec<&str> = args.lines().collect();
    assert_eq!(
        args,
        [
            "auth",
            "token",
            "--output",
            "json",
            "--scope",
            "https://management.azure.com/.default",
            "--tenant-id",
            TENANT
        ]
    );
}

#[test]
fn azd_not_logged_in_says_run_azd_auth_login() {
    let mut sb = Sandbox::new();
    let azd = fake_azd(
        &sb,
        "echo 'ERROR: fetching token: not logged in, run `azd auth login` to login' >&2\nexit 1\n",
    );
    sb.env("CREDCACHE_AZD", azd.display().to_string());
    sb.write_config("[credentials.dev]\nkind = \"azure\"\nmethod = \"azd\"\n");
    let out = sb.run(["get", "dev"]);
    assert_one_line(&out, 5, &["azd is not logged in: run `azd auth login`"]);
}

#[test]
fn auto_takes_azd_when_it_is_installed_and_az_is_not() {
    let mut sb = Sandbox::new();
    let azd = fake_azd(&sb, AZD_LOGGED_IN);
    sb.env("CREDCACHE_AZD", azd.display().to_string())
        .env("CREDCACHE_AZ", "/nonexistent/az");
    sb.write_config("[credentials.auto]\nkind = \"azure\"\n");
    assert_eq!(sb.get("auto"), "eyJ.azd-1");
}
