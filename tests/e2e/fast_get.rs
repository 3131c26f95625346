//! The client as it is packaged: `install.sh` builds it with the `client`
//! profile and links it statically on Linux with glibc
//! (`packaging/client-target.sh`), and that build has no dynamic loader and
//! serves `get` through the fast path (`client/src/fast_get.rs`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{Sandbox, bin_dir};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// What `packaging/client-target.sh` decides here: the triple to build the
/// static client for and the RUSTFLAGS to build it with (with none of the
/// caller's), or `None` (not glibc, or no static libc).
fn static_build() -> Option<(String, String)> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(". packaging/client-target.sh && client_static_target && RUSTFLAGS= client_static_rustflags")
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = String::from_utf8(out.stdout).unwrap();
    let mut lines = out.lines();
    let target = lines.next().filter(|t| !t.is_empty())?.to_owned();
    Some((target, lines.next().unwrap().to_owned()))
}

/// Whether an ELF file names a program interpreter (`PT_INTERP`): a
/// dynamically linked executable does, a static one does not.
fn has_interpreter(path: &Path) -> bool {
    let elf = std::fs::read(path).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF", "{} is not ELF", path.display());
    assert_eq!(elf[4], 2, "64-bit ELF only");
    assert_eq!(elf[5], 1, "little-endian ELF only");
    let u16_at = |at: usize| usize::from(u16::from_le_bytes([elf[at], elf[at + 1]]));
    let phoff = usize::try_from(u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap())).unwrap();
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let at = phoff + i * phentsize;
        u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) == 3 // PT_INTERP
    })
}

