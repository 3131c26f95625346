//! Every key the config file accepts, table by table: the one list that the
//! validator checks keys against (any other key is unknown) and that
//! `docs/configuration.md` is tested against, so neither can drift from
//! what the reader in [`super::parse`] reads. A test there sets every
//! listed key to a value no reader accepts and checks that each one is
//! complained about, i.e. actually read.

/// Top-level keys and tables.
pub const TOP: &[&str] = &["daemon", "credentials", "git", "docker"];

/// `[daemon]`.
pub const DAEMON: &[&str] = &[
    "refresh_ahead",
    "refresh_fraction",
    "min_valid",
    "idle_timeout",
    "http_timeout",
    "on_reauth",
];

/// `[credentials.NAME]`, whatever its kind.
pub const CREDENTIAL: &[&str] = &["kind", "refresh_ahead", "min_valid", "prefetch", "env_var"];

/// `kind = "google"`.
pub const GOOGLE: &[&str] = &[
    "key_file",
    "scopes",
    "token_uri",
    "metadata_host",
    "impersonate_service_account",
    "delegates",
    "lifetime",
    "iam_endpoint",
    "oauth_client_file",
];

/// `kind = "google-id-token"`.
pub const GOOGLE_ID_TOKEN: &[&str] = &["auth", "audience", "include_email"];

/// `kind = "azure"`, whatever its `method`. `client_secret` is known only
/// to be refused with a better message than "unknown key".
pub const AZURE: &[&str] = &[
    "method",
    "tenant_id",
    "client_id",
    "client_secret",
    "client_secret_env",
    "client_secret_file",
    "authority_host",
    "scope",
    "identity_endpoint",
    "certificate_file",
    "certificate_password_env",
    "certificate_password_file",
    "send_certificate_chain",
    "object_id",
    "mi_res_id",
    "arc_token_dir",
];

/// `kind = "gke-cluster"`.
pub const GKE_CLUSTER: &[&str] = &["auth", "cluster", "endpoint"];

/// `kind = "container-app"`.
pub const CONTAINER_APP: &[&str] = &[
    "auth",
    "subscription_id",
    "resource_group",
    "app",
    "api_version",
    "arm_endpoint",
];

/// `kind = "apim-user-token"`.
pub const APIM_USER_TOKEN: &[&str] = &[
    "auth",
    "subscription_id",
    "resource_group",
    "service",
    "user_id",
    "key_type",
    "lifetime",
    "api_version",
    "arm_endpoint",
];

/// `kind = "command"`.
pub const COMMAND: &[&str] = &["command", "lifetime"];

/// `[[git]]`.
pub const GIT: &[&str] = &["host", "path_prefix", "credential", "username"];

/// `[[docker]]`.
pub const DOCKER: &[&str] = &["registry", "credential", "username"];

/// The keys of one `kind`, besides [`CREDENTIAL`]'s.
pub fn of_kind(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "google" => GOOGLE,
        "google-id-token" => GOOGLE_ID_TOKEN,
        "azure" => AZURE,
        "gke-cluster" => GKE_CLUSTER,
        "container-app" => CONTAINER_APP,
        "apim-user-token" => APIM_USER_TOKEN,
        "command" => COMMAND,
        _ => return None,
    })
}

/// Every table and its keys, named as `docs/configuration.md` heads them.
pub const ALL: &[(&str, &[&str])] = &[
    ("top level", TOP),
    ("[daemon]", DAEMON),
    ("[credentials.NAME]", CREDENTIAL),
    ("kind = \"google\"", GOOGLE),
    ("kind = \"google-id-token\"", GOOGLE_ID_TOKEN),
    ("kind = \"azure\"", AZURE),
    ("kind = \"gke-cluster\"", GKE_CLUSTER),
    ("kind = \"container-app\"", CONTAINER_APP),
    ("kind = \"apim-user-token\"", APIM_USER_TOKEN),
    ("kind = \"command\"", COMMAND),
    ("[[git]]", GIT),
    ("[[docker]]", DOCKER),
];

/// The known key closest to an unknown one, if it is close enough to be a
/// likely typo: at most one edit for short keys, a third of the length for
/// longer ones.
pub fn suggest<'k>(unknown: &str, known: impl IntoIterator<Item = &'k str>) -> Option<&'k str> {
    let limit = (unknown.chars().count() / 3).max(1);
    known
        .into_iter()
        .map(|k| (edit_distance(unknown, k), k))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, k)| k)
}

