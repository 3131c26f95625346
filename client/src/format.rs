//! What the client prints: here the five shapes of a token from `get`
//! (docs/machine-interface.md); in [`report`] the tables and `--json` forms of `list` and
//! `status`, which never see a token.
//!
//! Everything here is a pure function of the daemon's answer and `now`, so
//! each shape is tested without a daemon. JSON is built with serde (small
//! `Serialize` structs, so fields come out in the documented order), never
//! by pasting strings, and every timestamp goes through
//! [`format_rfc3339`]: `Z`, 0/3/6/9 fractional digits.
//!
//! **Invariant:** a token value is only ever written into the strings
//! [`token`] returns, which go to stdout; nothing here builds an error
//! message that contains one.

pub mod report;

use chrono::{DateTime, Utc};
use clap::ValueEnum;
use credcache_shared::Secret;
use credcache_shared::protocol::TokenReply;
use credcache_shared::time::format_rfc3339;
use serde::Serialize;

use crate::exit::Error;

/// `get --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The token and a newline, nothing else.
    Raw,
    /// One JSON object: schema_version, name, kind, token, expires_at,
    /// fetched_at, expires_in.
    Json,
    /// A Kubernetes ExecCredential, for kubectl's exec plugin.
    ExecCredential,
    /// `export VAR='token'`, for `eval` in a POSIX shell.
    Env,
    /// An HTTP `Authorization` header line.
    Header,
}

/// The version of the machine interface: the JSON of `get --format json`,
/// `watch`, `list --json` and `status --json`, whose every object carries
/// it as `schema_version`. Fields may be added without a bump; removing or
/// renaming one, or changing its meaning or type, bumps it. The field names
/// are frozen by tests (here and in `report`) and listed in
/// docs/machine-interface.md.
pub const SCHEMA_VERSION: u32 = 1;

/// The kind whose tokens go in a `SharedAccessSignature` header.
const APIM_KIND: &str = "apim-user-token";
const EXEC_CREDENTIAL_V1: &str = "client.authentication.k8s.io/v1";
const EXEC_CREDENTIAL_V1BETA1: &str = "client.authentication.k8s.io/v1beta1";

/// A token in the requested shape, ending with a newline. `exec_info` is
/// `$KUBERNETES_EXEC_INFO`, if set.
pub fn token(
    reply: &TokenReply,
    format: Format,
    now: DateTime<Utc>,
    exec_info: Option<&str>,
) -> Result<String, Error> {
    let secret = reply.token.expose();
    let text = match format {
        Format::Raw => format!("{secret}\n"),
        Format::Json => json_line(&TokenJson {
            schema_version: SCHEMA_VERSION,
            name: &reply.name,
            kind: &reply.kind,
            token: &reply.token,
            expires_at: format_rfc3339(reply.expires_at),
            fetched_at: format_rfc3339(reply.fetched_at),
            expires_in: (reply.expires_at - now).num_seconds().max(0),
        })?,
        Format::ExecCredential => json_line(&ExecCredential {
            api_version: exec_credential_api_version(exec_info),
            kind: "ExecCredential",
            status: ExecCredentialStatus {
                token: &reply.token,
                expiration_timestamp: format_rfc3339(reply.expires_at),
            },
        })?,
        Format::Env => {
            check_env_var(&reply.name, &reply.env_var)?;
            format!("export {}={}\n", reply.env_var, shell_quote(secret))
        }
        Format::Header => {
            let scheme = if reply.kind == APIM_KIND {
                "SharedAccessSignature"
            } else {
                "Bearer"
            };
            format!("Authorization: {scheme} {secret}\n")
        }
    };
    Ok(text)
}

#[derive(Serialize)]
struct TokenJson<'a> {
    schema_version: u32,
    name: &'a str,
    kind: &'a str,
    token: &'a Secret,
    expires_at: String,
    fetched_at: String,
    expires_in: i64,
}

#[derive(Serialize)]
struct ExecCredential<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    status: ExecCredentialStatus<'a>,
}

#[derive(Serialize)]
struct ExecCredentialStatus<'a> {
    token: &'a Secret,
    #[serde(rename = "expirationTimestamp")]
    expiration_timestamp: String,
}

