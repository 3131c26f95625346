//! The reports `list` and `status` print: aligned tables for people and
//! JSON for scripts. They describe credentials (state, expiry, last error)
//! and never carry a token, which is why they live apart from the token
//! shapes in [`super`].

use chrono::{DateTime, Utc};
use credcache_shared::protocol::{CredentialInfo, DaemonStatus, ScopedInfo, SourceInfo};
use credcache_shared::time::format_rfc3339;
use serde::Serialize;

use crate::exit::Error;
use crate::format::SCHEMA_VERSION;

fn json_pretty<T: Serialize>(value: &T) -> Result<String, Error> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Other(format!("cannot write JSON: {e}")))?;
    text.push('\n');
    Ok(text)
}

/// One credential in `list --json` and `status --json`.
#[derive(Serialize)]
struct CredentialJson<'a> {
    name: &'a str,
    kind: &'a str,
    auth: Option<&'a str>,
    state: &'static str,
    expires_at: Option<String>,
    fetched_at: Option<String>,
    next_refresh: Option<String>,
    consecutive_failures: u32,
    last_error: Option<&'a str>,
    fetches: u64,
    /// Tokens for other scopes (`get --scope`, the SDK endpoints).
    scoped: Vec<ScopedJson<'a>>,
}

/// A credential's token for other scopes, under it in `list --json`.
#[derive(Serialize)]
struct ScopedJson<'a> {
    scopes: &'a [String],
    state: &'static str,
    expires_at: Option<String>,
    fetched_at: Option<String>,
    fetches: u64,
}

impl<'a> From<&'a ScopedInfo> for ScopedJson<'a> {
    fn from(info: &'a ScopedInfo) -> Self {
        Self {
            scopes: &info.scopes,
            state: info.state.as_str(),
            expires_at: info.expires_at.map(format_rfc3339),
            fetched_at: info.fetched_at.map(format_rfc3339),
            fetches: info.fetches,
        }
    }
}

/// An SDK endpoint in `status --json`.
#[derive(Serialize)]
struct SdkJson<'a> {
    name: &'a str,
    kind: &'a str,
    port: u16,
    listening: bool,
    served: u64,
    refused: u64,
    error: Option<&'a str>,
}

impl<'a> From<&'a CredentialInfo> for CredentialJson<'a> {
    fn from(info: &'a CredentialInfo) -> Self {
        Self {
            name: &info.name,
            kind: &info.kind,
            auth: info.auth.as_deref(),
            state: info.state.as_str(),
            expires_at: info.expires_at.map(format_rfc3339),
            fetched_at: info.fetched_at.map(format_rfc3339),
            next_refresh: info.next_refresh.map(format_rfc3339),
            consecutive_failures: info.consecutive_failures,
            last_error: info.last_error.as_deref(),
            fetches: info.fetches,
            scoped: info.scoped.iter().map(ScopedJson::from).collect(),
        }
    }
}

/// One element of `list --json`: a credential, stamped with the
/// interface version (status nests credentials without the stamp).
#[derive(Serialize)]
struct ListEntryJson<'a> {
    schema_version: u32,
    #[serde(flatten)]
    credential: CredentialJson<'a>,
}

#[derive(Serialize)]
struct StatusJson<'a> {
    schema_version: u32,
    daemon_version: &'a str,
    protocol_version: u32,
    pid: u32,
    started_at: String,
    uptime_secs: u64,
    socket: &'a str,
    cache_path: &'a str,
    config_path: &'a str,
    config_error: Option<&'a str>,
    requests_served: u64,
    cache_key: &'a str,
    dumpable: bool,
    warnings: &'a [String],
    sdk: Vec<SdkJson<'a>>,
    credentials: Vec<CredentialJson<'a>>,
    sources: Vec<SourceJson<'a>>,
    sources_not_shown: u32,
}

/// One source token in `status --json` (never the token).
#[derive(Serialize)]
struct SourceJson<'a> {
    source: &'a str,
    state: &'static str,
    expires_at: Option<String>,
    fetched_at: Option<String>,
    shared_by: u32,
    fetches: u64,
    last_error: Option<&'a str>,
}

