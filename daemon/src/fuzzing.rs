//! The fuzz targets' bodies, shared by `fuzz/` (cargo fuzz, libFuzzer) and
//! the corpus replay test (`daemon/tests/fuzz_corpus.rs`, stable, in CI).
//!
//! Each target takes arbitrary bytes, runs one parser on them, and panics
//! when an invariant breaks, not only when the parser panics: errors are one
//! line and never quote a token, a parsed expiry is never "forever", a frame
//! decodes to what it encodes back to. The checks live here, beside the
//! parsers they reach into, so that the fuzzers and the replay cannot drift
//! apart. Nothing else in the daemon uses this module.

mod checks;

use std::io::{self, Read};
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use credcache_shared::codec::{self, CodecError, MAX_FRAME};
use credcache_shared::config::Config;
use credcache_shared::protocol::{Request, Response};
use credcache_shared::time::{format_rfc3339, parse_rfc3339};
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use serde::Serialize;
use serde::de::DeserializeOwned;

use self::checks::{assert_no_token, assert_one_line, is_layout_control};
use crate::http::{self, Answer};
use crate::providers::azure::{azd, cli, managed_identity};
use crate::providers::google::{executable, external};
use crate::providers::{
    ErrorClass, FetchError, Fetched, MAX_LIFETIME, apim, command, container_app, gke,
    token_response,
};
use crate::schedule;

/// A target's body: bytes in, a panic if an invariant breaks.
pub type Target = fn(&[u8]);

/// Every target by the name of its `fuzz/fuzz_targets/NAME.rs` and its
/// corpus directory `fuzz/corpus/NAME/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("frame_decoder", frame_decoder),
    ("config_parser", config_parser),
    ("timestamp", timestamp),
    ("token_response", token_response),
    ("gke_answer", gke_answer),
    ("container_app_answer", container_app_answer),
    ("apim_answer", apim_answer),
    ("azure_cli_output", azure_cli_output),
    ("command_output", command_output),
    ("error_answer", error_answer),
    ("sanitize", sanitize),
    ("external_account", external_account),
    ("azd_output", azd_output),
    ("managed_identity_answer", managed_identity_answer),
];

/// The instant the provider parsers run at: fixed, so a corpus file means
/// the same thing on every run.
pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_748_736_000, 0).expect("2025-06-01T00:00:00Z")
}

/// The whole input as one message body (`from_slice`), and as a stream of
/// frames (`read_frame`) delivered in pieces: the first byte picks the
/// piece size (low nibble, 0 = all at once) and whether reads are
/// interrupted (bit 4), the rest is the stream.
pub fn frame_decoder(data: &[u8]) {
    one_message::<Request>(data);
    in_place_request(data);
    one_message::<Response>(data);
    if let Some((&mode, stream)) = data.split_first() {
        frame_stream::<Request>(mode, stream);
        frame_stream::<Response>(mode, stream);
    }
}

fn one_message<T>(body: &[u8])
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    match codec::from_slice::<T>(body) {
        Ok(message) => {
            let again = codec::to_vec(&message).expect("a decoded message encodes again");
            let back: T = codec::from_slice(&again).expect("a re-encoded message decodes");
            assert!(back == message, "decode(encode(m)) != m for {message:?}");
        }
        Err(CodecError::TooLarge { len }) => {
            assert!(len == body.len() && len > MAX_FRAME, "TooLarge({len})");
        }
        Err(CodecError::Malformed(why)) => assert_one_line("malformed-frame message", &why, 600),
        Err(e) => panic!("from_slice cannot fail with {e:?}"),
    }
}

/// The daemon's reading of a request (a `Get` in place, a plain one
/// directly) says what the owned decoding says, or fails as it does.
fn in_place_request(body: &[u8]) {
    match (
        codec::decode_request(body),
        codec::from_slice::<Request>(body),
    ) {
        (Ok(incoming), Ok(owned)) => {
            let read = incoming.into_request();
            assert!(
                read == owned,
                "read in place as {read:?}, owned as {owned:?}"
            );
        }
        (Err(_), Err(_)) => {}
        (read, owned) => panic!("read in place: {read:?}; owned: {owned:?}"),
    }
}