/// `v1beta1` when kubectl's `KUBERNETES_EXEC_INFO` asks for it, else `v1`
/// (also when the variable is absent or unreadable: v1 is what every
/// current kubectl speaks).
pub fn exec_credential_api_version(exec_info: Option<&str>) -> &'static str {
    let asked = exec_info
        .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        .and_then(|v| v.get("apiVersion")?.as_str().map(str::to_owned));
    match asked.as_deref() {
        Some(v) if v == EXEC_CREDENTIAL_V1BETA1 || v.ends_with("/v1beta1") => {
            EXEC_CREDENTIAL_V1BETA1
        }
        _ => EXEC_CREDENTIAL_V1,
    }
}

/// Quotes `value` for a POSIX shell: inside single quotes nothing is
/// special except `'` itself, written as `'\''`.
pub fn shell_quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        if c == '\'' {
            quoted.push_str("'\\''");
        } else {
            quoted.push(c);
        }
    }
    quoted.push('\'');
    quoted
}

/// Refuses an `env_var` that is not a shell variable name (printed after
/// `export` for `eval`, anything else would be code), or that programs read
/// as code, a path or a setting (`BASH_ENV`, `LD_PRELOAD`, `PATH`, …; see
/// [`credcache_shared::env_var`]). The config is checked when it is loaded;
/// this checks the daemon's answer, which is not trusted.
pub fn check_env_var(credential: &str, var: &str) -> Result<(), Error> {
    match credcache_shared::env_var::problem(var) {
        None => Ok(()),
        Some(why) => Err(Error::Other(format!(
            "cannot put {credential}'s token in the environment: {why}; fix env_var in the config"
        ))),
    }
}