#[test]
fn install_sh_builds_the_client_with_the_client_profile_and_statically() {
    let sb = Sandbox::new();
    // A `cargo` that records how it is called and "installs" the debug
    // binaries, so that install.sh can go on to run them.
    let fake = sb.dir.path().join("fake-cargo");
    std::fs::create_dir_all(&fake).unwrap();
    let log = fake.join("cargo.log");
    let script = fake.join("cargo");
    std::fs::write(
        &script,
        format!(
            r#"#!/bin/sh
printf '%s|%s\n' "${{RUSTFLAGS:-}}" "$*" >> '{log}'
root= path=
while [ $# -gt 0 ]; do
    case "$1" in
        --root) root=$2; shift ;;
        --path) path=$2; shift ;;
    esac
    shift
done
case "$path" in */client) bin=credcache ;; *) bin=credcached ;; esac
mkdir -p "$root/bin" && cp '{bins}'/"$bin" "$root/bin/$bin"
"#,
            log = log.display(),
            bins = bin_dir().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = sb.dir.path().join("root");
    let mut install = Command::new("sh");
    install.arg(repo().join("packaging/install.sh")).env_clear();
    // install.sh asks the real `rustc` for the host triple: under rustup it
    // needs rustup's home, which the sandbox's HOME does not have.
    let rustup_home = std::env::var_os("RUSTUP_HOME")
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".rustup").into()));
    for (key, value) in [
        ("RUSTUP_HOME", rustup_home),
        ("RUSTUP_TOOLCHAIN", std::env::var_os("RUSTUP_TOOLCHAIN")),
    ] {
        if let Some(value) = value {
            install.env(key, value);
        }
    }
    let out = install
        .env("HOME", &sb.home)
        .env(
            "PATH",
            format!(
                "{}:{}",
                fake.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("CARGO_INSTALL_ROOT", &root)
        .env("RUSTFLAGS", "-C debuginfo=0")
        .env("CREDCACHE_SOCKET", &sb.socket)
        .env("CREDCACHE_DATA_DIR", &sb.data)
        .output()
        .unwrap();
    assert!(out.status.success(), "install.sh: {out:?}");
    assert!(root.join("bin/credcache").is_file());

    let calls = std::fs::read_to_string(&log).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    let client_path = format!("--path {}", repo().join("client").display());
    let (client_flags, client) = calls[0].split_once('|').unwrap();
    assert!(client.starts_with("install --locked"), "{client}");
    assert!(client.contains("--profile client"), "{client}");
    assert!(client.ends_with(&client_path), "{client}");
    match static_build() {
        Some((target, flags)) => {
            assert!(client.contains(&format!("--target {target}")), "{client}");
            assert!(flags.contains("-C target-feature=+crt-static"), "{flags}");
            // The caller's flags are kept, and the static ones added.
            assert_eq!(client_flags, format!("-C debuginfo=0 {flags}"));
        }
        None => {
            assert!(!client.contains("--target"), "{client}");
            assert_eq!(client_flags, "-C debuginfo=0");
        }
    }
    // The daemon stays dynamic, in the release profile.
    let (daemon_flags, daemon) = calls[1].split_once('|').unwrap();
    assert_eq!(daemon_flags, "-C debuginfo=0");
    assert!(!daemon.contains("--profile"), "{daemon}");
    assert!(
        daemon.ends_with(&format!("--path {}", repo().join("daemon").display())),
        "{daemon}"
    );
}

#[test]
fn the_static_client_has_no_interpreter_and_serves_get() {
    // The debug client the tests build is dynamic: the check below can fail.
    assert!(has_interpreter(&bin_dir().join("credcache")));
    let Some((target, flags)) = static_build() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI builds on Linux with glibc and static libc"
        );
        eprintln!("skipped: no static client on this platform");
        return;
    };
    // The flags install.sh and deb/build.sh use, in the test profile (the
    // `client` profile only adds optimisation and panic = "abort"), in a
    // the tests' target directory (under the triple, so the tests' own
    // binaries stay as they are).
    let target_dir = bin_dir().parent().unwrap().to_path_buf();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--locked", "-p", "credcache", "--bin", "credcache"])
        .args(["--target", &target])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTFLAGS", &flags)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo build: {out:?}");
    let built = target_dir.join(&target).join("debug/credcache");
    assert!(!has_interpreter(&built), "{} is dynamic", built.display());

    // `install.sh --bin-dir` installs that build as it is: the client it
    // puts on PATH is the static one, and takes the fast path below.
    let sb = Sandbox::new();
    let bins = sb.dir.path().join("bins");
    std::fs::create_dir_all(&bins).unwrap();
    std::fs::copy(&built, bins.join("credcache")).unwrap();
    std::fs::copy(bin_dir().join("credcached"), bins.join("credcached")).unwrap();
    let prefix = sb.dir.path().join("prefix");
    let out = Command::new("sh")
        .arg(repo().join("packaging/install.sh"))
        .arg("--bin-dir")
        .arg(&bins)
        .arg("--prefix")
        .arg(&prefix)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &sb.home)
        .env("CREDCACHE_SOCKET", &sb.socket)
        .env("CREDCACHE_DATA_DIR", &sb.data)
        .output()
        .unwrap();
    assert!(out.status.success(), "install.sh --bin-dir: {out:?}");
    let client = prefix.join("bin/credcache");
    assert!(!has_interpreter(&client), "{} is dynamic", client.display());

    // It takes the fast path against a running daemon: the same token, and
    // the same error as the tests' own client.
    let sb = Sandbox::new();
    let (script, _) = sb.counting_script("v");
    sb.write_config(&Sandbox::command_credential("vault", &script));
    assert_eq!(sb.get("vault"), "tok-1-v");
    let got = sb
        .command_for(&client)
        .args(["get", "vault"])
        .output()
        .unwrap();
    assert!(got.status.success(), "{got:?}");
    assert_eq!(String::from_utf8(got.stdout).unwrap(), "tok-1-v\n");
    let missing = sb
        .command_for(&client)
        .args(["get", "nope", "--format=json"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(4), "{missing:?}");
    let stderr = String::from_utf8(missing.stderr).unwrap();
    assert!(
        stderr.starts_with("credcache: cannot get a token for nope: "),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
