//! The config validator: a TOML table in, a [`Config`] or every problem out.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use toml::{Table, Value};

use super::keys;
use super::*;
use crate::host_pattern::{HostPattern, PathPrefix, is_loopback};
use crate::paths::expand_tilde;

type Problems = Vec<Problem>;

pub(super) fn parse(text: &str) -> Result<Config, Problems> {
    let root: Table = text
        .parse()
        .map_err(|e: toml::de::Error| vec![syntax_problem(text, &e)])?;
    let mut top = Fields::new(&root, "", keys::TOP);

    let daemon = match top.table("daemon") {
        Some(t) => {
            let mut f = top.child(t, "daemon", keys::DAEMON);
            let settings = parse_daemon(&mut f);
            top.absorb(f);
            settings
        }
        None => DaemonSettings::default(),
    };

    let mut credentials = BTreeMap::new();
    if let Some(creds) = top.table("credentials") {
        // Every key here is a credential's name, checked by `check_name`.
        let mut creds_fields = top.child(creds, "credentials", &[]);
        creds_fields.known = None;
        for (name, value) in creds {
            let at = format!("credentials.{}", shown_key(name));
            if let Err(why) = check_name(name) {
                creds_fields.problems.push(Problem {
                    at: at.clone(),
                    message: why.to_string(),
                });
            }
            let Some(table) = value.as_table() else {
                creds_fields.problems.push(Problem {
                    at,
                    message: "must be a table ([credentials.NAME])".into(),
                });
                continue;
            };
            let mut f = creds_fields.sibling(table, &at, keys::CREDENTIAL);
            if let Some(cred) = parse_credential(name, &mut f) {
                credentials.insert(name.clone(), Arc::new(cred));
            }
            creds_fields.absorb(f);
        }
        top.absorb(creds_fields);
    }
    for builtin in ["google", "azure"] {
        if !credentials.contains_key(builtin)
            && !top
                .problems
                .iter()
                .any(|p| p.at.starts_with(&format!("credentials.{builtin}")))
        {
            let mut cred = parse_credential(
                builtin,
                &mut Fields::new(&builtin_table(builtin), "", keys::CREDENTIAL),
            )
            .expect("built-in credential is valid");
            cred.builtin = true;
            credentials.insert(builtin.to_owned(), Arc::new(cred));
        }
    }

    let git = top
        .array_of_tables("git")
        .into_iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let mut f = top.child(t, &format!("git[{i}]"), keys::GIT);
            let helper = parse_git(&mut f);
            top.absorb(f);
            helper
        })
        .collect::<Vec<_>>();
    let docker = top
        .array_of_tables("docker")
        .into_iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let mut f = top.child(t, &format!("docker[{i}]"), keys::DOCKER);
            let helper = parse_docker(&mut f);
            top.absorb(f);
            helper
        })
        .collect::<Vec<_>>();

    let mut problems = top.finish();
    check_auth_references(
        root.get("credentials").and_then(Value::as_table),
        &mut problems,
    );
    check_helper_references(&credentials, &git, &docker, &mut problems);
    if problems.is_empty() {
        Ok(Config {
            daemon,
            credentials,
            git,
            docker,
        })
    } else {
        Err(problems)
    }
}

fn builtin_table(name: &str) -> Table {
    let mut t = Table::new();
    t.insert("kind".into(), Value::String(name.into()));
    t
}

fn syntax_problem(text: &str, e: &toml::de::Error) -> Problem {
    let at = match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}")
        }
        None => "syntax".into(),
    };
    Problem {
        at,
        message: format!("invalid TOML: {}", e.message().trim().replace('\n', " ")),
    }
}

/// Reads the keys of one table, collecting problems as it goes; keys not
/// in its [`keys`] lists are reported as unknown.
struct Fields<'t> {
    table: &'t Table,
    prefix: String,
    /// The lists of keys this table accepts; `None`: any key (the
    /// credentials' names).
    known: Option<Vec<&'static [&'static str]>>,
    problems: Problems,
    /// Shared by every table of one parse.
    urls: UrlMemo,
}

/// What [`check_url`] said of each URL, by URL, for one parse: 10,000
/// credentials may name a handful of endpoints, and URL parsing was a
/// fifteenth of such a config's start-up (BENCHMARKS.md, issue 15).
type UrlMemo = Rc<RefCell<HashMap<String, Result<String, String>>>>;

