//! The `credcache` and `credcached` binaries the tests run. They belong to
//! other packages, so `cargo test -p credcache-tests` alone does not build
//! them: [`bin_dir`] does, once per test process, when they are missing or
//! older than their sources. On Windows it never builds: the tests run
//! under Wine there, which can start the Linux cargo but would hand it a
//! Windows path (`Z:\...`) as the target directory, and that cargo then
//! creates a directory of that literal name in the workspace. There the
//! binaries must be built first (`.ci/windows` does), and a missing one is
//! a panic that names the command.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

/// The binaries, and the packages they come from.
const BINS: [&str; 2] = ["credcache", "credcached"];
const PACKAGES: [&str; 2] = ["credcache", "credcache-daemon"];
/// The workspace directories whose Rust sources go into each binary (in
/// `BINS` order): a binary is stale only when one of its own sources is
/// newer, since cargo relinks neither for the other's changes.
const SOURCE_DIRS: [&[&str]; 2] = [&["client/src", "shared/src"], &["daemon/src", "shared/src"]];

/// The directory holding the binaries: the profile directory of the
/// running executable (`target/<profile>/`, whatever `CARGO_TARGET_DIR`
/// and the profile are), built there first if need be.
pub fn bin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = profile_dir();
        if let Some(why) = needs_build(&dir) {
            if cfg!(windows) {
                panic!("{why}: {}", WINDOWS_BUILD);
            }
            build(&dir, &why);
        }
        dir
    })
    .clone()
}

/// What to run before the tests on Windows, where they do not build the
/// binaries themselves.
const WINDOWS_BUILD: &str = "build them first with `cargo build --workspace --bins --target \
x86_64-pc-windows-gnu` (with the environment .ci/windows sets), or run .ci/windows";

/// `target/<profile>/`: a test executable lives in its `deps/`, a binary
/// (the benchmark) in it.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own executable");
    let dir = exe.parent().expect("the executable's directory");
    match dir.file_name() {
        Some(name) if name == "deps" => dir.parent().expect("target dir").to_path_buf(),
        _ => dir.to_path_buf(),
    }
}

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace holds the tests package")
}

/// Why the binaries must be built, if they must.
fn needs_build(dir: &Path) -> Option<String> {
    for (bin, sources) in BINS.iter().zip(SOURCE_DIRS) {
        let path = dir.join(exe(bin));
        let Ok(built) = path.metadata().and_then(|m| m.modified()) else {
            return Some(format!("{} is missing", path.display()));
        };
        let newest = sources
            .iter()
            .filter_map(|d| newest_rust_source(&workspace().join(d)))
            .max();
        if newest.is_some_and(|newest| newest > built) {
            return Some(format!("{} is older than its sources", path.display()));
        }
    }
    None
}

/// The latest modification time of a `.rs` file under `dir`.
fn newest_rust_source(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && let Ok(modified) = meta.modified()
            {
                newest = newest.max(Some(modified));
            }
        }
    }
    newest
}

/// `cargo build -p credcache -p credcache-daemon --bins` into `dir`, with
/// the profile and target directory of the running tests.
fn build(dir: &Path, why: &str) {
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let target_dir = dir.parent().expect("target dir");
    let cargo = std::env::var_os("CARGO")
        .or_else(|| option_env!("CARGO").map(Into::into))
        .unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace())
        .args(["build", "--quiet", "--bins", "--profile", profile])
        .arg("--target-dir")
        .arg(target_dir);
    for package in PACKAGES {
        command.args(["-p", package]);
    }
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{why}, and cargo cannot be run to build it: {e}"));
    assert!(
        out.status.success(),
        "{why}, and `{command:?}` failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for bin in BINS {
        assert!(
            dir.join(exe(bin)).is_file(),
            "cargo built, but {} is not there",
            dir.join(exe(bin)).display()
        );
    }
}

/// A program's file name on this platform (`credcache.exe` on Windows).
pub fn exe(name: &str) -> String {
    format!("{name}{}", std::env::consts::EXE_SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_need_a_build() {
        let dir = tempfile::tempdir().unwrap();
        let why = needs_build(dir.path()).unwrap();
        assert!(
            why.ends_with(&format!("{} is missing", exe("credcache"))),
            "{why}"
        );
    }

    #[test]
    fn binaries_newer_than_every_source_need_none_and_older_ones_do() {
        let dir = tempfile::tempdir().unwrap();
        let newest_of = |dirs: &[&str]| {
            dirs.iter()
                .filter_map(|d| newest_rust_source(&workspace().join(d)))
                .max()
                .expect("the workspace has sources")
        };
        let newest = newest_of(&SOURCE_DIRS.concat());
        for bin in BINS {
            let file = std::fs::File::create(dir.path().join(exe(bin))).unwrap();
            file.set_modified(newest + std::time::Duration::from_secs(1))
                .unwrap();
        }
        assert_eq!(needs_build(dir.path()), None);
        let file = std::fs::File::options()
            .write(true)
            .open(dir.path().join(exe("credcached")))
            .unwrap();
        file.set_modified(newest_of(SOURCE_DIRS[1]) - std::time::Duration::from_secs(1))
            .unwrap();
        let why = needs_build(dir.path()).unwrap();
        assert!(
            why.ends_with(&format!("{} is older than its sources", exe("credcached"))),
            "{why}"
        );
    }

    #[test]
    fn the_profile_dir_is_above_deps() {
        let dir = profile_dir();
        assert_ne!(dir.file_name().unwrap(), "deps");
        assert!(std::env::current_exe().unwrap().starts_with(&dir));
    }
}
