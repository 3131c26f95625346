//! `credcache kubeconfig NAME [--cluster-server URL] [--merge PATH]`: a
//! kubeconfig user entry whose exec plugin is `credcache get NAME --format
//! exec-credential`, printed or merged into an existing kubeconfig.
//!
//! The `command` written is an absolute path: kubectl run from an IDE or a
//! desktop launcher often has a PATH without `~/.cargo/bin`, and a bare
//! `credcache` then fails with "executable not found". When the running
//! binary is reached through a PATH entry (`/usr/local/bin/credcache`, a
//! Homebrew or package-manager symlink), that entry is written rather than
//! the resolved file, so an upgrade that moves the real file does not break
//! the kubeconfig. `--command credcache` writes the bare name instead, as
//! `kubelogin` and `gcloud` do, for a kubeconfig shared between machines.
//!
//! Like `config` and `completions`, this never talks to (or starts) the
//! daemon; YAML is only ever touched here, never on the `get` path.

mod merge;

use std::path::{Path, PathBuf};

use credcache_shared::config::Config;
use credcache_shared::paths::Paths;
use serde_norway::{Mapping, Value};

use crate::exit::Error;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The credential kubectl should get its token from.
    pub name: String,

    /// Also write a cluster and a context, both named NAME, for this API
    /// server URL.
    #[arg(long, value_name = "URL")]
    pub cluster_server: Option<String>,

    /// Merge the entries into this kubeconfig file (e.g. ~/.kube/config)
    /// instead of printing them. The file's other entries stay as they are;
    /// the old file is kept as PATH.bak (or PATH.bak-<time> if that exists).
    #[arg(long, value_name = "PATH")]
    pub merge: Option<PathBuf>,

    /// The program kubectl runs (default: this credcache's absolute path;
    /// `credcache` to rely on kubectl's PATH).
    #[arg(long, value_name = "PROGRAM")]
    pub command: Option<String>,
}

/// The exec plugin API version written into the entry.
const EXEC_API_VERSION: &str = "client.authentication.k8s.io/v1";

/// What goes into a kubeconfig for one credential.
#[derive(Debug, Clone, PartialEq)]
pub struct Entries {
    pub name: String,
    /// `{name, user: {exec: …}}`.
    pub user: Value,
    /// `{name, cluster: {server}}` and `{name, context: {cluster, user}}`,
    /// with `--cluster-server`.
    pub cluster: Option<(Value, Value)>,
}

pub fn run(paths: &Paths, config_flag: Option<&Path>, args: &Args) -> Result<(), Error> {
    check_name(&args.name)?;
    warn_if_unconfigured(&paths.config_file, &args.name);
    let command = match &args.command {
        Some(c) if c.is_empty() => return Err(Error::Usage("--command must not be empty".into())),
        Some(c) => c.clone(),
        None => default_command()?,
    };
    let config = config_flag
        .map(|p| {
            std::path::absolute(p)
                .map_err(|e| Error::Usage(format!("--config {}: {e}", p.display())))
        })
        .transpose()?;
    if let Some(server) = &args.cluster_server {
        check_server(server)?;
    }
    let entries = entries(
        &args.name,
        &command,
        config.as_deref(),
        args.cluster_server.as_deref(),
    )?;
    match &args.merge {
        None => output::stdout(&to_yaml(&Value::Mapping(standalone(&entries)))?),
        Some(path) => {
            let outcome = merge::merge_file(path, &entries)?;
            output::note(outcome.describe(path, &entries.name));
            Ok(())
        }
    }
}

/// The entries for credential `name`, run as `command`.
pub fn entries(
    name: &str,
    command: &str,
    config: Option<&Path>,
    cluster_server: Option<&str>,
) -> Result<Entries, Error> {
    let mut args = vec![
        Value::from("get"),
        Value::from(name),
        Value::from("--format"),
        Value::from("exec-credential"),
    ];
    if let Some(config) = config {
        let config = config.to_str().ok_or_else(|| {
            Error::Usage(format!(
                "--config {}: a kubeconfig can only name UTF-8 paths",
                config.display()
            ))
        })?;
        args.extend([Value::from("--config"), Value::from(config)]);
    }
    let exec = mapping([
        ("apiVersion", Value::from(EXEC_API_VERSION)),
        ("command", Value::from(command)),
        ("args", Value::Sequence(args)),
        (
            "installHint",
            Value::from(format!(
                "credcache is not at this path: install it, then run \
                 `credcache kubeconfig {name} --merge` on this file again"
            )),
        ),
        ("interactiveMode", Value::from("Never")),
        ("provideClusterInfo", Value::from(false)),
    ]);
    let user = mapping([
        ("name", Value::from(name)),
        ("user", mapping([("exec", exec)])),
    ]);
    let cluster = cluster_server.map(|server| {
        (
            mapping([
                ("name", Value::from(name)),
                ("cluster", mapping([("server", Value::from(server))])),
            ]),
            mapping([
                ("name", Value::from(name)),
                (
                    "context",
                    mapping([("cluster", Value::from(name)), ("user", Value::from(name))]),
                ),
            ]),
        )
    });
    Ok(Entries {
        name: name.to_owned(),
        user,
        cluster,
    })
}

