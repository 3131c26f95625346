//! Keeps the user docs in `docs/` complete and the repository
//! self-contained: every config key the validator accepts is documented,
//! and nothing points at documents outside the repository.

use std::path::{Path, PathBuf};
use std::process::Command;

use credcache_shared::config::keys;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("shared/ is inside the repository")
        .to_path_buf()
}

fn read_doc(name: &str) -> String {
    let path = repo_root().join("docs").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The text under the first heading that contains `label` (ignoring
/// case), up to the next heading of the same or a higher level.
fn section<'d>(doc: &'d str, label: &str) -> Option<&'d str> {
    let label = label.to_lowercase();
    let mut start = None;
    let mut offset = 0;
    for line in doc.split_inclusive('\n') {
        let level = line.chars().take_while(|&c| c == '#').count();
        let is_heading = level > 0 && line[level..].starts_with(' ');
        match start {
            None if is_heading && line.to_lowercase().contains(&label) => {
                start = Some((offset + line.len(), level));
            }
            Some((from, open)) if is_heading && level <= open => return Some(&doc[from..offset]),
            _ => {}
        }
        offset += line.len();
    }
    start.map(|(from, _)| &doc[from..])
}

#[test]
fn every_config_key_is_documented_in_its_table() {
    let doc = read_doc("configuration.md");
    let mut missing = Vec::new();
    for (table, keys) in keys::ALL {
        let Some(text) = section(&doc, table) else {
            missing.push(format!("a heading for {table}"));
            continue;
        };
        for key in *keys {
            // A row of the section's table: | `key` | ...
            if !text.contains(&format!("| `{key}` |")) {
                missing.push(format!("{table}: `{key}`"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/configuration.md lacks (add a table row `| `key` | ...` under the heading):\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_kind_and_azure_method_is_documented() {
    let doc = read_doc("configuration.md");
    for kind in credcache_shared::config::KINDS {
        assert!(
            section(&doc, &format!("kind = \"{kind}\"")).is_some(),
            "no section for kind {kind:?}"
        );
    }
    let azure = section(&doc, "kind = \"azure\"").unwrap();
    for method in [
        "client-secret",
        "certificate",
        "workload-identity",
        "managed-identity",
        "cli",
        "azd",
        "auto",
    ] {
        assert!(
            azure.contains(&format!("- `{method}`:")),
            "method {method:?} is not described"
        );
    }
}

#[test]
fn section_finds_a_heading_and_stops_at_the_next_of_its_level() {
    let doc = "# A\nintro\n## `[x]`\n| `k` |\n### sub\nmore\n## y\nnot x\n";
    let x = section(doc, "[x]").unwrap();
    assert!(x.contains("| `k` |") && x.contains("more"), "{x:?}");
    assert!(!x.contains("not x"), "{x:?}");
    assert_eq!(section(doc, "sub").unwrap(), "more\n");
    assert_eq!(section(doc, "nothing"), None);
}

#[test]
fn the_docs_index_links_every_page() {
    let index = read_doc("README.md");
    let dir = repo_root().join("docs");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".md") && name != "README.md" {
            assert!(
                index.contains(&format!("]({name})")),
                "docs/README.md does not link {name}"
            );
        }
    }
}

/// The files git tracks, or, outside a git checkout, every file but
/// `target/`'s.
fn tracked_files(root: &Path) -> Vec<PathBuf> {
    let listed = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|o| o.status.success());
    if let Some(out) = listed {
        return out
            .stdout
            .split(|&b| b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| root.join(String::from_utf8_lossy(p).as_ref()))
            .collect();
    }
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if name == "target" || name == ".git" {
                continue;
            }
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// The repository is what a newcomer clones: a reference to a document
/// outside it is a dead end. The docs a reader needs are in `docs/`.
#[test]
fn nothing_refers_to_documents_outside_the_repository() {
    // Spelled in pieces, so that this file does not match itself.
    let outside = [
        concat!("SPEC", " §"),
        concat!("SPEC", ".md"),
        concat!("../", "shared/"),
    ];
    let root = repo_root();
    let mut found = Vec::new();
    for path in tracked_files(&root) {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue; // not text, or deleted in the work tree
        };
        for (n, line) in text.lines().enumerate() {
            if outside.iter().any(|o| line.contains(o)) {
                let shown = path.strip_prefix(&root).unwrap_or(&path).display();
                found.push(format!("{shown}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "point these at the repository's docs/ instead:\n{}",
        found.join("\n")
    );
}

/// A heading's anchor as GitHub makes it: lower case, punctuation other
/// than `-` and `_` dropped, spaces as `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(doc: &str) -> Vec<String> {
    let mut in_code = false;
    let mut out = Vec::new();
    for line in doc.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        }
        let level = line.chars().take_while(|&c| c == '#').count();
        if !in_code && level > 0 && line[level..].starts_with(' ') {
            out.push(slug(&line[level..]));
        }
    }
    out
}

#[test]
fn slugs_are_githubs() {
    assert_eq!(slug(" `get --format json`"), "get---format-json");
    assert_eq!(slug(" The daemon's environment"), "the-daemons-environment");
    assert_eq!(slug(" `[credentials.NAME]`"), "credentialsname");
    assert_eq!(slug(" `kind = \"gke-cluster\"`"), "kind--gke-cluster");
}

/// Links between the pages (`cli.md#exit-codes`, `#validation`) lead to a
/// heading that exists, and linked pages exist.
#[test]
fn links_between_the_docs_resolve() {
    let dir = repo_root().join("docs");
    let mut broken = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !name.ends_with(".md") {
            continue;
        }
        let doc = read_doc(&name);
        for link in doc
            .split("](")
            .skip(1)
            .filter_map(|rest| rest.split(')').next())
        {
            if link.contains("://") || link.starts_with("../") {
                continue;
            }
            let (file, anchor) = link.split_once('#').unwrap_or((link, ""));
            let target = if file.is_empty() { name.as_str() } else { file };
            let Ok(text) = std::fs::read_to_string(dir.join(target)) else {
                broken.push(format!("{name}: {link} (no such page)"));
                continue;
            };
            if !anchor.is_empty() && !anchors(&text).iter().any(|a| a == anchor) {
                broken.push(format!("{name}: {link} (no such heading)"));
            }
        }
    }
    // The README's links into docs/.
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    for link in readme
        .split("](docs/")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
    {
        let (file, anchor) = link.split_once('#').unwrap_or((link, ""));
        match std::fs::read_to_string(dir.join(file)) {
            Ok(text) if anchor.is_empty() || anchors(&text).iter().any(|a| a == anchor) => {}
            _ => broken.push(format!("README.md: docs/{link}")),
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// Every environment variable the code reads by a name with one of these
/// prefixes (a string literal such as `"AZURE_TENANT_ID"`) is listed in
/// configuration.md. `CREDCACHE_<NAME>_TOKEN` literals are examples of
/// the default `env_var`, not variables credcache reads.
#[test]
fn every_environment_variable_read_is_documented() {
    const PREFIXES: [&str; 7] = [
        "CREDCACHE_",
        "AZURE_",
        "GOOGLE_",
        "GCE_",
        "IDENTITY_",
        "CLOUDSDK_",
        "KUBERNETES_",
    ];
    let doc = read_doc("configuration.md");
    let root = repo_root();
    let mut seen = std::collections::BTreeSet::new();
    for path in tracked_files(&root) {
        let relative = path.strip_prefix(&root).unwrap_or(&path);
        let in_code = ["client/src/", "daemon/src/", "shared/src/"]
            .iter()
            .any(|dir| relative.starts_with(dir));
        if !in_code || path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for literal in text.split('"').skip(1).step_by(2) {
            let is_name = literal.len() > 1
                && literal
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if is_name
                && PREFIXES
                    .iter()
                    .any(|p| literal.starts_with(p) && literal.len() > p.len())
                && !(literal.starts_with("CREDCACHE_") && literal.ends_with("_TOKEN"))
            {
                seen.insert(literal.to_owned());
            }
        }
    }
    assert!(
        seen.contains("CREDCACHE_CONFIG"),
        "the scan found nothing: {seen:?}"
    );
    let missing: Vec<&String> = seen
        .iter()
        .filter(|v| !doc.contains(&format!("`{v}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md does not name these variables: {missing:?}"
    );
}