impl<'t> Fields<'t> {
    fn new(table: &'t Table, prefix: &str, known: &'static [&'static str]) -> Self {
        Self {
            table,
            prefix: prefix.to_owned(),
            known: Some(vec![known]),
            problems: Vec::new(),
            urls: UrlMemo::default(),
        }
    }

    fn child(&self, table: &'t Table, key: &str, known: &'static [&'static str]) -> Fields<'t> {
        self.sibling(table, &self.at(key), known)
    }

    /// Fields of another table at `prefix`, in the same parse.
    fn sibling(
        &self,
        table: &'t Table,
        prefix: &str,
        known: &'static [&'static str],
    ) -> Fields<'t> {
        Fields {
            urls: self.urls.clone(),
            ..Fields::new(table, prefix, known)
        }
    }

    /// Accepts the keys of `list` too (a credential's, once its kind is
    /// known).
    fn also_know(&mut self, list: &'static [&'static str]) {
        if let Some(known) = &mut self.known {
            known.push(list);
        }
    }

    fn knows(&self, key: &str) -> bool {
        self.known
            .as_ref()
            .is_none_or(|lists| lists.iter().any(|l| l.contains(&key)))
    }

    fn at(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    fn problem(&mut self, key: &str, message: impl Into<String>) {
        let at = self.at(key);
        self.problems.push(Problem {
            at,
            message: message.into(),
        });
    }

    fn absorb(&mut self, other: Fields<'_>) {
        self.problems.extend(other.finish());
    }

    fn get(&mut self, key: &str) -> Option<&'t Value> {
        debug_assert!(
            self.knows(key),
            "{key:?} is read but not listed in config::keys"
        );
        self.table.get(key)
    }

    fn typed<T>(
        &mut self,
        key: &str,
        want: &str,
        conv: impl Fn(&'t Value) -> Option<T>,
    ) -> Option<T> {
        let v = self.get(key)?;
        let out = conv(v);
        if out.is_none() {
            self.problem(key, format!("must be {want}, not {}", v.type_str()));
        }
        out
    }

    fn table(&mut self, key: &str) -> Option<&'t Table> {
        self.typed(key, "a table", Value::as_table)
    }

    fn array_of_tables(&mut self, key: &str) -> Vec<&'t Table> {
        let Some(arr) = self.typed(key, "an array of tables", Value::as_array) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, v) in arr.iter().enumerate() {
            match v.as_table() {
                Some(t) => out.push(t),
                None => self.problem(&format!("{key}[{i}]"), "must be a table ([[...]])"),
            }
        }
        out
    }

    fn opt_str(&mut self, key: &str) -> Option<String> {
        let s = self.typed(key, "a string", Value::as_str)?;
        if s.trim().is_empty() {
            self.problem(key, "must not be empty");
            return None;
        }
        Some(s.to_owned())
    }

    fn req_str(&mut self, key: &str, kind: &str) -> Option<String> {
        if !self.table.contains_key(key) {
            self.problem(key, format!("is required for kind {kind:?}"));
            return None;
        }
        self.opt_str(key)
    }

    fn opt_bool(&mut self, key: &str) -> Option<bool> {
        self.typed(key, "true or false", Value::as_bool)
    }

    fn opt_f64(&mut self, key: &str) -> Option<f64> {
        self.typed(key, "a number", |v| {
            v.as_float().or_else(|| v.as_integer().map(|i| i as f64))
        })
    }

    fn opt_duration(&mut self, key: &str) -> Option<Duration> {
        let s = self.typed(key, "a duration string such as \"5m\"", Value::as_str)?;
        match crate::time::parse_duration(s) {
            Ok(d) => Some(d),
            Err(why) => {
                self.problem(
                    key,
                    format!("{why}; write it like \"90s\", \"5m\" or \"8h\""),
                );
                None
            }
        }
    }

    fn opt_str_array(&mut self, key: &str) -> Option<Vec<String>> {
        let arr = self.typed(key, "an array of strings", Value::as_array)?;
        let strings: Option<Vec<String>> =
            arr.iter().map(|v| v.as_str().map(str::to_owned)).collect();
        if strings.is_none() {
            self.problem(key, "must be an array of strings");
        }
        strings
    }

    fn opt_url(&mut self, key: &str) -> Option<String> {
        let s = self.opt_str(key)?;
        let checked = self
            .urls
            .borrow_mut()
            .entry(s)
            .or_insert_with_key(|s| check_url(s).map_err(|why| why.to_string()))
            .clone();
        match checked {
            Ok(url) => Some(url),
            Err(why) => {
                self.problem(key, why);
                None
            }
        }
    }

    fn opt_uuid(&mut self, key: &str, kind: &str, required: bool) -> Option<String> {
        let s = if required {
            self.req_str(key, kind)?
        } else {
            self.opt_str(key)?
        };
        if !is_uuid(&s) {
            self.problem(
                key,
                format!("{s:?} is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"),
            );
            return None;
        }
        Some(s.to_ascii_lowercase())
    }

    fn req_segment(&mut self, key: &str, kind: &str) -> Option<String> {
        let s = self.req_str(key, kind)?;
        if let Some(bad) = s.chars().find(|c| {
            matches!(c, '/' | '?' | '#' | '%' | '\\') || c.is_whitespace() || c.is_control()
        }) {
            self.problem(
                key,
                format!("{s:?} contains {bad:?}, which cannot appear in a resource name"),
            );
            return None;
        }
        Some(s)
    }

    /// Reports every key this table does not accept as unknown, with the
    /// known key it is likely a typo of.
    fn finish(mut self) -> Problems {
        let Some(known) = &self.known else {
            return self.problems;
        };
        let mut unknown: Vec<&String> = self
            .table
            .keys()
            .filter(|k| !known.iter().any(|l| l.contains(&k.as_str())))
            .collect();
        unknown.sort();
        for key in unknown {
            let message = match keys::suggest(key, known.iter().flat_map(|l| l.iter().copied())) {
                Some(near) => format!("unknown key; did you mean `{near}`?"),
                None => "unknown key".to_owned(),
            };
            let at = self.at(&shown_key(key));
            self.problems.push(Problem { at, message });
        }
        self.problems
    }
}