fn json_line<T: Serialize>(value: &T) -> Result<String, Error> {
    let mut text = serde_json::to_string(value)
        .map_err(|e| Error::Other(format!("cannot write JSON: {e}")))?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::Value;

    fn at(secs: i64, nanos: u32) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, nanos).unwrap()
    }

    fn reply(kind: &str, token: &str) -> TokenReply {
        TokenReply {
            name: "gcp".into(),
            kind: kind.to_owned().into(),
            token: Secret::new(token),
            expires_at: at(3600, 0),
            fetched_at: at(-10, 123_400_000),
            env_var: "CREDCACHE_GCP_TOKEN".into(),
            warning: None,
        }
    }

    /// `{name:type,...}` with names sorted, recursing into objects and the
    /// first element of arrays: a snapshot of a JSON shape without values.
    pub(crate) fn json_shape(v: &Value) -> String {
        match v {
            Value::Null => "null".into(),
            Value::Bool(_) => "bool".into(),
            Value::Number(_) => "number".into(),
            Value::String(_) => "string".into(),
            Value::Array(items) => match items.first() {
                Some(first) => format!("[{}]", json_shape(first)),
                None => "[]".into(),
            },
            Value::Object(map) => format!(
                "{{{}}}",
                map.iter()
                    .map(|(k, v)| format!("{k}:{}", json_shape(v)))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }

    fn render(r: &TokenReply, f: Format) -> String {
        token(r, f, at(0, 500_000_000), None).unwrap()
    }

    #[test]
    fn raw_is_the_token_and_a_newline() {
        assert_eq!(
            render(&reply("google", "ya29.abc"), Format::Raw),
            "ya29.abc\n"
        );
    }

    #[test]
    fn json_has_the_documented_fields_and_timestamp_form() {
        let text = render(&reply("google", "ya29.abc"), Format::Json);
        assert!(text.ends_with("}\n") && !text.trim_end().contains('\n'));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["schema_version"], 1);
        assert_eq!(v["name"], "gcp");
        assert_eq!(v["kind"], "google");
        assert_eq!(v["token"], "ya29.abc");
        assert_eq!(v["expires_at"], "2027-01-15T09:00:00Z");
        assert_eq!(v["fetched_at"], "2027-01-15T07:59:50.123400Z");
        // Whole seconds from now (half a second in): 3599.5 → 3599.
        assert_eq!(v["expires_in"], 3599);
    }

    /// The machine interface, frozen: these names and types are what IDEs
    /// and scripts read (JSON key order carries no meaning). Changing this test is changing the interface
    /// (see [`SCHEMA_VERSION`] and docs/machine-interface.md).
    #[test]
    fn json_field_names_are_frozen() {
        let text = render(&reply("google", "ya29.abc"), Format::Json);
        assert_eq!(
            json_shape(&serde_json::from_str(&text).unwrap()),
            "{expires_at:string,expires_in:number,fetched_at:string,kind:string,\
             name:string,schema_version:number,token:string}"
        );
        assert_eq!(SCHEMA_VERSION, 1);
    }

    #[test]
    fn json_expires_in_is_never_negative() {
        let r = reply("google", "t");
        let text = token(&r, Format::Json, at(7200, 0), None).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["expires_in"], 0);
    }

    #[test]
    fn exec_credential_is_v1_unless_kubectl_asks_for_v1beta1() {
        let r = reply("gke-cluster", "tok");
        let text = render(&r, Format::ExecCredential);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "apiVersion": "client.authentication.k8s.io/v1",
                "kind": "ExecCredential",
                "status": {"token": "tok", "expirationTimestamp": "2027-01-15T09:00:00Z"}
            })
        );

        let beta = r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","spec":{"interactive":false}}"#;
        let text = token(&r, Format::ExecCredential, at(0, 0), Some(beta)).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["apiVersion"], "client.authentication.k8s.io/v1beta1");

        for other in [
            r#"{"apiVersion":"client.authentication.k8s.io/v1"}"#,
            "not json",
            "",
            r#"{"apiVersion":42}"#,
        ] {
            assert_eq!(exec_credential_api_version(Some(other)), EXEC_CREDENTIAL_V1);
        }
    }

    #[test]
    fn env_quotes_for_a_posix_shell() {
        let r = reply("command", "it's a $token `x` \"y\"");
        assert_eq!(
            render(&r, Format::Env),
            "export CREDCACHE_GCP_TOKEN='it'\\''s a $token `x` \"y\"'\n"
        );
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("''"), "''\\'''\\'''");
    }

    /// The quoting is checked against a real shell: what `sh` reads back is
    /// exactly the token.
    #[cfg(unix)] // runs sh
    #[test]
    fn env_output_round_trips_through_sh() {
        let tricky = "a'b\"c$d`e\\f g\n!h";
        let r = reply("command", tricky);
        let script = format!(
            "{}printf %s \"$CREDCACHE_GCP_TOKEN\"",
            render(&r, Format::Env)
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), tricky);
    }

    #[test]
    fn env_refuses_a_var_that_is_not_a_name() {
        let mut r = reply("command", "SECRETVALUE");
        r.env_var = "X;rm -rf ~".into();
        let err = token(&r, Format::Env, at(0, 0), None).unwrap_err();
        assert!(!err.messages()[0].contains("SECRETVALUE"));
        for good in ["A", "_x", "CREDCACHE_PROD_GKE_TOKEN"] {
            assert!(check_env_var("c", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1A",
            "A-B",
            "A=B",
            "A.B",
            "BASH_ENV",
            "LD_PRELOAD",
            "PATH",
        ] {
            assert!(check_env_var("c", bad).is_err(), "{bad}");
        }
        r.env_var = "BASH_ENV".into();
        let err = token(&r, Format::Env, at(0, 0), None).unwrap_err();
        assert!(
            err.messages()[0].contains("\"BASH_ENV\" is refused"),
            "{err:?}"
        );
        assert!(!err.messages()[0].contains("SECRETVALUE"));
    }

    #[test]
    fn header_is_bearer_except_for_apim() {
        assert_eq!(
            render(&reply("azure", "eyJ0"), Format::Header),
            "Authorization: Bearer eyJ0\n"
        );
        assert_eq!(
            render(&reply("apim-user-token", "uid&202701&sig"), Format::Header),
            "Authorization: SharedAccessSignature uid&202701&sig\n"
        );
    }
}