/// A whole kubeconfig holding only `entries`: what is printed, usable on
/// its own (`KUBECONFIG=a.yaml:~/.kube/config`). With a cluster it is also
/// the current context.
pub fn standalone(entries: &Entries) -> Mapping {
    let mut doc = Mapping::new();
    doc.insert("apiVersion".into(), "v1".into());
    doc.insert("kind".into(), "Config".into());
    if let Some((cluster, context)) = &entries.cluster {
        doc.insert("clusters".into(), Value::Sequence(vec![cluster.clone()]));
        doc.insert("contexts".into(), Value::Sequence(vec![context.clone()]));
        doc.insert("current-context".into(), entries.name.as_str().into());
    }
    doc.insert("users".into(), Value::Sequence(vec![entries.user.clone()]));
    doc
}

fn mapping<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Mapping(
        pairs
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    )
}

pub fn to_yaml(value: &Value) -> Result<String, Error> {
    serde_norway::to_string(value).map_err(|e| Error::Other(format!("cannot write YAML: {e}")))
}

/// Credential names as the config allows them (docs/configuration.md).
fn check_name(name: &str) -> Result<(), Error> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "{name:?} is not a credential name (letters, digits, `.`, `_`, `-`; at most 64)"
        )))
    }
}

fn check_server(server: &str) -> Result<(), Error> {
    match url::Url::parse(server) {
        Ok(url) if matches!(url.scheme(), "https" | "http") && url.host().is_some() => Ok(()),
        Ok(_) => Err(Error::Usage(format!(
            "--cluster-server {server}: an API server URL is https://HOST[:PORT]"
        ))),
        Err(e) => Err(Error::Usage(format!("--cluster-server {server}: {e}"))),
    }
}

/// A hint, not an error: the config may be written after the kubeconfig.
fn warn_if_unconfigured(config_file: &Path, name: &str) {
    match Config::load(config_file) {
        Ok(config) if config.credential(name).is_none() => output::warning(format!(
            "{name} is not configured in {}; kubectl will get exit 4 until it is",
            config_file.display()
        )),
        Ok(_) => {}
        Err(e) => output::warning(format!("the config file is invalid: {e}")),
    }
}

/// This credcache, as an absolute path; see the module docs.
fn default_command() -> Result<String, Error> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::Other(format!("cannot find this executable's path: {e}")))?;
    let chosen = on_path(&exe, std::env::var_os("PATH").as_deref()).unwrap_or(exe);
    chosen.into_os_string().into_string().map_err(|path| {
        Error::Other(format!(
            "this executable's path {} is not UTF-8; pass --command",
            PathBuf::from(path).display()
        ))
    })
}

/// The first absolute PATH entry whose `credcache` is this very file.
fn on_path(exe: &Path, path_var: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    let real = exe.canonicalize().ok()?;
    std::env::split_paths(path_var?)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join("credcache"))
        .find(|candidate| candidate.canonicalize().ok().as_ref() == Some(&real))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_entry_is_what_upstream_apis_md_shows() {
        let e = entries("prod-gke", "/usr/bin/credcache", None, None).unwrap();
        let yaml = to_yaml(&Value::Mapping(standalone(&e))).unwrap();
        let v: Value = serde_norway::from_str(&yaml).unwrap();
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["kind"], "Config");
        assert!(v.get("clusters").is_none() && v.get("current-context").is_none());
        let user = &v["users"][0];
        assert_eq!(user["name"], "prod-gke");
        let exec = &user["user"]["exec"];
        assert_eq!(exec["apiVersion"], "client.authentication.k8s.io/v1");
        assert_eq!(exec["command"], "/usr/bin/credcache");
        let args: Vec<&str> = exec["args"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(args, ["get", "prod-gke", "--format", "exec-credential"]);
        assert_eq!(exec["interactiveMode"], "Never");
        assert_eq!(exec["provideClusterInfo"], false);
    }

    #[test]
    fn a_config_flag_and_a_cluster_are_carried() {
        let e = entries(
            "c",
            "credcache",
            Some(Path::new("/etc/cc.toml")),
            Some("https://10.0.0.1:443"),
        )
        .unwrap();
        let doc = Value::Mapping(standalone(&e));
        assert_eq!(doc["users"][0]["user"]["exec"]["args"][5], "/etc/cc.toml");
        assert_eq!(
            doc["clusters"][0]["cluster"]["server"],
            "https://10.0.0.1:443"
        );
        assert_eq!(doc["contexts"][0]["context"]["user"], "c");
        assert_eq!(doc["contexts"][0]["context"]["cluster"], "c");
        assert_eq!(doc["current-context"], "c");
    }

    #[test]
    fn names_and_servers_are_checked() {
        for good in ["prod-gke", "a", "A.b_c-9"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", "a b", "a/b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_server("https://1.2.3.4").is_ok());
        assert!(check_server("ftp://x").is_err());
        assert!(check_server("not a url").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_path_entry_leading_to_this_binary_is_preferred() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::write(real.join("credcache"), "").unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink(real.join("credcache"), bin.join("credcache")).unwrap();
        let path =
            std::env::join_paths([Path::new("relative"), &dir.path().join("none"), &bin]).unwrap();
        assert_eq!(
            on_path(&real.join("credcache"), Some(&path)),
            Some(bin.join("credcache"))
        );
        assert_eq!(on_path(&real.join("credcache"), None), None);
    }
}