fn parse_daemon(f: &mut Fields<'_>) -> DaemonSettings {
    let mut d = DaemonSettings::default();
    if let Some(v) = f.opt_duration("refresh_ahead") {
        d.refresh_ahead = v;
    }
    if let Some(v) = f.opt_f64("refresh_fraction") {
        if (0.0..1.0).contains(&v) {
            d.refresh_fraction = v;
        } else {
            f.problem("refresh_fraction", format!("{v} is not between 0 and 1"));
        }
    }
    if let Some(v) = f.opt_duration("min_valid") {
        d.min_valid = v;
    }
    if let Some(v) = f.opt_duration("idle_timeout") {
        d.idle_timeout = v;
    }
    if let Some(v) = f.opt_duration("http_timeout") {
        if v.is_zero() {
            f.problem("http_timeout", "must be more than zero");
        } else {
            d.http_timeout = v;
        }
    }
    if let Some(command) = f.opt_str_array("on_reauth") {
        if command.first().is_none_or(|p| p.trim().is_empty()) {
            f.problem(
                "on_reauth",
                "must name a program: [\"PROGRAM\", \"ARG\", ...]",
            );
        } else {
            d.on_reauth = command;
        }
    }
    d
}

fn parse_credential(name: &str, f: &mut Fields<'_>) -> Option<Credential> {
    let kind = match f.get("kind") {
        None => {
            f.problem("kind", format!("is required: one of {}", KINDS.join(", ")));
            None
        }
        Some(Value::String(k)) if KINDS.contains(&k.as_str()) => Some(k.as_str()),
        Some(v) => {
            f.problem(
                "kind",
                format!("unknown kind {}: expected one of {}", v, KINDS.join(", ")),
            );
            None
        }
    };
    let refresh_ahead = f.opt_duration("refresh_ahead");
    let min_valid = f.opt_duration("min_valid");
    let prefetch = f.opt_bool("prefetch").unwrap_or(false);
    let env_var = match f.opt_str("env_var") {
        Some(v) => match crate::env_var::problem(&v) {
            None => Some(v),
            Some(why) => {
                f.problem("env_var", why);
                None
            }
        },
        None => None,
    };
    match kind.and_then(keys::of_kind) {
        Some(list) => f.also_know(list),
        // Until the kind is right, any kind's keys are fine: they are
        // not the problem.
        None => {
            for kind in KINDS {
                f.also_know(keys::of_kind(kind).expect("every kind has keys"));
            }
        }
    }
    let source = match kind? {
        "google" => Source::Google(parse_google(f)?),
        "google-id-token" => Source::GoogleIdToken(parse_google_id_token(f)?),
        "azure" => Source::Azure(parse_azure(f)?),
        "gke-cluster" => Source::GkeCluster(parse_gke(f)?),
        "container-app" => Source::ContainerApp(parse_container_app(f)?),
        "apim-user-token" => Source::ApimUserToken(parse_apim(f)?),
        "command" => Source::Command(parse_command(f)?),
        _ => unreachable!("checked against KINDS above"),
    };
    Some(Credential {
        name: name.to_owned(),
        source,
        refresh_ahead,
        min_valid,
        prefetch,
        env_var: env_var.unwrap_or_else(|| default_env_var(name)).into(),
        builtin: false,
    })
}

/// Runs every check and only then gives up, so all problems are reported.
macro_rules! all_ok {
    ($($v:ident),+) => { ($($v?),+) };
}