fn frame_stream<T>(mode: u8, stream: &[u8])
where
    T: DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let mut reader = Pieces {
        data: stream,
        pos: 0,
        piece: usize::from(mode & 0x0f),
        interrupt: mode & 0x10 != 0,
        interrupted: false,
    };
    let mut at = 0;
    // Each frame read takes at least its 4-byte header, so this ends.
    loop {
        let rest = &stream[at..];
        let announced = rest
            .get(..4)
            .map(|h| u32::from_le_bytes(h.try_into().expect("4 bytes")) as usize);
        match codec::read_frame::<_, T>(&mut reader) {
            Ok(None) => {
                assert!(rest.is_empty(), "clean end with {} bytes left", rest.len());
                return;
            }
            Ok(Some(message)) => {
                let len = announced.expect("a frame has a header");
                assert!(len <= MAX_FRAME, "a {len}-byte frame was read");
                let body = &rest[4..4 + len];
                let direct = codec::from_slice::<T>(body).ok();
                assert!(
                    direct.as_ref() == Some(&message),
                    "read_frame != from_slice"
                );
                at += 4 + len;
                assert_eq!(reader.pos, at, "read_frame read past its frame");
            }
            Err(CodecError::TooLarge { len }) => {
                assert!(announced == Some(len) && len > MAX_FRAME, "TooLarge({len})");
                return;
            }
            Err(CodecError::Truncated) => {
                let whole = announced.is_some_and(|len| len <= MAX_FRAME && rest.len() >= 4 + len);
                assert!(!whole, "Truncated, but the whole frame was there");
                return;
            }
            Err(CodecError::Malformed(why)) => {
                let len = announced.expect("a malformed frame has a header");
                assert!(codec::from_slice::<T>(&rest[4..4 + len]).is_err());
                assert_one_line("malformed-frame message", &why, 600);
                return;
            }
            Err(CodecError::Io(e)) => panic!("read_frame gave an I/O error: {e}"),
        }
    }
}

/// A reader that hands out at most `piece` bytes per read (0: all), and
/// with `interrupt` fails every other read with `Interrupted`, as a signal
/// would.
struct Pieces<'a> {
    data: &'a [u8],
    pos: usize,
    piece: usize,
    interrupt: bool,
    interrupted: bool,
}

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.interrupt {
            self.interrupted = !self.interrupted;
            if self.interrupted {
                return Err(io::ErrorKind::Interrupted.into());
            }
        }
        let left = &self.data[self.pos..];
        let mut n = buf.len().min(left.len());
        if self.piece > 0 {
            n = n.min(self.piece);
        }
        buf[..n].copy_from_slice(&left[..n]);
        self.pos += n;
        Ok(n)
    }
}

/// The input, made UTF-8 the way a config with stray bytes would be shown,
/// as a config file.
pub fn config_parser(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("/home/u/.config/credcache/config.toml");
    let parsed = Config::parse(&text, path);
    assert!(
        parsed == Config::parse(&text, path),
        "parsing is not deterministic"
    );
    match parsed {
        Ok(config) => checks::valid_config(&config),
        Err(e) => {
            assert!(!e.problems.is_empty(), "an error with no problem in it");
            assert_eq!(e.file, path);
            for p in &e.problems {
                assert!(!p.at.is_empty() && !p.message.is_empty(), "{p:?}");
            }
            for line in e.lines() {
                assert_one_line("config problem", &line, 8 * 1024);
            }
            assert_one_line("config error", &e.to_string(), 8 * 1024);
        }
    }
}