impl<'a> From<&'a SourceInfo> for SourceJson<'a> {
    fn from(info: &'a SourceInfo) -> Self {
        Self {
            source: &info.source,
            state: info.state.as_str(),
            expires_at: info.expires_at.map(format_rfc3339),
            fetched_at: info.fetched_at.map(format_rfc3339),
            shared_by: info.shared_by,
            fetches: info.fetches,
            last_error: info.last_error.as_deref(),
        }
    }
}

/// `list --json`: an array of credential objects.
pub fn credentials_json(credentials: &[CredentialInfo]) -> Result<String, Error> {
    json_pretty(
        &credentials
            .iter()
            .map(|c| ListEntryJson {
                schema_version: SCHEMA_VERSION,
                credential: CredentialJson::from(c),
            })
            .collect::<Vec<_>>(),
    )
}

/// `list`: NAME KIND STATE EXPIRES-IN.
pub fn credentials_table(credentials: &[CredentialInfo], now: DateTime<Utc>) -> String {
    let mut rows = vec![row(["NAME", "KIND", "STATE", "EXPIRES-IN"])];
    for c in credentials {
        rows.push(vec![
            c.name.clone(),
            c.kind.clone(),
            c.state.as_str().to_owned(),
            expires_in(c.expires_at, now),
        ]);
        for s in &c.scoped {
            rows.push(vec![
                scoped_name(c, s),
                c.kind.clone(),
                s.state.as_str().to_owned(),
                expires_in(s.expires_at, now),
            ]);
        }
    }
    table(&rows)
}

/// A scoped token's row name: its credential, then its scopes.
fn scoped_name(c: &CredentialInfo, s: &ScopedInfo) -> String {
    format!("{} [{}]", c.name, s.scopes.join(" "))
}

/// `status --json`.
pub fn status_json(status: &DaemonStatus) -> Result<String, Error> {
    json_pretty(&StatusJson {
        schema_version: SCHEMA_VERSION,
        daemon_version: &status.daemon_version,
        protocol_version: status.protocol_version,
        pid: status.pid,
        started_at: format_rfc3339(status.started_at),
        uptime_secs: status.uptime_secs,
        socket: &status.socket,
        cache_path: &status.cache_path,
        config_path: &status.config_path,
        config_error: status.config_error.as_deref(),
        requests_served: status.requests_served,
        cache_key: &status.cache_key,
        dumpable: status.dumpable,
        warnings: &status.warnings,
        sdk: status
            .sdk
            .iter()
            .map(|e| SdkJson {
                name: &e.name,
                kind: &e.kind,
                port: e.port,
                listening: e.listening,
                served: e.served,
                refused: e.refused,
                error: e.error.as_deref(),
            })
            .collect(),
        credentials: status
            .credentials
            .iter()
            .map(CredentialJson::from)
            .collect(),
        sources: status.sources.iter().map(SourceJson::from).collect(),
        sources_not_shown: status.sources_not_shown,
    })
}

