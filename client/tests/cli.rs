//! `credcache`'s command line, without a daemon. (Having an integration
//! test here also makes `cargo test --workspace` build the binary the
//! end-to-end tests in `tests/` run.)

use std::process::{Command, Output};

fn credcache(args: &[&str]) -> Output {
    let tmp = std::env::temp_dir();
    Command::new(env!("CARGO_BIN_EXE_credcache"))
        .args(args)
        .env(
            "CREDCACHE_CONFIG",
            tmp.join("credcache-cli-test-missing.toml"),
        )
        .env(
            "CREDCACHE_SOCKET",
            tmp.join("credcache-cli-test-no-daemon.sock"),
        )
        .env("CREDCACHE_NO_AUTOSTART", "1")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn version() {
    let out = credcache(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        format!("credcache {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_lists_every_command() {
    let out = credcache(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for cmd in [
        "get",
        "exec",
        "list",
        "status",
        "refresh",
        "forget",
        "config",
        "daemon",
        "kubeconfig",
        "completions",
        "man",
    ] {
        assert!(
            help.contains(&format!("\n  {cmd} ")),
            "{cmd} missing from:\n{help}"
        );
    }
}

#[test]
fn usage_errors_are_one_line_and_exit_2() {
    for args in [
        &["get"][..],
        &["get", "x", "--format", "yaml"],
        &["frobnicate"],
        &["refresh"],
        &["refresh", "x", "--all"],
    ] {
        let out = credcache(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let err = text(&out.stderr);
        assert!(err.starts_with("credcache: "), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
}

#[test]
fn no_daemon_and_no_autostart_is_exit_3() {
    let out = credcache(&["get", "google"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("credcache daemon start"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn completions_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = credcache(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        assert!(text(&out.stdout).contains("credcache"), "{shell}");
    }
}

#[test]
fn config_path_and_check_without_a_file() {
    let out = credcache(&["config", "path"]);
    assert!(
        text(&out.stdout)
            .trim_end()
            .ends_with("credcache-cli-test-missing.toml")
    );
    let out = credcache(&["config", "check"]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("no config file"),
        "{}",
        text(&out.stdout)
    );
}
