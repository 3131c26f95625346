//! `credcached`'s own command line. (Having an integration test here also
//! makes `cargo test --workspace` build the binary the end-to-end tests in
//! `tests/` run.)

use std::process::Command;

fn credcached() -> Command {
    Command::new(env!("CARGO_BIN_EXE_credcached"))
}

#[test]
fn version_and_help() {
    let out = credcached().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("credcached {}\n", env!("CARGO_PKG_VERSION"))
    );
    let out = credcached().arg("--help").output().unwrap();
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .starts_with("usage: credcached")
    );
}

#[test]
fn bad_arguments_are_usage_errors() {
    let out = credcached().arg("--frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("credcached: unexpected argument \"--frobnicate\""),
        "{err}"
    );
    let out = credcached().arg("--config").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