fn parse_google(f: &mut Fields<'_>) -> Option<GoogleSettings> {
    let key_file = f.opt_str("key_file").map(|p| expand_tilde(&p));
    let scopes = f.opt_str_array("scopes");
    if scopes.as_ref().is_some_and(Vec::is_empty) {
        f.problem("scopes", "must name at least one scope");
    }
    let token_uri = f.opt_url("token_uri");
    let metadata_host = f.opt_str("metadata_host");
    if let Some(h) = &metadata_host
        && (h.contains("://") || h.contains('/'))
    {
        f.problem(
            "metadata_host",
            format!("{h:?} must be a host or host:port, without scheme or path"),
        );
    }
    let impersonate_service_account = f.opt_str("impersonate_service_account");
    if let Some(sa) = &impersonate_service_account
        && service_account_email(sa).is_none()
    {
        f.problem(
            "impersonate_service_account",
            format!("{sa:?} is not a service account email (NAME@PROJECT.iam.gserviceaccount.com)"),
        );
    }
    let delegates = f.opt_str_array("delegates").unwrap_or_default();
    let delegates: Vec<String> = delegates
        .iter()
        .filter_map(|d| match service_account_email(d) {
            Some(email) => Some(format!("projects/-/serviceAccounts/{email}")),
            None => {
                f.problem(
                    "delegates",
                    format!(
                        "{d:?} is not a service account email or projects/-/serviceAccounts/EMAIL"
                    ),
                );
                None
            }
        })
        .collect();
    let lifetime = f.opt_duration("lifetime");
    match lifetime {
        Some(d) if d.is_zero() => f.problem("lifetime", "must be more than zero"),
        Some(d) if d > GOOGLE_MAX_IMPERSONATION_LIFETIME => {
            f.problem("lifetime", "is over the 12h generateAccessToken grants")
        }
        _ => {}
    }
    let iam_endpoint = f.opt_url("iam_endpoint");
    let oauth_client_file = f.opt_str("oauth_client_file").map(|p| expand_tilde(&p));
    if oauth_client_file.is_some() {
        for key in ["key_file", "impersonate_service_account"] {
            if f.table.contains_key(key) {
                f.problem(
                    key,
                    "cannot be combined with oauth_client_file (a user signed in with `credcache login`)",
                );
            }
        }
    }
    // `lifetime` also applies to an `impersonated_service_account` key
    // file (gcloud writes none in it): `Config::load` checks the file.
    if impersonate_service_account.is_none() {
        for key in ["delegates", "iam_endpoint"] {
            if f.table.contains_key(key) {
                f.problem(key, "applies only with impersonate_service_account");
            }
        }
    }
    Some(GoogleSettings {
        key_file,
        scopes: scopes.unwrap_or_else(|| vec![DEFAULT_GOOGLE_SCOPE.to_owned()]),
        token_uri,
        metadata_host,
        impersonate_service_account,
        delegates,
        lifetime,
        iam_endpoint,
        oauth_client_file,
    })
}

fn parse_google_id_token(f: &mut Fields<'_>) -> Option<GoogleIdTokenSettings> {
    let kind = "google-id-token";
    let auth = f.req_str("auth", kind);
    let audience = f.req_str("audience", kind);
    let include_email = f.opt_bool("include_email").unwrap_or(false);
    let (auth, audience) = all_ok!(auth, audience);
    Some(GoogleIdTokenSettings {
        auth,
        audience,
        include_email,
    })
}