/// Edits (insert, delete, substitute, swap two neighbours) that turn `a`
/// into `b`: the optimal string alignment distance, case-insensitive.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().map(|c| c.to_ascii_lowercase()).collect();
    let b: Vec<char> = b.chars().map(|c| c.to_ascii_lowercase()).collect();
    // d[i][j]: distance between a[..i] and b[..j].
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_each_kind_of_edit() {
        assert_eq!(edit_distance("scope", "scope"), 0);
        assert_eq!(edit_distance("scope", "scopes"), 1);
        assert_eq!(edit_distance("key_fil", "key_file"), 1);
        assert_eq!(edit_distance("tenat_id", "tenant_id"), 1);
        assert_eq!(edit_distance("clinet_id", "client_id"), 1);
        assert_eq!(edit_distance("Method", "method"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestions_are_close_known_keys_only() {
        assert_eq!(suggest("scope", GOOGLE.iter().copied()), Some("scopes"));
        assert_eq!(suggest("scopes", AZURE.iter().copied()), Some("scope"));
        assert_eq!(suggest("keyfile", GOOGLE.iter().copied()), Some("key_file"));
        assert_eq!(
            suggest("refresh_ahaed", CREDENTIAL.iter().copied()),
            Some("refresh_ahead")
        );
        assert_eq!(suggest("bogus", DAEMON.iter().copied()), None);
        assert_eq!(suggest("typo_key", AZURE.iter().copied()), None);
        assert_eq!(suggest("x", TOP.iter().copied()), None);
    }

    #[test]
    fn every_kind_has_its_keys_and_no_key_is_listed_twice() {
        for kind in crate::config::KINDS {
            assert!(of_kind(kind).is_some(), "{kind}");
        }
        assert_eq!(of_kind("gogle"), None);
        for (table, keys) in ALL {
            let mut sorted = keys.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), keys.len(), "a key twice in {table}");
        }
        // A kind's own keys never repeat the common ones: the validator
        // and the docs treat them as one table.
        for kind in crate::config::KINDS {
            for key in of_kind(kind).unwrap() {
                assert!(!CREDENTIAL.contains(key), "{kind} repeats {key}");
            }
        }
    }

    /// Every listed key set to a value no reader accepts (a TOML
    /// datetime): each must be complained about, which proves the reader
    /// reads it. A listed key nobody reads would be silently ignored.
    fn complaints(text: &str) -> Vec<String> {
        match crate::config::Config::parse(text, std::path::Path::new("c.toml")) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.problems.into_iter().map(|p| p.at).collect(),
        }
    }

    const NOT_A_VALUE: &str = "1979-05-27T07:32:00Z";

    fn assert_each_read(text: &str, prefix: &str, keys: &[&str]) {
        let at = complaints(text);
        for key in keys {
            let want = format!("{prefix}{key}");
            assert!(at.contains(&want), "{want} not read: {at:?}\n{text}");
        }
        assert!(!at.iter().any(|a| a.contains("unknown")), "{at:?}\n{text}");
    }

    #[test]
    fn every_listed_key_is_read() {
        let mut text = String::new();
        for key in TOP {
            text.push_str(&format!("{key} = {NOT_A_VALUE}\n"));
        }
        assert_each_read(&text, "", TOP);

        for (table, keys) in [
            ("[daemon]", DAEMON),
            ("[[git]]", GIT),
            ("[[docker]]", DOCKER),
        ] {
            let mut text = format!("{table}\n");
            for key in keys {
                text.push_str(&format!("{key} = {NOT_A_VALUE}\n"));
            }
            let prefix = table.trim_matches(['[', ']']);
            let prefix = if prefix == "daemon" {
                "daemon.".to_owned()
            } else {
                format!("{prefix}[0].")
            };
            assert_each_read(&text, &prefix, keys);
        }

        for kind in crate::config::KINDS {
            let mut text = format!("[credentials.x]\nkind = \"{kind}\"\n");
            let own = of_kind(kind).unwrap();
            let keys: Vec<&str> = CREDENTIAL.iter().chain(own).copied().collect();
            for key in keys.iter().filter(|k| **k != "kind") {
                text.push_str(&format!("{key} = {NOT_A_VALUE}\n"));
            }
            let at = complaints(&text);
            for key in keys.iter().filter(|k| **k != "kind") {
                let want = format!("credentials.x.{key}");
                assert!(at.contains(&want), "{want} not read: {at:?}\n{text}");
            }
        }
    }

    fn messages(text: &str) -> Vec<String> {
        match crate::config::Config::parse(text, std::path::Path::new("c.toml")) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.lines().collect(),
        }
    }

    #[test]
    fn unknown_keys_name_the_key_they_are_likely_a_typo_of() {
        let m = messages(
            "[credentials.gcp]\nkind = \"google\"\nscope = \"x\"\n\
             [credentials.corp]\nkind = \"azure\"\nscopes = [\"x\"]\n\
             [daemon]\nidle_timout = \"1m\"\nbogus = 1\n",
        );
        for want in [
            "c.toml: credentials.gcp.scope: unknown key; did you mean `scopes`?",
            "c.toml: credentials.corp.scopes: unknown key; did you mean `scope`?",
            "c.toml: daemon.idle_timout: unknown key; did you mean `idle_timeout`?",
            "c.toml: daemon.bogus: unknown key",
        ] {
            assert!(m.iter().any(|l| l == want), "no {want:?} in {m:#?}");
        }
    }

    #[test]
    fn a_wrong_kind_is_the_only_problem_with_a_kinds_keys() {
        let m = messages("[credentials.gcp]\nkind = \"gogle\"\nkey_file = \"k.json\"\n");
        assert_eq!(m.len(), 1, "{m:#?}");
        assert!(
            m[0].contains("credentials.gcp.kind: unknown kind"),
            "{m:#?}"
        );
        // Still, a key no kind knows is unknown.
        let m = messages("[credentials.gcp]\nkind = \"gogle\"\nkey_fil = \"k.json\"\n");
        assert!(
            m.iter()
                .any(|l| l
                    .ends_with("credentials.gcp.key_fil: unknown key; did you mean `key_file`?")),
            "{m:#?}"
        );
    }
}