/// The input as a timestamp: what parses writes back in the one form and
/// reads back to the same instant.
pub fn timestamp(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match parse_rfc3339("expirationTime", &text) {
        Ok(t) => {
            let written = format_rfc3339(t);
            assert!(written.is_ascii() && written.ends_with('Z'), "{written}");
            let digits = written.split_once('.').map_or(0, |(_, f)| f.len() - 1);
            assert!([0, 3, 6, 9].contains(&digits), "{written}");
            let back = parse_rfc3339("t", &written);
            assert!(back == Ok(t), "{text:?} -> {written} -> {back:?}");
            // The 7-digit form sent to API Management reads back to 100 ns;
            // a leap second, which .NET cannot write, as the tick before it.
            let dotnet = apim::format_dotnet(t);
            let back = parse_rfc3339("t", &dotnet).expect("the .NET form reads back");
            let lost = t - back;
            let most = if t.timestamp_subsec_nanos() >= 1_000_000_000 {
                TimeDelta::seconds(1)
            } else {
                TimeDelta::nanoseconds(100)
            };
            assert!(
                lost >= TimeDelta::zero() && lost < most,
                "{written} -> {dotnet} lost {lost}"
            );
        }
        Err(e) => {
            assert_eq!(e.field, "expirationTime");
            assert_eq!(e.value, text.chars().take(64).collect::<String>());
            assert_one_line("timestamp error", &e.to_string(), 1024);
        }
    }
}

fn success(what: &str, body: &[u8]) -> Answer {
    Answer {
        what: what.to_owned(),
        status: 200,
        headers: HeaderMap::new(),
        body: body.to_vec(),
    }
}

/// The input as the body of a 200 from an OAuth token endpoint.
pub fn token_response(data: &[u8]) {
    let answer = success("google token endpoint", data);
    fetched(data, token_response::parse(&answer, now()));
}

/// The input as the body of a 200 from gkemulticloud.
pub fn gke_answer(data: &[u8]) {
    fetched(data, gke::parse(&success("gkemulticloud", data), now()));
}

/// The input as the body of a 200 from Container Apps' `getAuthtoken`.
pub fn container_app_answer(data: &[u8]) {
    fetched(
        data,
        container_app::parse(&success("container apps", data), now()),
    );
}

/// The input as the body of a 200 from API Management's user token action,
/// for a token asked to live the longest lifetime the API grants.
pub fn apim_answer(data: &[u8]) {
    let asked = now() + TimeDelta::days(30);
    let result = apim::parse(&success("api management", data), asked, now());
    if let Ok(f) = &result {
        assert!(f.expires_at <= asked + TimeDelta::minutes(1) && f.expires_at > now());
    }
    fetched(data, result);
}

/// The input as what `az account get-access-token -o json` printed.
pub fn azure_cli_output(data: &[u8]) {
    fetched(data, cli::parse_output(data, now()));
}

/// The input as what `azd auth token --output json` printed.
pub fn azd_output(data: &[u8]) {
    fetched(data, azd::parse_output(data, now()));
}

/// The input as a managed-identity endpoint's words: a first line as
/// Azure Arc's `WWW-Authenticate` challenge (the path it names is read
/// only if it is a `.key` file under the token directory, with no `..`),
/// the rest as the body of a 200 from App Service's 2017 API (its
/// `expires_on` a date).
pub fn managed_identity_answer(data: &[u8]) {
    let (head, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let dir = Path::new(managed_identity::DEFAULT_ARC_TOKEN_DIR);
    let header = String::from_utf8_lossy(head);
    if let Some(realm) = managed_identity::challenge_path(&header) {
        match managed_identity::checked_challenge_file(&realm, dir) {
            Ok(path) => {
                assert!(path.starts_with(dir), "{} is outside", path.display());
                assert!(path.extension().is_some_and(|e| e == "key"));
                assert!(!path.components().any(|c| matches!(
                    c,
                    std::path::Component::ParentDir | std::path::Component::CurDir
                )));
            }
            Err(e) => assert_one_line("arc refusal", &e.message, 1024),
        }
    }
    let result = managed_identity::parse_2017(success("app service 2017", body), now());
    fetched(body, result);
}

/// The input as what a `command` credential's program printed. A first
/// line of digits is taken as the configured `lifetime` in seconds (the
/// rest is the output); without one, the lifetime is an hour.
pub fn command_output(data: &[u8]) {
    let (lifetime, out) = match data.iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && data[..i].iter().all(u8::is_ascii_digit) => {
            let secs = std::str::from_utf8(&data[..i])
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(u64::MAX);
            (Duration::from_secs(secs), &data[i + 1..])
        }
        _ => (Duration::from_secs(3600), data),
    };
    // The parser reads the output trimmed: so must the token check.
    let read = std::str::from_utf8(out).map_or(out, |s| s.trim().as_bytes());
    fetched(read, command::parse_output("vault", out, now(), lifetime));
}