fn parse_azure(f: &mut Fields<'_>) -> Option<AzureSettings> {
    let method = match f.opt_str("method").as_deref() {
        None | Some("auto") => Some(AzureMethod::Auto),
        Some("client-secret") => Some(AzureMethod::ClientSecret),
        Some("workload-identity") => Some(AzureMethod::WorkloadIdentity),
        Some("managed-identity") => Some(AzureMethod::ManagedIdentity),
        Some("cli") => Some(AzureMethod::Cli),
        Some("certificate") => Some(AzureMethod::Certificate),
        Some("azd") => Some(AzureMethod::Azd),
        Some("device-code") => Some(AzureMethod::DeviceCode),
        Some("browser") => Some(AzureMethod::Browser),
        Some(other) => {
            f.problem("method", format!("unknown method {other:?}: expected client-secret, certificate, workload-identity, managed-identity, cli, azd, device-code, browser or auto"));
            None
        }
    };
    if f.get("client_secret").is_some() {
        f.problem(
            "client_secret",
            "inline secrets are not allowed: use client_secret_env or client_secret_file",
        );
    }
    let tenant_id = f.opt_str("tenant_id");
    if let Some(t) = &tenant_id
        && !is_uuid(t)
        && !is_tenant_domain(t)
    {
        f.problem("tenant_id", format!("{t:?} is not a tenant UUID or domain"));
    }
    let client_id = f.opt_uuid("client_id", "azure", false);
    let secret_env = f.opt_str("client_secret_env");
    let secret_file = f.opt_str("client_secret_file");
    let client_secret = match (secret_env, secret_file) {
        (Some(_), Some(_)) => {
            f.problem(
                "client_secret_file",
                "set client_secret_env or client_secret_file, not both",
            );
            None
        }
        (Some(var), None) => Some(SecretSource::Env(var)),
        (None, Some(path)) => Some(SecretSource::File(expand_tilde(&path))),
        (None, None) => None,
    };
    if method == Some(AzureMethod::ClientSecret) {
        for (key, missing) in [
            ("tenant_id", tenant_id.is_none()),
            ("client_id", client_id.is_none()),
            ("client_secret_env", client_secret.is_none()),
        ] {
            if missing && !f.table.contains_key(key) {
                let what = if key == "client_secret_env" {
                    "client_secret_env or client_secret_file"
                } else {
                    key
                };
                f.problem(
                    key,
                    format!("{what} is required for method \"client-secret\""),
                );
            }
        }
    }
    let authority_host = f.opt_url("authority_host");
    let scope = f
        .opt_str("scope")
        .unwrap_or_else(|| DEFAULT_AZURE_SCOPE.to_owned());
    let identity_endpoint = f.opt_str("identity_endpoint");
    if let Some(e) = &identity_endpoint
        && url::Url::parse(e)
            .map(|u| !matches!(u.scheme(), "http" | "https"))
            .unwrap_or(true)
    {
        f.problem("identity_endpoint", format!("{e:?} is not an http(s) URL"));
    }
    let certificate_file = f.opt_str("certificate_file").map(|p| expand_tilde(&p));
    let certificate_password =
        secret_source(f, "certificate_password_env", "certificate_password_file");
    let send_certificate_chain = f.opt_bool("send_certificate_chain");
    if method == Some(AzureMethod::Certificate) {
        for (key, missing) in [
            ("tenant_id", tenant_id.is_none()),
            ("client_id", client_id.is_none()),
            ("certificate_file", certificate_file.is_none()),
        ] {
            if missing && !f.table.contains_key(key) {
                f.problem(key, format!("{key} is required for method \"certificate\""));
            }
        }
    }
    let object_id = f.opt_uuid("object_id", "azure", false);
    let mi_res_id = f.opt_str("mi_res_id");
    if let Some(id) = &mi_res_id
        && !is_arm_resource_id(id)
    {
        f.problem(
            "mi_res_id",
            format!(
                "{id:?} is not an ARM resource id (/subscriptions/SUB/resourceGroups/RG/providers/\
                 Microsoft.ManagedIdentity/userAssignedIdentities/NAME)"
            ),
        );
    }
    let user_assigned = [
        ("client_id", f.table.contains_key("client_id")),
        ("object_id", f.table.contains_key("object_id")),
        ("mi_res_id", f.table.contains_key("mi_res_id")),
    ];
    for key in ["object_id", "mi_res_id"] {
        if !f.table.contains_key(key) {
            continue;
        }
        if !matches!(
            method,
            Some(AzureMethod::ManagedIdentity | AzureMethod::Auto)
        ) {
            f.problem(key, "is for method \"managed-identity\" only");
        } else if user_assigned.iter().filter(|(_, set)| *set).count() > 1 {
            f.problem(
                key,
                "name the user-assigned identity once: client_id, object_id or mi_res_id",
            );
        }
    }
    let arc_token_dir = f.opt_str("arc_token_dir").map(|p| expand_tilde(&p));
    if let Some(dir) = &arc_token_dir
        && !dir.is_absolute()
    {
        f.problem(
            "arc_token_dir",
            format!("{:?} is not an absolute path", dir.display().to_string()),
        );
    }
    let method = method?;
    Some(AzureSettings {
        method,
        tenant_id,
        client_id,
        client_secret,
        authority_host,
        scope,
        identity_endpoint,
        certificate_file,
        certificate_password,
        send_certificate_chain,
        object_id,
        mi_res_id,
        arc_token_dir,
    })
}

/// A secret named by `env_key` (a variable) or `file_key` (a file), not
/// both; never inline.
fn secret_source(f: &mut Fields<'_>, env_key: &str, file_key: &str) -> Option<SecretSource> {
    match (f.opt_str(env_key), f.opt_str(file_key)) {
        (Some(_), Some(_)) => {
            f.problem(file_key, format!("set {env_key} or {file_key}, not both"));
            None
        }
        (Some(var), None) => Some(SecretSource::Env(var)),
        (None, Some(path)) => Some(SecretSource::File(expand_tilde(&path))),
        (None, None) => None,
    }
}

/// `/subscriptions/…/providers/…`: the shape of an ARM resource id.
fn is_arm_resource_id(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    lower.starts_with("/subscriptions/")
        && lower.contains("/providers/")
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | '&'))
}

