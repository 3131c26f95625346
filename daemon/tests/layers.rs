//! The daemon's top-level modules depend on each other in one direction
//! only: the import graph between them (a submodule counts as its parent)
//! has no cycle. ARCHITECTURE.md lists the layers.
//!
//! The graph is read from the sources: every `crate::x` path and every
//! `super::` path that climbs out of its top-level module, in `use`
//! statements and in code alike, test modules included. Comments and
//! string literals are skipped, so a doc link is not an import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module → the modules it imports, each with the first file that does.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

#[test]
fn daemon_modules_import_each_other_without_a_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph_of(&src);
    // A parser that found nothing would pass vacuously.
    assert!(
        graph["engine"].contains_key("providers") && graph["server"].contains_key("engine"),
        "the import graph looks wrong: {graph:#?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!("{}", describe(&graph, &cycle));
    }
}

#[test]
fn a_cycle_is_found_and_named() {
    let files = [
        ("engine.rs", "use crate::providers::{self, Provider};\n"),
        (
            "providers.rs",
            "// crate::nothing in a comment\nmod x { use super::super::http; }\nconst S: &str = \"crate::nothing\";\n",
        ),
        (
            "providers/gke.rs",
            "use super::Fetched;\nfn f() { crate::engine::go() }\n",
        ),
        ("http.rs", "use crate::{clock::Clock, fetch_error};\n"),
        ("clock.rs", ""),
        ("fetch_error.rs", ""),
    ];
    let tmp = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let path = tmp.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let graph = graph_of(tmp.path());
    let edges = |m: &str| graph[m].keys().cloned().collect::<Vec<_>>();
    assert_eq!(edges("providers"), ["engine", "http"]);
    assert_eq!(edges("http"), ["clock", "fetch_error"]);
    let cycle = find_cycle(&graph).expect("engine <-> providers is a cycle");
    let message = describe(&graph, &cycle);
    assert!(
        message.contains("engine -> providers -> engine"),
        "{message}"
    );
    assert!(message.contains("providers/gke.rs"), "{message}");
}

/// The import graph of the crate whose sources are in `src`.
fn graph_of(src: &Path) -> Graph {
    let mut graph = Graph::new();
    for file in rust_files(src) {
        let rel = file.strip_prefix(src).unwrap();
        let parts: Vec<String> = rel
            .with_extension("")
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| p != "mod")
            .collect();
        if parts == ["lib"] || parts == ["main"] {
            continue;
        }
        let module = parts[0].clone();
        let text = std::fs::read_to_string(&file).unwrap();
        let edges = graph.entry(module.clone()).or_default();
        for target in imports(&code_only(&text), parts.len()) {
            if target != module {
                // Named with `/` on every platform, as ARCHITECTURE.md
                // names files, not with Windows' `\`.
                edges.entry(target).or_insert_with(|| {
                    rel.iter()
                        .map(|p| p.to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/")
                });
            }
        }
    }
    // Only edges between modules of this crate.
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for edges in graph.values_mut() {
        edges.retain(|to, _| modules.contains(to));
    }
    graph
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// `text` with comments, string and char literals blanked out (newlines
/// kept).
fn code_only(text: &str) -> Vec<char> {
    let c: Vec<char> = text.chars().collect();
    let mut out = Vec::with_capacity(c.len());
    let mut i = 0;
    let blank = |out: &mut Vec<char>, s: &[char]| {
        out.extend(s.iter().map(|&ch| if ch == '\n' { '\n' } else { ' ' }))
    };
    while i < c.len() {
        let rest = &c[i..];
        let end = if rest.starts_with(&['/', '/']) {
            i + rest.iter().position(|&ch| ch == '\n').unwrap_or(rest.len())
        } else if rest.starts_with(&['/', '*']) {
            i + 2 + find(&rest[2..], &['*', '/']).map_or(rest.len() - 2, |p| p + 2)
        } else if rest[0] == 'r'
            && rest.get(1).is_some_and(|&ch| ch == '"' || ch == '#')
            && (i == 0 || !is_ident(c[i - 1]))
        {
            let hashes = rest[1..].iter().take_while(|&&ch| ch == '#').count();
            let close: Vec<char> = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let open = 1 + hashes + 1;
            i + open + find(&rest[open..], &close).map_or(rest.len() - open, |p| p + close.len())
        } else if rest[0] == '"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != '"' {
                j += if rest[j] == '\\' { 2 } else { 1 };
            }
            i + (j + 1).min(rest.len())
        } else if rest[0] == '\'' && rest.get(1) == Some(&'\\') {
            i + 2
                + rest[2..]
                    .iter()
                    .position(|&ch| ch == '\'')
                    .map_or(0, |p| p + 1)
        } else if rest[0] == '\'' && rest.get(2) == Some(&'\'') {
            i + 3
        } else {
            out.push(rest[0]);
            i += 1;
            continue;
        };
        blank(&mut out, &c[i..end]);
        i = end;
    }
    out
}