/// The input as what an `external_account` file's `executable` source
/// printed (or left in its `output_file`), and as the file itself: a token
/// that is not empty and not expired, or a one-line error quoting no
/// token; a file's source read or refused in one line.
pub fn external_account(data: &[u8]) {
    executable_output(data, now().timestamp());
    external_file(data);
    impersonated_file(data);
}

/// The executable's answer, as read after a run (no `output_file`) and
/// from an `output_file` (which needs `expiration_time`).
fn executable_output(data: &[u8], at: i64) {
    let plain = executable::parse_response(data, at, false);
    let strict = executable::parse_response(data, at, true);
    for result in [&plain, &strict] {
        match result {
            Ok(s) => {
                assert!(!s.token.is_empty(), "an empty token");
                if let Some(e) = s.expires {
                    assert!(e > at, "an expired token was taken");
                }
            }
            Err(m) => {
                assert_one_line("executable output error", m, 400);
                assert_no_token(m, data, checks::Body::Success);
            }
        }
    }
    match (&plain, &strict) {
        (Ok(p), Ok(s)) => {
            assert!(s.expires.is_some(), "no expiry with an output file");
            assert!(p.token == s.token && p.expires == s.expires, "reads differ");
        }
        (Err(_), Ok(_)) => panic!("an output file's answer was taken, the same after a run not"),
        (Ok(p), Err(m)) => assert!(
            p.expires.is_none() && m.contains("no expiration_time"),
            "only a missing expiry may refuse an output file: {m}"
        ),
        (Err(a), Err(b)) => assert_eq!(a, b, "the same answer, two errors"),
    }
    // The token is the field the token type names, as the JSON says.
    if let Ok(s) = &plain {
        let v: serde_json::Value = serde_json::from_slice(data).expect("it parsed");
        let field = match v["token_type"].as_str() {
            Some("urn:ietf:params:oauth:token-type:saml2") => "saml_response",
            _ => "id_token",
        };
        assert_eq!(v[field].as_str(), Some(s.token.as_str()), "not its {field}");
        assert_eq!(v["success"], serde_json::Value::Bool(true));
        assert_eq!(v["version"].as_u64(), Some(1));
    }
}

/// The input as an `external_account` file: its credential source and
/// where its impersonation call would go.
fn external_file(data: &[u8]) {
    let path = Path::new("wif.json");
    let file = match external::ExternalFile::parse(data, path) {
        Ok(file) => file,
        Err(e) => {
            key_file_error(&e, data);
            return;
        }
    };
    let cs = &file.credential_source;
    match file.subject_source(path) {
        Ok(external::SubjectSource::File { path, .. }) => {
            assert_eq!(cs["file"].as_str(), Some(path.as_str()));
        }
        Ok(external::SubjectSource::Url { url, headers, .. }) => {
            assert_eq!(cs["url"].as_str(), Some(url.as_str()));
            for (k, v) in headers {
                assert_eq!(cs["headers"][&k].as_str(), Some(v.as_str()));
            }
        }
        Ok(external::SubjectSource::Executable(exe)) => {
            assert!(
                !exe.command.is_empty() && exe.command.trim() == exe.command,
                "command {:?}",
                exe.command
            );
            assert!(
                (Duration::from_secs(5)..=Duration::from_secs(120)).contains(&exe.timeout),
                "timeout {:?}",
                exe.timeout
            );
            assert!(exe.output_file.as_ref().is_none_or(|f| !f.is_empty()));
        }
        Err(e) => {
            assert!(
                e.message.starts_with("key file wif.json: "),
                "{}",
                e.message
            );
            key_file_error(&e, data);
        }
    }
    let email = file.impersonated_email();
    if let Some(email) = email {
        assert!(
            !email.is_empty() && !email.contains(['/', ':']),
            "{email:?}"
        );
    }
    if let Some(url) = &file.service_account_impersonation_url {
        impersonation_url(url, email);
    }
}