fn parse_gke(f: &mut Fields<'_>) -> Option<GkeClusterSettings> {
    let auth = f.req_str("auth", "gke-cluster");
    let cluster = f
        .req_str("cluster", "gke-cluster")
        .and_then(|c| match parse_cluster_path(&c) {
            Ok(p) => Some(p),
            Err(why) => {
                f.problem("cluster", why.to_string());
                None
            }
        });
    let endpoint = f.opt_url("endpoint");
    let (auth, cluster) = all_ok!(auth, cluster);
    let endpoint = endpoint
        .unwrap_or_else(|| format!("https://{}-gkemulticloud.googleapis.com", cluster.location));
    Some(GkeClusterSettings {
        auth,
        cluster,
        endpoint,
    })
}

/// A `cluster` that is not a GKE multi-cloud cluster path.
#[derive(Debug, thiserror::Error)]
#[error(
    "{path:?} is not a cluster path: expected projects/PROJECT/locations/LOCATION/azureClusters/CLUSTER (or awsClusters)"
)]
struct ClusterPathError {
    path: String,
}

fn parse_cluster_path(s: &str) -> Result<ClusterPath, ClusterPathError> {
    let bad = || ClusterPathError { path: s.to_owned() };
    let parts: Vec<&str> = s.split('/').collect();
    let [projects, project, locations, location, collection, cluster] = parts[..] else {
        return Err(bad());
    };
    let platform = match collection {
        "azureClusters" => ClusterPlatform::Azure,
        "awsClusters" => ClusterPlatform::Aws,
        _ => return Err(bad()),
    };
    let segment_ok = |seg: &str| {
        !seg.is_empty()
            && seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    if projects != "projects"
        || locations != "locations"
        || ![project, location, cluster].into_iter().all(segment_ok)
    {
        return Err(bad());
    }
    Ok(ClusterPath {
        project: project.into(),
        location: location.into(),
        platform,
        cluster: cluster.into(),
    })
}

fn parse_container_app(f: &mut Fields<'_>) -> Option<ContainerAppSettings> {
    let kind = "container-app";
    let auth = f.req_str("auth", kind);
    let subscription_id = f.opt_uuid("subscription_id", kind, true);
    let resource_group = f.req_segment("resource_group", kind);
    let app = f.req_segment("app", kind);
    let api_version = api_version(f, "2024-03-01");
    let arm_endpoint = f
        .opt_url("arm_endpoint")
        .unwrap_or_else(|| DEFAULT_ARM_ENDPOINT.to_owned());
    let (auth, subscription_id, resource_group, app, api_version) =
        all_ok!(auth, subscription_id, resource_group, app, api_version);
    Some(ContainerAppSettings {
        auth,
        subscription_id,
        resource_group,
        app,
        api_version,
        arm_endpoint,
    })
}

fn parse_apim(f: &mut Fields<'_>) -> Option<ApimUserTokenSettings> {
    let kind = "apim-user-token";
    let auth = f.req_str("auth", kind);
    let subscription_id = f.opt_uuid("subscription_id", kind, true);
    let resource_group = f.req_segment("resource_group", kind);
    let service = f.req_str("service", kind);
    if let Some(s) = &service
        && !is_apim_service_name(s)
    {
        f.problem("service", format!("{s:?} is not an API Management service name (letters, digits and '-', starting with a letter)"));
    }
    let user_id = f.req_segment("user_id", kind);
    let key_type = match f.opt_str("key_type").as_deref() {
        None | Some("primary") => Some(ApimKeyType::Primary),
        Some("secondary") => Some(ApimKeyType::Secondary),
        Some(other) => {
            f.problem(
                "key_type",
                format!("{other:?} must be \"primary\" or \"secondary\""),
            );
            None
        }
    };
    let lifetime = match f.opt_duration("lifetime") {
        Some(d) if d > APIM_MAX_LIFETIME => {
            f.problem("lifetime", "is over the 30 days API Management accepts");
            None
        }
        Some(d) if d < Duration::from_secs(120) => {
            f.problem(
                "lifetime",
                "must be at least 2m (APIM tokens expire on a whole minute)",
            );
            None
        }
        Some(d) => Some(d),
        None => Some(Duration::from_secs(8 * 3600)),
    };
    let api_version = api_version(f, "2024-05-01");
    let arm_endpoint = f
        .opt_url("arm_endpoint")
        .unwrap_or_else(|| DEFAULT_ARM_ENDPOINT.to_owned());
    let (auth, subscription_id, resource_group, service, user_id, key_type, lifetime, api_version) = all_ok!(
        auth,
        subscription_id,
        resource_group,
        service,
        user_id,
        key_type,
        lifetime,
        api_version
    );
    if !is_apim_service_name(&service) {
        return None;
    }
    Some(ApimUserTokenSettings {
        auth,
        subscription_id,
        resource_group,
        service,
        user_id,
        key_type,
        lifetime,
        api_version,
        arm_endpoint,
    })
}

fn api_version(f: &mut Fields<'_>, default: &str) -> Option<String> {
    match f.opt_str("api_version") {
        None => Some(default.to_owned()),
        Some(v) if v.len() >= 10 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') => {
            Some(v)
        }
        Some(v) => {
            f.problem(
                "api_version",
                format!("{v:?} is not an API version such as {default:?}"),
            );
            None
        }
    }
}

