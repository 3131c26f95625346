//! `kubeconfig --merge PATH`: puts the entries into an existing kubeconfig.
//!
//! Entries are matched by name: a user (cluster, context) of that name is
//! replaced in place, otherwise appended. Everything else in the file keeps
//! its value and order; `current-context` is set only if the file has none.
//! The file is parsed and written again, so comments and quoting style are
//! not kept: the original is saved first as `PATH.bak` (or
//! `PATH.bak-<UTC time>` when that exists), mode 0600 like any kubeconfig.
//! A merge that changes nothing writes nothing, not even a backup, so
//! running it twice is harmless. The new file replaces the old by rename,
//! never half-written; a symlinked kubeconfig is written through its link.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_norway::{Mapping, Value};

use super::{Entries, to_yaml};
use crate::exit::Error;

/// What a merge did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The file did not exist and was created.
    Created,
    /// The file was rewritten; the old one is at `backup`.
    Updated { backup: PathBuf, replaced: bool },
    /// The file already held exactly these entries.
    Unchanged,
}

impl Outcome {
    /// One line for stderr.
    pub fn describe(&self, path: &Path, name: &str) -> String {
        let path = path.display();
        match self {
            Self::Created => format!("wrote {path} with the entries for {name}"),
            Self::Updated { backup, replaced } => format!(
                "{} user {name} {} {path}; the previous file, comments and all, is {}",
                if *replaced { "replaced" } else { "added" },
                if *replaced { "in" } else { "to" },
                backup.display()
            ),
            Self::Unchanged => format!("{path} already has user {name} as credcache writes it"),
        }
    }
}

/// Merges `entries` into the kubeconfig at `path` (created if missing).
pub fn merge_file(path: &Path, entries: &Entries) -> Result<Outcome, Error> {
    let cannot = |what: &str, e: &dyn std::fmt::Display| {
        Error::Other(format!("cannot {what} {}: {e}", path.display()))
    };
    // Write through a symlink (dotfile managers link ~/.kube/config).
    let target = match fs::canonicalize(path) {
        Ok(real) => real,
        Err(e) if e.kind() == io::ErrorKind::NotFound => path.to_path_buf(),
        Err(e) => return Err(cannot("read", &e)),
    };
    let original = match fs::read(&target) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(cannot("read", &e)),
    };
    let Some(original) = original else {
        let doc = super::standalone(entries);
        write_atomically(&target, to_yaml(&Value::Mapping(doc))?.as_bytes(), 0o600)
            .map_err(|e| cannot("write", &e))?;
        return Ok(Outcome::Created);
    };

    let text = String::from_utf8(original.clone()).map_err(|e| cannot("read", &e))?;
    let mut doc = parse(&text).map_err(|e| {
        Error::Other(format!(
            "{} is not a kubeconfig credcache can merge into: {e}; nothing was changed",
            path.display()
        ))
    })?;
    let before = doc.clone();
    let replaced = merge(&mut doc, entries)
        .map_err(|e| Error::Other(format!("{}: {e}; nothing was changed", path.display())))?;
    if doc == before {
        return Ok(Outcome::Unchanged);
    }
    let mode = fs::metadata(&target)
        .map(|m| crate::sys::mode_of(&m))
        .unwrap_or(0o600);
    let backup = write_backup(&target, &original).map_err(|e| cannot("back up", &e))?;
    write_atomically(&target, to_yaml(&Value::Mapping(doc))?.as_bytes(), mode)
        .map_err(|e| cannot("write", &e))?;
    Ok(Outcome::Updated { backup, replaced })
}

/// Why a file cannot be merged into; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("{0}")]
    Yaml(#[from] serde_norway::Error),
    #[error("the top level is not a mapping")]
    NotAMapping,
    #[error("`{section}` is not a list")]
    NotAList { section: String },
}

/// The file as a mapping; an empty file is an empty kubeconfig.
fn parse(text: &str) -> Result<Mapping, MergeError> {
    if text.trim().is_empty() {
        return Ok(Mapping::new());
    }
    match serde_norway::from_str::<Value>(text)? {
        Value::Mapping(m) => Ok(m),
        Value::Null => Ok(Mapping::new()),
        _ => Err(MergeError::NotAMapping),
    }
}

/// Puts the entries into `doc`; true if a user of that name was replaced.
pub fn merge(doc: &mut Mapping, entries: &Entries) -> Result<bool, MergeError> {
    for (key, value) in [("apiVersion", "v1"), ("kind", "Config")] {
        if !doc.contains_key(key) {
            doc.insert(key.into(), value.into());
        }
    }
    if let Some((cluster, context)) = &entries.cluster {
        upsert(doc, "clusters", &entries.name, cluster)?;
        upsert(doc, "contexts", &entries.name, context)?;
        let current = doc.get("current-context");
        if current.is_none_or(|c| c.is_null() || c.as_str() == Some("")) {
            doc.insert("current-context".into(), entries.name.as_str().into());
        }
    }
    upsert(doc, "users", &entries.name, &entries.user)
}

/// Replaces the element of list `section` named `name`, or appends one.
fn upsert(doc: &mut Mapping, section: &str, name: &str, entry: &Value) -> Result<bool, MergeError> {
    let list = doc
        .entry(section.into())
        .or_insert_with(|| Value::Sequence(Vec::new()));
    if list.is_null() {
        *list = Value::Sequence(Vec::new());
    }
    let Value::Sequence(items) = list else {
        return Err(MergeError::NotAList {
            section: section.to_owned(),
        });
    };
    match items
        .iter_mut()
        .find(|item| item.get("name").and_then(Value::as_str) == Some(name))
    {
        Some(item) => {
            *item = entry.clone();
            Ok(true)
        }
        None => {
            items.push(entry.clone());
            Ok(false)
        }
    }
}