/// `status`: the daemon's facts, a blank line, then one row per credential.
pub fn status_text(status: &DaemonStatus, now: DateTime<Utc>) -> String {
    let mut facts = vec![
        row([
            "version:",
            &format!(
                "credcached {} (protocol {})",
                status.daemon_version, status.protocol_version
            ),
        ]),
        row(["pid:", &status.pid.to_string()]),
        row([
            "uptime:",
            &format!(
                "{} (since {})",
                uptime(status.uptime_secs),
                format_rfc3339(status.started_at)
            ),
        ]),
        row(["socket:", &status.socket]),
        row(["cache:", &status.cache_path]),
        row(["config:", &status.config_path]),
    ];
    if let Some(error) = &status.config_error {
        facts.push(row([
            "config error:",
            &format!("{error} (the previous config stays in force)"),
        ]));
    }
    facts.push(row(["requests:", &status.requests_served.to_string()]));
    facts.push(row(["cache key:", &status.cache_key]));
    if status.dumpable {
        facts.push(row([
            "warning:",
            "the daemon could not mark itself non-dumpable",
        ]));
    }
    for w in &status.warnings {
        facts.push(row(["warning:", w]));
    }
    for e in &status.sdk {
        let state = match &e.error {
            Some(error) if !e.listening => format!("not listening: {error}"),
            // A listening endpoint with a note: it refuses what it cannot check.
            Some(note) => format!("{} served, {} refused; {note}", e.served, e.refused),
            None => format!("{} served, {} refused", e.served, e.refused),
        };
        facts.push(row([
            "sdk endpoint:",
            &format!("{} ({}) on 127.0.0.1:{}, {state}", e.name, e.kind, e.port),
        ]));
    }

    let mut creds = vec![row([
        "NAME",
        "KIND",
        "STATE",
        "EXPIRES-IN",
        "LAST-REFRESH",
        "LAST-ERROR",
    ])];
    for c in &status.credentials {
        creds.push(vec![
            c.name.clone(),
            c.kind.clone(),
            c.state.as_str().to_owned(),
            expires_in(c.expires_at, now),
            ago(c.fetched_at, now),
            c.last_error.clone().unwrap_or_else(|| "-".into()),
        ]);
        for s in &c.scoped {
            creds.push(vec![
                scoped_name(c, s),
                c.kind.clone(),
                s.state.as_str().to_owned(),
                expires_in(s.expires_at, now),
                ago(s.fetched_at, now),
                "-".into(),
            ]);
        }
    }
    let mut text = format!("{}\n{}", table(&facts), table(&creds));
    if !status.sources.is_empty() || status.sources_not_shown > 0 {
        let mut sources = vec![row([
            "SOURCE",
            "STATE",
            "EXPIRES-IN",
            "SHARED-BY",
            "LAST-ERROR",
        ])];
        sources.extend(status.sources.iter().map(|s| {
            vec![
                s.source.clone(),
                s.state.as_str().to_owned(),
                expires_in(s.expires_at, now),
                s.shared_by.to_string(),
                s.last_error.clone().unwrap_or_else(|| "-".into()),
            ]
        }));
        if status.sources_not_shown > 0 {
            sources.push(vec![format!(
                "... and {} more sources",
                status.sources_not_shown
            )]);
        }
        text.push('\n');
        text.push_str(&table(&sources));
    }
    text
}

/// `3m 2s`, for `status` and `daemon status`.
pub fn uptime(secs: u64) -> String {
    short_duration(secs)
}

/// A duration for a table cell: its two largest units, `59m 30s`,
/// `7h 59m`, `30d 2h`. Seconds beyond the first two units do not help
/// anyone reading a table (and humantime's `3years 1month 8days 10h 38m
/// 11s` would swamp the column).
pub fn short_duration(secs: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let Some(first) = UNITS.iter().position(|(size, _)| secs >= *size) else {
        return "0s".into();
    };
    let (size, unit) = UNITS[first];
    let mut text = format!("{}{unit}", secs / size);
    if let Some(&(next_size, next_unit)) = UNITS.get(first + 1) {
        let next = secs % size / next_size;
        if next > 0 {
            text.push_str(&format!(" {next}{next_unit}"));
        }
    }
    text
}

/// Time left on a token for people: `59m 30s`, `expired`, or `-`.
pub fn expires_in(expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match expires_at {
        None => "-".into(),
        Some(t) => match (t - now).num_seconds() {
            secs if secs <= 0 => "expired".into(),
            secs => short_duration(secs.unsigned_abs()),
        },
    }
}

fn ago(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match at {
        None => "-".into(),
        Some(t) => format!(
            "{} ago",
            short_duration((now - t).num_seconds().max(0).unsigned_abs())
        ),
    }
}

fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