fn parse_command(f: &mut Fields<'_>) -> Option<CommandSettings> {
    let command = match f.get("command") {
        None => {
            f.problem("command", "is required for kind \"command\": an array such as [\"vault\", \"print\", \"token\"]");
            None
        }
        Some(_) => f.opt_str_array("command"),
    };
    if command
        .as_ref()
        .is_some_and(|c| c.first().is_none_or(|p| p.trim().is_empty()))
    {
        f.problem("command", "must name a program to run");
    }
    let lifetime = match f.opt_duration("lifetime") {
        Some(d) if d.is_zero() => {
            f.problem("lifetime", "must be more than zero");
            None
        }
        Some(d) => Some(d),
        None => Some(Duration::from_secs(3600)),
    };
    let (command, lifetime) = all_ok!(command, lifetime);
    if command.first().is_none_or(|p| p.trim().is_empty()) {
        return None;
    }
    Some(CommandSettings { command, lifetime })
}

fn parse_git(f: &mut Fields<'_>) -> Option<GitHelper> {
    let host = f
        .req_str("host", "git")
        .and_then(|h| check_host_glob(f, "host", h));
    let path_prefix = f
        .opt_str("path_prefix")
        .and_then(|p| check_path_prefix(f, p));
    let credential = f.req_str("credential", "git");
    let username = helper_username(f, "credcache");
    let (host, credential, username) = all_ok!(host, credential, username);
    Some(GitHelper {
        host,
        path_prefix,
        credential,
        username,
    })
}

fn parse_docker(f: &mut Fields<'_>) -> Option<DockerHelper> {
    let registry = f
        .req_str("registry", "docker")
        .and_then(|h| check_host_glob(f, "registry", h));
    let credential = f.req_str("credential", "docker");
    let username = helper_username(f, "oauth2accesstoken");
    let (registry, credential, username) = all_ok!(registry, credential, username);
    Some(DockerHelper {
        registry,
        credential,
        username,
    })
}

/// The user name a helper answers; it goes on one line of git's protocol,
/// so no control characters.
fn helper_username(f: &mut Fields<'_>, default: &str) -> Option<String> {
    match f.opt_str("username") {
        None => Some(default.to_owned()),
        Some(u) if u.chars().any(char::is_control) => {
            f.problem("username", "must not contain control characters");
            None
        }
        Some(u) => Some(u),
    }
}

/// `host` or `registry`: a [`HostPattern`], which says what it accepts.
fn check_host_glob(f: &mut Fields<'_>, key: &str, host: String) -> Option<HostPattern> {
    HostPattern::parse(&host)
        .map_err(|why| f.problem(key, why.to_string()))
        .ok()
}

/// `path_prefix`: a [`PathPrefix`], whole segments without `/` at the ends.
fn check_path_prefix(f: &mut Fields<'_>, prefix: String) -> Option<PathPrefix> {
    PathPrefix::parse(&prefix)
        .map_err(|why| f.problem("path_prefix", why.to_string()))
        .ok()
}

/// Checks `auth` references on the raw tables, so that a credential with
/// other problems still has its `auth` checked.
fn check_auth_references(creds: Option<&Table>, problems: &mut Problems) {
    let empty = Table::new();
    let creds = creds.unwrap_or(&empty);
    let kind_of = |name: &str| -> Option<&str> {
        match creds.get(name) {
            Some(t) => t.get("kind").and_then(Value::as_str),
            None if name == "google" || name == "azure" => {
                Some(if name == "google" { "google" } else { "azure" })
            }
            None => None,
        }
    };
    let auth_of = |name: &str| {
        creds
            .get(name)
            .and_then(|t| t.get("auth"))
            .and_then(Value::as_str)
    };
    for (name, table) in creds {
        let Some(auth) = auth_of(name) else { continue };
        let at = || format!("credentials.{}.auth", shown_key(name));
        let own_kind = table.get("kind").and_then(Value::as_str).unwrap_or("");
        if !creds.contains_key(auth) && kind_of(auth).is_none() {
            problems.push(Problem {
                at: at(),
                message: format!("names {auth:?}, which is not a configured credential"),
            });
            continue;
        }
        if own_kind == "google-id-token" {
            let target_kind = kind_of(auth).unwrap_or("");
            if target_kind != "google" && KINDS.contains(&target_kind) {
                problems.push(Problem {
                    at: at(),
                    message: format!("names {auth:?}, a {target_kind} credential; google-id-token needs a google credential, whose identity mints the ID token"),
                });
            }
        }
        let wants = match own_kind {
            "gke-cluster" => "google",
            "container-app" | "apim-user-token" => "azure",
            _ => continue,
        };
        let target_kind = kind_of(auth).unwrap_or("");
        if target_kind != wants && target_kind != "command" && KINDS.contains(&target_kind) {
            problems.push(Problem {
                at: at(),
                message: format!("names {auth:?}, a {target_kind} credential; {own_kind} needs a {wants} (or command) credential"),
            });
        }
        // Cycles: follow the chain; coming back to `name` is a loop.
        let mut chain = vec![name.as_str()];
        let mut next = Some(auth);
        while let Some(n) = next {
            if n == name {
                chain.push(n);
                problems.push(Problem {
                    at: at(),
                    message: format!("forms a cycle: {}", chain.join(" -> ")),
                });
                break;
            }
            if chain.contains(&n) {
                break;
            }
            chain.push(n);
            next = auth_of(n);
        }
    }
}