/// Saves `bytes` (the file as it was) beside `target`, never over an
/// earlier backup.
fn write_backup(target: &Path, bytes: &[u8]) -> io::Result<PathBuf> {
    let plain = suffixed(target, ".bak");
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let candidates = std::iter::once(plain)
        .chain(std::iter::once(suffixed(target, &format!(".bak-{stamp}"))))
        .chain((1..100).map(|n| suffixed(target, &format!(".bak-{stamp}-{n}"))));
    for candidate in candidates {
        match crate::sys::create_new_private(&candidate) {
            Ok(mut file) => {
                file.write_all(bytes)?;
                file.sync_all()?;
                return Ok(candidate);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("too many backups already; remove some"))
}

/// Replaces `target` by rename from a temp file created exclusively, so a
/// symlink planted at a predictable temp name is never written through.
fn write_atomically(target: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    crate::replace_file::replace(target, bytes, mode)
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::super::entries;
    use super::*;
    #[cfg(unix)]
    use std::os::unix::fs::PermissionsExt;

    const EXISTING: &str = "\
apiVersion: v1
kind: Config
clusters:
- name: other
  cluster:
    server: https://other.example
    certificate-authority-data: QUJD
contexts:
- name: other
  context: {cluster: other, user: other-user}
current-context: other
preferences: {}
users:
- name: other-user
  user:
    token: keep-me
- name: prod
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: gke-gcloud-auth-plugin
";

    fn ours(server: Option<&str>) -> Entries {
        entries("prod", "/bin/credcache", None, server).unwrap()
    }

    #[test]
    fn other_entries_keep_their_values_and_order() {
        let mut doc = parse(EXISTING).unwrap();
        let before = doc.clone();
        let replaced = merge(&mut doc, &ours(Some("https://prod.example"))).unwrap();
        assert!(replaced, "the old `prod` user is replaced");
        let keys: Vec<&str> = doc.keys().map(|k| k.as_str().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "apiVersion",
                "kind",
                "clusters",
                "contexts",
                "current-context",
                "preferences",
                "users"
            ]
        );
        assert_eq!(doc["current-context"], "other", "left as it was");
        assert_eq!(doc["clusters"][0], before["clusters"][0]);
        assert_eq!(doc["clusters"][1]["name"], "prod");
        assert_eq!(doc["contexts"][0], before["contexts"][0]);
        assert_eq!(doc["users"][0], before["users"][0]);
        assert_eq!(doc["users"][1], ours(None).user);
        assert_eq!(doc["users"].as_sequence().unwrap().len(), 2);
    }

    #[test]
    fn merging_again_changes_nothing() {
        let mut doc = parse(EXISTING).unwrap();
        merge(&mut doc, &ours(Some("https://prod.example"))).unwrap();
        let once = doc.clone();
        merge(&mut doc, &ours(Some("https://prod.example"))).unwrap();
        assert_eq!(doc, once);
    }

    #[test]
    fn an_empty_file_becomes_a_kubeconfig() {
        let mut doc = parse("\n").unwrap();
        merge(&mut doc, &ours(Some("https://p"))).unwrap();
        assert_eq!(doc["apiVersion"], "v1");
        assert_eq!(doc["kind"], "Config");
        assert_eq!(doc["current-context"], "prod");
    }

    #[test]
    fn what_is_not_a_kubeconfig_is_refused() {
        assert!(matches!(parse("- a\n- b\n"), Err(MergeError::NotAMapping)));
        assert!(matches!(
            parse("users: [unclosed\n"),
            Err(MergeError::Yaml(_))
        ));
        let mut doc = parse("users: {a: 1}\n").unwrap();
        let err = merge(&mut doc, &ours(None)).unwrap_err();
        assert_eq!(err.to_string(), "`users` is not a list");
    }

    #[cfg(unix)]
    #[test]
    fn files_are_backed_up_once_per_change_and_written_through_links() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real-config");
        fs::write(&real, EXISTING).unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("config");
        std::os::unix::fs::symlink(&real, &link).unwrap();

        let outcome = merge_file(&link, &ours(None)).unwrap();
        let Outcome::Updated { backup, replaced } = outcome else {
            panic!("{outcome:?}")
        };
        assert!(replaced);
        assert_eq!(backup, dir.path().join("real-config.bak"));
        assert_eq!(fs::read_to_string(&backup).unwrap(), EXISTING);
        assert_eq!(
            fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            fs::metadata(&real).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let written = fs::read_to_string(&real).unwrap();
        assert_eq!(merge_file(&link, &ours(None)).unwrap(), Outcome::Unchanged);
        assert_eq!(fs::read_to_string(&real).unwrap(), written);

        // A second real change keeps the first backup and adds a stamped one.
        let Outcome::Updated { backup: second, .. } =
            merge_file(&link, &ours(Some("https://p"))).unwrap()
        else {
            panic!("not updated")
        };
        assert_ne!(second, backup);
        assert_eq!(fs::read_to_string(&backup).unwrap(), EXISTING);
        assert_eq!(fs::read_to_string(&second).unwrap(), written);
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[cfg(unix)]
    #[test]
    fn a_missing_file_is_created_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".kube/config");
        assert_eq!(merge_file(&path, &ours(None)).unwrap(), Outcome::Created);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let v: Value = serde_norway::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["users"][0]["name"], "prod");
    }
}
