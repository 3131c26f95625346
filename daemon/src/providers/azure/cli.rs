//! `method = "cli"`: the token of the account the Azure CLI is signed in
//! with, from `az account get-access-token -o json --scope S [--tenant T]`.
//! The program is `az` from the daemon's `PATH`, or the one `CREDCACHE_AZ`
//! names (a path or a name to look up on `PATH`). It runs directly (no
//! shell), with stdin closed, in a process group of its own that is killed
//! if it has not finished within `http_timeout` (`providers/process.rs`).
//!
//! The expiry is `expires_on` (epoch seconds, a number or a string), never
//! `expiresOn`, which is local time without a zone.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use credcache_shared::Secret;
use serde_json::Value;

use crate::http::sanitize;
use crate::providers::{FetchContext, FetchError, Fetched, token_response, within_lifetime};

const WHAT: &str = "`az account get-access-token`";

/// The program to run: `CREDCACHE_AZ`, else `az`.
pub fn program(env: super::Env<'_>) -> String {
    env("CREDCACHE_AZ").unwrap_or_else(|| "az".to_owned())
}

/// Where `program` would be found: itself if it is a path, else the first
/// executable of that name on `PATH`.
pub fn locate(program: &str, env: super::Env<'_>) -> Option<PathBuf> {
    let p = Path::new(program);
    if p.components().count() > 1 {
        return is_executable(p).then(|| p.to_path_buf());
    }
    let path = env("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .flat_map(|dir| {
            crate::sys::executable_names(program)
                .into_iter()
                .map(move |name| dir.join(name))
        })
        .find(|candidate| is_executable(candidate))
}

fn is_executable(p: &Path) -> bool {
    crate::sys::is_executable(p)
}

/// The CLI's record of the signed-in accounts and the default subscription
/// (`$AZURE_CONFIG_DIR/azureProfile.json`, default `~/.azure`): `az login`
/// and `az account set` change it, and with it the identity.
pub fn profile_file(env: super::Env<'_>) -> Option<PathBuf> {
    let dir = env("AZURE_CONFIG_DIR")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| PathBuf::from(home).join(".azure")))?;
    Some(dir.join("azureProfile.json"))
}

pub async fn fetch(
    program: &str,
    tenant: Option<&str>,
    scope: &str,
    cx: &FetchContext<'_>,
) -> Result<Fetched, FetchError> {
    let _permit = crate::http::upstream_permit().await;
    let mut args: Vec<String> = [
        "account",
        "get-access-token",
        "-o",
        "json",
        "--scope",
        scope,
    ]
    .map(str::to_owned)
    .to_vec();
    if let Some(tenant) = tenant {
        args.extend(["--tenant".to_owned(), tenant.to_owned()]);
    }
    // `az` is a Python program that may leave workers behind: its whole
    // process group goes when it is done or stopped.
    let (status, out, err) =
        crate::providers::process::run(program, &args, WHAT, cx.timeout, |e| {
            cannot_run(program, e)
        })
        .await?;
    if !status.success() {
        return Err(failure(status.code(), &err));
    }
    parse_output(&out, cx.now)
}

fn cannot_run(program: &str, e: &std::io::Error) -> FetchError {
    let overridden = program != "az";
    if e.kind() == std::io::ErrorKind::NotFound && !overridden {
        return FetchError::config(
            "the Azure CLI is not installed or not on the daemon's PATH: install it, or set \
             CREDCACHE_AZ to its path and run `credcache daemon restart`",
        );
    }
    let what = if overridden {
        format!("CREDCACHE_AZ names {:?}, which", sanitize(program, 200))
    } else {
        "the Azure CLI (az)".to_owned()
    };
    FetchError::config(format!("{what} cannot be run: {e}"))
}

/// A non-zero exit: "not logged in" said plainly, else the CLI's own error.
fn failure(code: Option<i32>, stderr: &[u8]) -> FetchError {
    let text = String::from_utf8_lossy(stderr);
    let lines = || text.lines().map(str::trim).filter(|l| !l.is_empty());
    // The CLI may warn before it errs: its ERROR line is the one that says why.
    let first = lines()
        .find(|l| l.starts_with("ERROR"))
        .or_else(|| lines().next())
        .map(|l| sanitize(l, 200));
    let said = first.map(|l| format!(" ({l})")).unwrap_or_default();
    if text.to_ascii_lowercase().contains("az login") {
        // Retrying will not help until someone runs `az login`.
        return FetchError::permanent(format!("Azure CLI is not logged in: run `az login`{said}"));
    }
    let how = crate::providers::process::how_it_ended(code);
    FetchError::transient(format!("{WHAT} {how}{said}"))
}

