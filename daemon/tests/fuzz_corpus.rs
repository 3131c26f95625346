//! Replays the fuzz corpora (`fuzz/corpus/TARGET/*`) through the same
//! target bodies and invariant checks the fuzzers run
//! (`credcache_daemon::fuzzing`), on the stable toolchain and without
//! libFuzzer, so that CI checks every input a fuzzer ever kept, crashes
//! found and fixed included, on every run.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use credcache_daemon::fuzzing;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Runs every file of one corpus; names each one that breaks an invariant.
fn replay(target: &str, run: fn(&[u8])) {
    let dir = fuzz_dir().join("corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    let failed: Vec<String> = files
        .iter()
        .filter(|file| {
            let data = std::fs::read(file).expect("a corpus file");
            catch_unwind(AssertUnwindSafe(|| run(&data))).is_err()
        })
        .map(|file| file.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs break an invariant (see the panics above); \
         reproduce with `RUSTC_BOOTSTRAP=1 cargo fuzz run {target} FILE` in fuzz/:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

macro_rules! replay_each {
    ($($target:ident),+ $(,)?) => {
        $(
            #[test]
            fn $target() {
                replay(stringify!($target), fuzzing::$target);
            }
        )+

        /// The targets replayed here, to check against the list.
        const REPLAYED: &[&str] = &[$(stringify!($target)),+];
    };
}

replay_each!(
    frame_decoder,
    config_parser,
    timestamp,
    token_response,
    gke_answer,
    container_app_answer,
    apim_answer,
    azure_cli_output,
    command_output,
    error_answer,
    sanitize,
    external_account,
    azd_output,
    managed_identity_answer,
);

/// Every target in `fuzzing::TARGETS` is replayed here, has a fuzz target
/// file and a corpus, and no corpus or fuzz target is left without one.
#[test]
fn targets_corpora_and_fuzz_targets_match() {
    let mut listed: Vec<&str> = fuzzing::TARGETS.iter().map(|(name, _)| *name).collect();
    listed.sort_unstable();
    let mut replayed = REPLAYED.to_vec();
    replayed.sort_unstable();
    assert_eq!(listed, replayed);
    let names_in = |sub: &str, strip: &str| {
        let mut names: Vec<String> = std::fs::read_dir(fuzz_dir().join(sub))
            .expect(sub)
            .map(|e| e.expect("a directory entry").file_name())
            .map(|n| n.to_string_lossy().trim_end_matches(strip).to_owned())
            .collect();
        names.sort_unstable();
        names
    };
    assert_eq!(names_in("corpus", ""), listed);
    assert_eq!(names_in("fuzz_targets", ".rs"), listed);
}