/// Where a `generateAccessToken` call for `url` goes, if credcache takes
/// the URL: the host the URL names, over TLS unless to loopback, for the
/// account the executable is told it impersonates.
fn impersonation_url(url: &str, told: Option<&str>) {
    use crate::providers::authorized::resource_url;
    use crate::providers::google::impersonation::split_impersonation_url;

    let Some((base, email)) = split_impersonation_url(url) else {
        return;
    };
    assert_eq!(
        credcache_shared::config::service_account_email(&email),
        Some(email.as_str()),
        "not a service account: {email:?}"
    );
    assert_eq!(
        told,
        Some(email.as_str()),
        "the executable is told another account"
    );
    let named = reqwest::Url::parse(url).expect("it was parsed");
    let last = format!("{email}:generateAccessToken");
    let call = resource_url(
        &base,
        &["v1", "projects", "-", "serviceAccounts", &last],
        &[],
    )
    .unwrap_or_else(|e| panic!("{url:?}: base {base:?}: {}", e.message));
    assert_eq!(
        (call.scheme(), call.host(), call.port_or_known_default()),
        (named.scheme(), named.host(), named.port_or_known_default()),
        "{url:?} is called at {call}"
    );
    assert!(
        call.scheme() == "https"
            || call
                .host()
                .is_some_and(|h| credcache_shared::host_pattern::is_loopback(&h)),
        "{url:?} is called at {call}, not over TLS"
    );
    assert!(
        call.path()
            .ends_with(&format!("/v1/projects/-/serviceAccounts/{last}")),
        "{url:?} is called at {call}"
    );
}

/// The input as an `impersonated_service_account` ADC file.
fn impersonated_file(data: &[u8]) {
    use crate::providers::google::impersonation::ImpersonatedFile;

    match ImpersonatedFile::parse(data, Path::new("adc.json")) {
        Ok(f) => {
            let email = credcache_shared::config::service_account_email(&f.target);
            assert_eq!(email, Some(f.target.as_str()), "target {:?}", f.target);
            for d in &f.delegates {
                let email = d.strip_prefix("projects/-/serviceAccounts/");
                assert!(
                    email.is_some_and(
                        |e| credcache_shared::config::service_account_email(e) == Some(e)
                    ),
                    "delegate {d:?}"
                );
            }
            let kind = f.source["type"].as_str();
            assert!(
                matches!(kind, Some("service_account" | "authorized_user")),
                "source_credentials of type {kind:?}"
            );
            assert!(f.quota_project.as_ref().is_none_or(|q| !q.is_empty()));
        }
        Err(e) => {
            assert!(e.message.starts_with("key file adc.json"), "{}", e.message);
            key_file_error(&e, data);
        }
    }
}

/// An error about a key file: a config error, one line, quoting no secret
/// of the file (tokens, private keys, client secrets).
fn key_file_error(e: &FetchError, data: &[u8]) {
    assert_eq!(e.class, ErrorClass::Config, "{}", e.message);
    assert_one_line("key file error", &e.message, 600);
    // The messages' own words that are as long as a token run (field
    // paths, the URL shape): not quoted from the input.
    const OWN_WORDS: &[&str] = &[
        "//HOST/v1/projects/-/serviceAccounts/EMAIL",
        "credential_source.executable.timeout_millis",
        "credential_source.executable.output_file",
        "credential_source.format.type",
        "service_account_impersonation_url",
        "subject_token_field_name",
    ];
    let own = OWN_WORDS
        .iter()
        .fold(e.message.clone(), |m, w| m.replace(w, " "));
    assert_no_token(&own, data, checks::Body::Error);
}