fn find(hay: &[char], needle: &[char]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn is_ident(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// The top-level modules `code` (of a file `file_depth` modules deep)
/// names through `crate::` or through enough `super::` to reach the root.
fn imports(code: &[char], file_depth: usize) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    // Whether each open brace opened an inline `mod`.
    let mut braces: Vec<bool> = Vec::new();
    let mut i = 0;
    while i < code.len() {
        let starts_path = i == 0 || !(is_ident(code[i - 1]) || code[i - 1] == '$');
        match code[i] {
            '{' => {
                braces.push(opens_mod(&code[..i]));
                i += 1;
            }
            '}' => {
                braces.pop();
                i += 1;
            }
            _ if starts_path && code[i..].starts_with(&chars("crate::")) => {
                i += "crate::".len();
                found.extend(first_segments(&code[i..]));
            }
            _ if starts_path && code[i..].starts_with(&chars("super::")) => {
                let mut ups = 0;
                while code[i..].starts_with(&chars("super::")) {
                    ups += 1;
                    i += "super::".len();
                }
                let depth = file_depth + braces.iter().filter(|&&m| m).count();
                if ups >= depth {
                    found.extend(first_segments(&code[i..]));
                }
            }
            _ => i += 1,
        }
    }
    found
}

fn chars(s: &str) -> Vec<char> {
    s.chars().collect()
}

/// Whether the code before a `{` ends in `mod name`.
fn opens_mod(before: &[char]) -> bool {
    let text: String = before
        .iter()
        .rev()
        .take(200)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let mut words = text.split_whitespace().rev();
    let name = words.next().unwrap_or("");
    words.next() == Some("mod") && name.chars().all(is_ident)
}

/// The first segment of the path at the start of `rest`, or of each path
/// in a `{a::b, c}` group.
fn first_segments(rest: &[char]) -> Vec<String> {
    if rest.first() != Some(&'{') {
        let name: String = rest.iter().take_while(|&&ch| is_ident(ch)).collect();
        return vec![name];
    }
    let mut names = Vec::new();
    let mut depth = 0;
    let mut current = String::new();
    let mut taking = true;
    for &ch in &rest[1..] {
        match ch {
            '{' => {
                depth += 1;
                taking = false;
            }
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                names.push(std::mem::take(&mut current));
                taking = true;
            }
            ch if taking && is_ident(ch) => current.push(ch),
            ch if !ch.is_whitespace() => taking = false,
            _ => {}
        }
    }
    names.push(current);
    names.retain(|n| !n.is_empty() && n != "self");
    names
}

/// A cycle in `graph`, as the modules along it (the first repeated last).
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        graph: &Graph,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flat_map(|e| e.keys()) {
            if let Some(cycle) = visit(graph, next, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(graph, n, &mut Vec::new(), &mut done))
}

fn describe(graph: &Graph, cycle: &[String]) -> String {
    let because: Vec<String> = cycle
        .windows(2)
        .map(|w| format!("{} imports {}", graph[&w[0]][&w[1]], w[1]))
        .collect();
    format!(
        "import cycle between daemon modules: {} ({})",
        cycle.join(" -> "),
        because.join(", ")
    )
}