/// Reads `{"accessToken": ..., "expires_on": ...}`. Nothing of the output
/// itself goes into an error: it holds the token.
pub(crate) fn parse_output(out: &[u8], now: DateTime<Utc>) -> Result<Fetched, FetchError> {
    let bad = |why: String| FetchError::transient(format!("{WHAT} printed {why}"));
    let v: Value = crate::providers::process::json_output(out).map_err(bad)?;
    let token = match v.get("accessToken") {
        Some(Value::String(t)) if !t.is_empty() => Secret::new(t.clone()),
        Some(_) => return Err(bad("an accessToken that is not a non-empty string".into())),
        None => return Err(bad("no accessToken".into())),
    };
    let Some(on) = v.get("expires_on") else {
        return Err(bad(
            "no expires_on (older Azure CLI versions print only expiresOn, a local time \
             without a zone: update the Azure CLI)"
                .into(),
        ));
    };
    let secs = token_response::integer("expires_on", on).map_err(|e| bad(e.to_string()))?;
    let expires_at: DateTime<Utc> = DateTime::from_timestamp(secs, 0)
        .ok_or_else(|| bad(format!("expires_on {secs}, which is out of range")))?;
    let expires_at = within_lifetime("expires_on", expires_at, now)
        .map_err(|why| FetchError::transient(format!("{WHAT}: {why}")))?;
    Ok(Fetched::new(token, expires_at))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::providers::ErrorClass;

    /// Less than a year before the examples expire.
    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_880_000_000, 0).unwrap()
    }

    #[test]
    fn reads_expires_on_as_a_number_or_a_string_and_ignores_expires_on_local() {
        for expires_on in ["1893553445", "\"1893553445\""] {
            let out = format!(
                r#"{{"accessToken":"eyJ.cli","expiresOn":"2030-01-02 03:04:05.000000",
                   "expires_on":{expires_on},"subscription":"s","tenant":"t","tokenType":"Bearer"}}"#
            );
            let f = parse_output(out.as_bytes(), now()).unwrap();
            assert_eq!(f.token.expose(), "eyJ.cli");
            assert_eq!(f.expires_at.timestamp(), 1_893_553_445);
        }
    }

    #[test]
    fn bad_output_names_the_field_and_never_echoes_it() {
        for (out, want) in [
            (
                r#"{"accessToken":"eyJ.secret","expiresOn":"2030-01-02 03:04:05.000000"}"#,
                "no expires_on",
            ),
            (
                r#"{"accessToken":"eyJ.secret","expires_on":"soon"}"#,
                "expires_on is not a whole number",
            ),
            (r#"{"expires_on":1}"#, "no accessToken"),
            (
                r#"{"accessToken":"","expires_on":1}"#,
                "accessToken that is not",
            ),
            (r#"{"accessToken":"eyJ.secret""#, "not JSON (at line 1"),
            // Found by the `azure_cli_output` fuzz target: an expires_on
            // decades ahead was cached as if the token lived that long.
            (
                r#"{"accessToken":"eyJ.secret","expires_on":3497479200}"#,
                "expires_on 2080-10-30T02:00:00Z is more than 366 days ahead",
            ),
            ("", "not JSON"),
        ] {
            let e = parse_output(out.as_bytes(), now()).unwrap_err();
            assert!(e.message.contains(want), "{out}: {}", e.message);
            assert!(!e.message.contains("eyJ"), "{}", e.message);
        }
    }

    #[test]
    fn not_logged_in_is_said_plainly() {
        let e = failure(
            Some(1),
            b"WARNING: something\nERROR: Please run 'az login' to setup account.\n",
        );
        assert_eq!(
            e.message,
            "Azure CLI is not logged in: run `az login` (ERROR: Please run 'az login' to setup account.)"
        );
        assert_eq!(e.class, ErrorClass::Permanent);
        let e = failure(Some(2), b"\n\x1b[31mERROR: the network is down\x1b[0m\n");
        assert_eq!(
            e.message,
            "`az account get-access-token` exited with status 2 ([31mERROR: the network is down [0m)"
        );
        assert_eq!(e.class, ErrorClass::Transient);
        assert_eq!(
            failure(None, b"").message,
            "`az account get-access-token` was killed by a signal"
        );
    }

    #[cfg(unix)]
    #[test]
    fn locates_on_path_or_by_path() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let az = bin.join("az");
        std::fs::write(&az, "#!/bin/sh\n").unwrap();
        let path = format!("/nonexistent::{}", bin.display());
        let vars: HashMap<&str, String> = [("PATH", path)].into();
        let env = |n: &str| vars.get(n).cloned();
        assert_eq!(locate("az", &env), None, "not executable yet");
        std::fs::set_permissions(&az, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(locate("az", &env), Some(az.clone()));
        assert_eq!(
            locate(&az.display().to_string(), &|_: &str| None),
            Some(az.clone())
        );
        assert_eq!(locate("az", &|_: &str| None), None);
        assert_eq!(locate("./nope/az", &env), None);
    }

    /// Windows: `az` is `az.cmd` (PATHEXT), and a file without a runnable
    /// extension is not a program.
    #[cfg(windows)]
    #[test]
    fn locates_az_cmd_on_path() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join("az"), "not a program").unwrap();
        let path = std::env::join_paths([tmp.path().join("none"), bin.clone()]).unwrap();
        let vars: HashMap<&str, String> = [("PATH", path.to_string_lossy().into_owned())].into();
        let env = |n: &str| vars.get(n).cloned();
        assert_eq!(locate("az", &env), None, "no az.cmd yet");
        let az = bin.join("az.cmd");
        std::fs::write(&az, "@echo off\r\n").unwrap();
        assert_eq!(locate("az", &env), Some(az.clone()));
        assert_eq!(locate(&az.display().to_string(), &|_: &str| None), Some(az));
    }

    #[test]
    fn program_and_profile_follow_the_environment() {
        let none = |_: &str| None;
        assert_eq!(program(&none), "az");
        assert_eq!(profile_file(&none), None);
        let vars: HashMap<&str, &str> = [("CREDCACHE_AZ", "/opt/az"), ("HOME", "/home/u")].into();
        let env = |n: &str| vars.get(n).map(|v| v.to_string());
        assert_eq!(program(&env), "/opt/az");
        assert_eq!(
            profile_file(&env),
            Some(PathBuf::from("/home/u/.azure/azureProfile.json"))
        );
        let cfg = |n: &str| (n == "AZURE_CONFIG_DIR").then(|| "/cfg".to_owned());
        assert_eq!(
            profile_file(&cfg),
            Some(PathBuf::from("/cfg/azureProfile.json"))
        );
    }
}