fn check_helper_references(
    creds: &BTreeMap<String, Arc<Credential>>,
    git: &[GitHelper],
    docker: &[DockerHelper],
    problems: &mut Problems,
) {
    for (i, g) in git.iter().enumerate() {
        if !creds.contains_key(&g.credential) {
            problems.push(Problem {
                at: format!("git[{i}].credential"),
                message: format!(
                    "names {:?}, which is not a configured credential",
                    g.credential
                ),
            });
        }
    }
    for (i, d) in docker.iter().enumerate() {
        if !creds.contains_key(&d.credential) {
            problems.push(Problem {
                at: format!("docker[{i}].credential"),
                message: format!(
                    "names {:?}, which is not a configured credential",
                    d.credential
                ),
            });
        }
    }
}

/// A key from the file as it goes into a problem's dotted path: as written,
/// unless it is empty or holds what Rust's `{:?}` would escape (a newline,
/// an escape sequence, a bidi override, a quote); then quoted and escaped,
/// so that a key cannot break or forge the one line its problem is
/// reported on, nor vanish from it.
fn shown_key(key: &str) -> String {
    let quoted = format!("{key:?}");
    if !key.is_empty() && quoted[1..quoted.len() - 1] == *key {
        key.to_owned()
    } else {
        quoted
    }
}

/// A credential name outside the allowed alphabet or length.
#[derive(Debug, thiserror::Error)]
#[error(
    "{name:?} is not a valid credential name (letters, digits, '.', '_', '-'; starting with a letter or digit; at most 64)"
)]
struct NameError {
    name: String,
}

fn check_name(name: &str) -> Result<(), NameError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if first_ok && rest_ok && name.len() <= 64 {
        Ok(())
    } else {
        Err(NameError {
            name: name.to_owned(),
        })
    }
}

/// A URL setting that is not a URL secrets may be sent to.
#[derive(Debug, thiserror::Error)]
enum UrlError {
    #[error("{url:?} is not a URL ({source})")]
    NotAUrl {
        url: String,
        source: url::ParseError,
    },
    #[error(
        "{url:?} uses http:// to a host that is not loopback; secrets go over TLS only: use https://"
    )]
    PlainHttp { url: String },
    #[error("{url:?} has scheme {scheme:?}; use https://")]
    Scheme { url: String, scheme: String },
}

/// `https://` anywhere, `http://` only to loopback: secrets go over TLS.
fn check_url(s: &str) -> Result<String, UrlError> {
    let url = url::Url::parse(s).map_err(|source| UrlError::NotAUrl {
        url: s.to_owned(),
        source,
    })?;
    match url.scheme() {
        "https" => Ok(s.trim_end_matches('/').to_owned()),
        "http" if url.host().is_some_and(|h| is_loopback(&h)) => {
            Ok(s.trim_end_matches('/').to_owned())
        }
        "http" => Err(UrlError::PlainHttp { url: s.to_owned() }),
        other => Err(UrlError::Scheme {
            url: s.to_owned(),
            scheme: other.to_owned(),
        }),
    }
}

/// The email of a service account written as an email or as
/// `projects/-/serviceAccounts/EMAIL` (as `delegates` and gcloud's files
/// write them); `None` if it is neither.
pub fn service_account_email(s: &str) -> Option<&str> {
    let email = s.strip_prefix("projects/-/serviceAccounts/").unwrap_or(s);
    let (user, domain) = email.split_once('@')?;
    let ok = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    (ok(user) && ok(domain) && domain.contains('.')).then_some(email)
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn is_tenant_domain(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
}

fn is_apim_service_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

#[cfg(test)]
mod tests;