/// Left-aligned columns two spaces apart; the last column is not padded.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < r.len() {
                let pad = widths[i] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use credcache_shared::protocol::CredentialState;
    use serde_json::Value;

    fn at(secs: i64, nanos: u32) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, nanos).unwrap()
    }

    fn info(
        name: &str,
        state: CredentialState,
        expires_at: Option<DateTime<Utc>>,
    ) -> CredentialInfo {
        CredentialInfo {
            name: name.into(),
            kind: "google".into(),
            auth: None,
            state,
            expires_at,
            fetched_at: expires_at.map(|t| t - chrono::Duration::hours(1)),
            next_refresh: None,
            consecutive_failures: 0,
            last_error: None,
            fetches: 1,
            scoped: Vec::new(),
        }
    }

    #[test]
    fn short_durations_keep_two_units() {
        let cases = [
            (0, "0s"),
            (59, "59s"),
            (60, "1m"),
            (182, "3m 2s"),
            (3570, "59m 30s"),
            (3600 * 8 - 1, "7h 59m"),
            (86_400 * 3 + 7200 + 5, "3d 2h"),
            (86_400 + 30, "1d"),
            (98_032_307, "1134d 15h"),
        ];
        for (secs, want) in cases {
            assert_eq!(short_duration(secs), want, "{secs}");
        }
    }

    #[test]
    fn list_table_is_aligned() {
        let creds = [
            info("google", CredentialState::Fresh, Some(at(3570, 0))),
            info("prod-gke-long", CredentialState::NeverFetched, None),
            info("x", CredentialState::Expired, Some(at(-5, 0))),
        ];
        assert_eq!(
            credentials_table(&creds, at(0, 0)),
            "\
NAME           KIND    STATE          EXPIRES-IN
google         google  fresh          59m 30s
prod-gke-long  google  never fetched  -
x              google  expired        expired
"
        );
    }

    #[test]
    fn list_json_fields_and_timestamps() {
        let mut c = info("gcp", CredentialState::StaleServing, Some(at(60, 1_000)));
        c.auth = Some("corp".into());
        c.last_error = Some("invalid_grant: Bad Request".into());
        c.consecutive_failures = 2;
        let v: Value = serde_json::from_str(&credentials_json(&[c]).unwrap()).unwrap();
        let o = &v[0];
        let mut keys: Vec<&str> = o.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "auth",
                "consecutive_failures",
                "expires_at",
                "fetched_at",
                "fetches",
                "kind",
                "last_error",
                "name",
                "next_refresh",
                "schema_version",
                "scoped",
                "state"
            ]
        );
        assert_eq!(o["schema_version"], 1);
        assert_eq!(o["state"], "stale-serving");
        assert_eq!(o["auth"], "corp");
        assert_eq!(o["expires_at"], "2027-01-15T08:01:00.000001Z");
        assert_eq!(o["next_refresh"], Value::Null);
        assert_eq!(o["consecutive_failures"], 2);
    }

    fn status() -> DaemonStatus {
        DaemonStatus {
            daemon_version: "0.1.0".into(),
            protocol_version: 1,
            pid: 4242,
            started_at: at(-182, 0),
            uptime_secs: 182,
            socket: "/run/user/1000/credcache.sock".into(),
            cache_path: "/home/u/.local/share/credcache/cache".into(),
            config_path: "/home/u/.config/credcache/config.toml".into(),
            config_error: None,
            requests_served: 17,
            cache_key: "file /home/me/.config/credcache/cache.key (protected by its file mode)"
                .into(),
            dumpable: false,
            warnings: vec![
                "/k.json is readable by others (mode 644); it holds a secret: chmod 600 it".into(),
            ],
            sdk: Vec::new(),
            credentials: vec![info("google", CredentialState::Fresh, Some(at(600, 0)))],
            more_after: None,
            sources: vec![],
            sources_not_shown: 0,
        }
    }

    #[test]
    fn status_text_shows_the_daemon_and_each_credential() {
        let mut s = status();
        let text = status_text(&s, at(0, 0));
        assert!(
            text.starts_with("version:    credcached 0.1.0 (protocol 1)\n"),
            "{text}"
        );
        assert!(
            text.contains("uptime:     3m 2s (since 2027-01-15T07:56:58Z)\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "requests:   17\ncache key:  file /home/me/.config/credcache/cache.key (protected by its file mode)\n\
                 warning:    /k.json is readable by others (mode 644); it holds a secret: chmod 600 it\n\nNAME"
            ),
            "{text}"
        );
        assert!(text.contains("google  google  fresh  10m"), "{text}");
        assert!(!text.contains("config error"));

        s.config_error = Some("config.toml: credentials.x.kind: unknown kind".into());
        let text = status_text(&s, at(0, 0));
        assert!(
            text.contains("config error:  config.toml: credentials.x.kind"),
            "{text}"
        );
    }

    fn with_sources() -> DaemonStatus {
        let mut s = status();
        s.sources = vec![
            SourceInfo {
                source: "key file /home/u/sa.json".into(),
                state: CredentialState::Fresh,
                expires_at: Some(at(1200, 0)),
                fetched_at: Some(at(-2400, 0)),
                shared_by: 10,
                fetches: 1,
                last_error: None,
            },
            SourceInfo {
                source: "external account /home/u/wif.json (STS token)".into(),
                state: CredentialState::Failing,
                expires_at: None,
                fetched_at: None,
                shared_by: 1,
                fetches: 0,
                last_error: Some("sts answered 400: invalid_grant: expired".into()),
            },
        ];
        s
    }

    #[test]
    fn status_shows_source_tokens_after_the_credentials() {
        assert!(!status_text(&status(), at(0, 0)).contains("SOURCE"));
        let mut s = with_sources();
        let text = status_text(&s, at(0, 0));
        assert!(
            text.ends_with(
                "\n\n\
SOURCE                                         STATE    EXPIRES-IN  SHARED-BY  LAST-ERROR
key file /home/u/sa.json                       fresh    20m         10         -
external account /home/u/wif.json (STS token)  failing  -           1          sts answered 400: invalid_grant: expired
"
            ),
            "{text}"
        );
        s.sources_not_shown = 3;
        assert!(
            status_text(&s, at(0, 0)).ends_with("\n... and 3 more sources\n"),
            "{text}"
        );
        let v: Value = serde_json::from_str(&status_json(&s).unwrap()).unwrap();
        assert_eq!(v["sources"][0]["source"], "key file /home/u/sa.json");
        assert_eq!(v["sources"][0]["shared_by"], 10);
        assert_eq!(v["sources"][0]["expires_at"], "2027-01-15T08:20:00Z");
        assert_eq!(v["sources"][1]["state"], "failing");
        assert_eq!(v["sources"][1]["expires_at"], Value::Null);
        assert_eq!(v["sources_not_shown"], 3);
    }

    #[test]
    fn status_json_fields() {
        let v: Value = serde_json::from_str(&status_json(&status()).unwrap()).unwrap();
        assert_eq!(v["schema_version"], 1);
        assert_eq!(v["pid"], 4242);
        assert_eq!(v["started_at"], "2027-01-15T07:56:58Z");
        assert_eq!(v["config_error"], Value::Null);
        assert_eq!(v["credentials"][0]["name"], "google");
        assert_eq!(v["requests_served"], 17);
    }

    fn keys(v: &Value) -> Vec<&str> {
        v.as_object().unwrap().keys().map(String::as_str).collect()
    }

    /// The machine interface of `status --json` and `list --json`, frozen
    /// (names sorted; JSON key order carries no meaning). Changing this
    /// test is changing the interface: see `format::SCHEMA_VERSION` and
    /// docs/machine-interface.md.
    #[test]
    fn status_and_list_field_names_are_frozen() {
        const CREDENTIAL: [&str; 11] = [
            "auth",
            "consecutive_failures",
            "expires_at",
            "fetched_at",
            "fetches",
            "kind",
            "last_error",
            "name",
            "next_refresh",
            "scoped",
            "state",
        ];
        let v: Value = serde_json::from_str(&status_json(&status()).unwrap()).unwrap();
        assert_eq!(
            keys(&v),
            [
                "cache_key",
                "cache_path",
                "config_error",
                "config_path",
                "credentials",
                "daemon_version",
                "dumpable",
                "pid",
                "protocol_version",
                "requests_served",
                "schema_version",
                "sdk",
                "socket",
                "sources",
                "sources_not_shown",
                "started_at",
                "uptime_secs",
                "warnings",
            ]
        );
        assert_eq!(keys(&v["credentials"][0]), CREDENTIAL);
        let v: Value = serde_json::from_str(&status_json(&with_sources()).unwrap()).unwrap();
        assert_eq!(
            keys(&v["sources"][0]),
            [
                "expires_at",
                "fetched_at",
                "fetches",
                "last_error",
                "shared_by",
                "source",
                "state"
            ]
        );

        let list: Value =
            serde_json::from_str(&credentials_json(&status().credentials).unwrap()).unwrap();
        let mut want = CREDENTIAL.to_vec();
        want.push("schema_version");
        want.sort_unstable();
        assert_eq!(keys(&list[0]), want);
    }
}