/// What every provider parser promises: a token that is not empty and
/// expires within [`MAX_LIFETIME`], or a one-line, transient error that
/// quotes no token.
fn fetched(input: &[u8], result: Result<Fetched, FetchError>) {
    match result {
        Ok(f) => {
            assert!(!f.token.is_empty(), "an empty token");
            assert!(
                f.expires_at <= now() + MAX_LIFETIME,
                "a token that lives \"forever\": it expires {}",
                format_rfc3339(f.expires_at)
            );
        }
        Err(e) => {
            assert_eq!(e.class, ErrorClass::Transient, "{}", e.message);
            assert_one_line("parse error", &e.message, 1024);
            assert_no_token(&e.message, input, checks::Body::Success);
        }
    }
}

/// The input as a non-success answer: a first line `STATUS [RETRY-AFTER]`,
/// then the body.
pub fn error_answer(data: &[u8]) {
    let (head, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut words = head.splitn(2, ' ');
    // Any status but a success, which is never handed to `error`.
    let status = match words.next().and_then(|s| s.trim().parse::<u16>().ok()) {
        Some(s @ 300..=599) => s,
        Some(s) => 400 + s % 200,
        None => 500,
    };
    let mut headers = HeaderMap::new();
    if let Some(value) = words.next().and_then(|v| HeaderValue::from_str(v).ok()) {
        headers.insert(RETRY_AFTER, value);
    }
    let what = "entra token endpoint";
    let answer = Answer {
        what: what.to_owned(),
        status,
        headers,
        body: body.to_vec(),
    };
    let e = answer.error(now());
    assert_eq!(e.status, Some(status));
    assert!(
        e.message.starts_with(&format!("{what} answered {status}")),
        "{}",
        e.message
    );
    assert_one_line("error answer", &e.message, what.len() + 600);
    assert_no_token(&e.message, body, checks::Body::Error);
    let class_ok = match status {
        401 | 403 => matches!(e.class, ErrorClass::Unauthorized | ErrorClass::Permanent),
        300..=399 | 408 | 429 | 500..=599 => {
            matches!(e.class, ErrorClass::Transient | ErrorClass::Permanent)
        }
        _ => matches!(e.class, ErrorClass::Permanent | ErrorClass::Rejected),
    };
    assert!(class_ok, "{status} classed {:?}", e.class);
    if let Some(after) = e.retry_after {
        assert!(after <= http::MAX_RETRY_AFTER, "Retry-After of {after:?}");
        // What the engine does with it: neither may overflow.
        for failures in [1, 2, 64, u32::MAX] {
            schedule::retry_at(now(), failures, 0.999, Some(after));
        }
        let hold = TimeDelta::from_std(after).expect("a capped Retry-After fits");
        assert!(now().checked_add_signed(hold).is_some());
    }
    if let Err(e) = answer.json::<serde_json::Value>() {
        assert_one_line("unreadable error body", &e.message, what.len() + 600);
        assert_no_token(&e.message, body, checks::Body::Error);
    }
}

/// `http::sanitize` with the first byte as `max` and the rest as the text.
pub fn sanitize(data: &[u8]) {
    let Some((&max, text)) = data.split_first() else {
        return;
    };
    let max = usize::from(max);
    let text = String::from_utf8_lossy(text);
    let out = http::sanitize(&text, max);
    assert!(out.chars().count() <= max + 1, "{out:?} is over {max} + 1");
    for c in out.chars() {
        assert!(!c.is_control() && !is_layout_control(c), "{c:?} in {out:?}");
    }
    assert!(!out.contains("  "), "a run of spaces in {out:?}");
    assert_eq!(out, out.trim(), "untrimmed");
    assert_eq!(http::sanitize(&out, max + 1), out, "not idempotent");
}
