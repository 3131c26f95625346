//! What `packaging/` and `credcache daemon install-service` put on a
//! machine: units that `systemd-analyze verify` accepts, the service
//! manager driven the right way (a fake `systemctl`/`launchctl` records its
//! arguments), `install.sh` run twice, and the .deb's file list.
//!
//! Tools that come from Debian packages (`systemd-analyze`, `dpkg-deb`)
//! are installed by `.ci/run`; with `CI` set their absence fails the test,
//! elsewhere it is skipped with a line saying so.

use std::collections::BTreeSet;
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

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

fn required(program: &str) -> bool {
    if have(program) {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{program} is missing; .ci/run installs it"
    );
    eprintln!("skipped: {program} is not installed");
    false
}

/// A directory holding a fake `name` that appends its arguments as one
/// line to `<dir>/<name>.log` and exits with `code`.
fn fake_tool(sb: &Sandbox, name: &str, code: i32) -> PathBuf {
    let dir = sb.dir.path().join(format!("fake-{name}-{code}"));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join(name);
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexit {code}\n",
            dir.join(format!("{name}.log")).display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn calls(dir: &Path, name: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(format!("{name}.log")))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn units_pass_systemd_analyze_verify() {
    if !required("systemd-analyze") {
        return;
    }
    let sb = Sandbox::new();
    let units = sb.dir.path().join("units");
    let out = sb.run([
        "daemon",
        "install-service",
        "--no-enable",
        "--unit-dir",
        units.to_str().unwrap(),
    ]);
    out.ok();
    assert!(
        out.stderr
            .contains("systemctl --user enable --now credcached.socket"),
        "{out:?}"
    );
    let service = std::fs::read_to_string(units.join("credcached.service")).unwrap();
    let daemon = bin_dir().join("credcached");
    assert!(
        service.contains(&format!("\nExecStart={}\n", daemon.display())),
        "{service}"
    );

    let runtime = sb.dir.path().join("xdg-runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    let verify = |dir: &Path| {
        Command::new("systemd-analyze")
            .args(["--user", "verify", "--man=no"])
            .arg(dir.join("credcached.socket"))
            .arg(dir.join("credcached.service"))
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("HOME", &sb.home)
            .output()
            .unwrap()
    };
    let out = verify(&units);
    // Problems that systemd only warns about ("ignoring") count too.
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The check has teeth: a unit naming a missing binary fails it.
    let broken = sb.dir.path().join("broken");
    sb.run([
        "daemon",
        "install-service",
        "--no-enable",
        "--unit-dir",
        broken.to_str().unwrap(),
        "--bin-dir",
        "/nonexistent",
    ])
    .ok();
    assert!(!verify(&broken).status.success());
}

#[test]
fn install_service_stops_a_started_daemon_and_enables_the_socket() {
    let sb = Sandbox::new();
    let (script, _) = sb.counting_script("v");
    sb.write_config(&Sandbox::command_credential("vault", &script));
    sb.get("vault");
    assert!(sb.daemon_pid_alive().is_some());

    let fake = fake_tool(&sb, "systemctl", 0);
    let out = sb
        .command("credcache")
        .args(["daemon", "install-service"])
        .env("PATH", path_with(&fake))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let units = sb.home.join(".config/systemd/user");
    let service = std::fs::read_to_string(units.join("credcached.service")).unwrap();
    assert!(service.contains("Type=notify"));
    assert!(units.join("credcached.socket").is_file());
    assert_eq!(
        calls(&fake, "systemctl"),
        [
            "--user daemon-reload",
            "--user enable --now credcached.socket"
        ]
    );
    sb.wait_lock_free();
    assert!(
        sb.daemon_pid_alive().is_none(),
        "the client-started daemon was stopped so systemd's can take the socket"
    );

    let out = sb
        .command("credcache")
        .args(["daemon", "uninstall-service"])
        .env("PATH", path_with(&fake))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!units.join("credcached.service").exists());
    assert!(!units.join("credcached.socket").exists());
    assert_eq!(
        calls(&fake, "systemctl")[2..],
        [
            "--user disable --now credcached.socket credcached.service",
            "--user daemon-reload"
        ]
    );
    // Nothing left to remove is not an error.
    sb.run(["daemon", "uninstall-service"]).ok();
}

#[test]
fn without_a_working_systemctl_the_files_stay_and_the_error_says_what_to_run() {
    let sb = Sandbox::new();
    let by_hand =
        "systemctl --user daemon-reload && systemctl --user enable --now credcached.socket";

    let failing = fake_tool(&sb, "systemctl", 1);
    let out: crate::harness::Out = sb
        .command("credcache")
        .args(["daemon", "install-service"])
        .env("PATH", path_with(&failing))
        .output()
        .unwrap()
        .into();
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("`systemctl --user daemon-reload` failed"),
        "{out:?}"
    );
    assert!(out.stderr.contains(by_hand), "{out:?}");
    assert!(
        sb.home
            .join(".config/systemd/user/credcached.socket")
            .is_file()
    );

    let empty = sb.dir.path().join("empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    let out: crate::harness::Out = sb
        .command("credcache")
        .args(["daemon", "install-service"])
        .env("PATH", &empty)
        .output()
        .unwrap()
        .into();
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("systemctl is not on PATH"), "{out:?}");
    assert!(out.stderr.contains(by_hand), "{out:?}");
}

#[test]
fn launchd_agent_is_a_valid_plist_and_bootstrapped() {
    let sb = Sandbox::new();
    let fake = fake_tool(&sb, "launchctl", 0);
    let out = sb
        .command("credcache")
        .args(["daemon", "install-service", "--platform", "launchd"])
        .env("PATH", path_with(&fake))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let plist = sb
        .home
        .join("Library/LaunchAgents/dev.credcache.credcached.plist");
    let uid = rustix::process::getuid().as_raw();
    assert_eq!(
        calls(&fake, "launchctl"),
        [
            format!("bootout gui/{uid}/dev.credcache.credcached"),
            format!("bootstrap gui/{uid} {}", plist.display()),
        ]
    );
    assert!(sb.home.join("Library/Logs/credcache").is_dir());

    if required("python3") {
        let out = Command::new("python3")
            .args([
                "-c",
                "import json, plistlib, sys; print(json.dumps(plistlib.load(open(sys.argv[1], 'rb'))))",
            ])
            .arg(&plist)
            .output()
            .unwrap();
        assert!(out.status.success(), "not a plist: {out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["Label"], "dev.credcache.credcached");
        assert_eq!(
            v["ProgramArguments"],
            serde_json::json!([bin_dir().join("credcached").to_str().unwrap()])
        );
        assert_eq!(v["RunAtLoad"], true);
        assert_eq!(v["KeepAlive"]["SuccessfulExit"], false);
        assert!(
            v["StandardErrorPath"]
                .as_str()
                .unwrap()
                .ends_with("Library/Logs/credcache/credcached.log")
        );
    }

    let out = sb
        .command("credcache")
        .args(["daemon", "uninstall-service", "--platform", "launchd"])
        .env("PATH", path_with(&fake))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!plist.exists());
    assert_eq!(
        calls(&fake, "launchctl").last().unwrap(),
        &format!("bootout gui/{uid}/dev.credcache.credcached")
    );
}

/// `install-service` for Windows, driven against a stand-in `schtasks`
/// that records its arguments: the task XML is written, registered with
/// /Create /XML ... /F and started with /Run; `uninstall-service` ends and
/// deletes it and removes the file.
#[test]
fn logon_task_is_registered_and_removed_with_schtasks() {
    let sb = Sandbox::new();
    let fake = fake_tool(&sb, "schtasks", 0);
    let out = sb
        .command("credcache")
        .args(["daemon", "install-service", "--platform", "task-scheduler"])
        .env("PATH", path_with(&fake))
        .env_remove("LOCALAPPDATA")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let xml_path = sb.home.join("AppData/Local/credcache/credcached.xml");
    assert_eq!(
        calls(&fake, "schtasks"),
        [
            format!("/Create /TN credcached /XML {} /F", xml_path.display()),
            "/Run /TN credcached".to_owned(),
        ]
    );
    let xml = std::fs::read_to_string(&xml_path).unwrap();
    assert!(
        xml.contains(&format!(
            "<Command>{}</Command>",
            bin_dir().join("credcached").display()
        )),
        "{xml}"
    );
    assert!(xml.contains("<Arguments>--detach</Arguments>"), "{xml}");
    assert!(xml.contains("<LogonTrigger>"), "{xml}");
    if required("python3") {
        let out = Command::new("python3")
            .args([
                "-c",
                "import sys, xml.dom.minidom as m; m.parse(sys.argv[1])",
            ])
            .arg(&xml_path)
            .output()
            .unwrap();
        assert!(out.status.success(), "not well-formed XML: {out:?}");
    }

    let out = sb
        .command("credcache")
        .args([
            "daemon",
            "uninstall-service",
            "--platform",
            "task-scheduler",
        ])
        .env("PATH", path_with(&fake))
        .env_remove("LOCALAPPDATA")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!xml_path.exists());
    assert_eq!(
        calls(&fake, "schtasks")[2..],
        ["/End /TN credcached", "/Delete /TN credcached /F"]
    );
}

/// Every file under `root`, relative, with symlinks as `link -> target`.
fn tree(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                out.insert(format!(
                    "{rel} -> {}",
                    std::fs::read_link(&path).unwrap().display()
                ));
            } else if meta.is_dir() {
                stack.push(path);
            } else {
                out.insert(rel);
            }
        }
    }
    out
}

#[test]
fn install_sh_installs_everything_and_again_with_the_service() {
    let sb = Sandbox::new();
    let prefix = sb.dir.path().join("prefix");
    let fake = fake_tool(&sb, "systemctl", 0);
    let install = |extra: &[&str]| {
        let out = Command::new("sh")
            .arg(repo().join("packaging/install.sh"))
            .arg("--bin-dir")
            .arg(bin_dir())
            .arg("--prefix")
            .arg(&prefix)
            .args(extra)
            .env_clear()
            .env("HOME", &sb.home)
            .env("PATH", path_with(&fake))
            .env("CREDCACHE_SOCKET", &sb.socket)
            .env("CREDCACHE_DATA_DIR", &sb.data)
            .output()
            .unwrap();
        assert!(out.status.success(), "install.sh {extra:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let said = install(&[]);
    assert!(said.contains("done"), "{said}");

    let home = tree(&sb.home);
    for want in [
        ".local/share/bash-completion/completions/credcache",
        ".local/share/zsh/site-functions/_credcache",
        ".config/fish/completions/credcache.fish",
    ] {
        assert!(home.contains(want), "{want} not in {home:#?}");
    }
    // Man pages go beside the binaries, where man(1) looks for them.
    let man = tree(&prefix.join("share/man/man1"));
    for want in ["credcache.1", "credcache-kubeconfig.1"] {
        assert!(man.contains(want), "{want} not in {man:#?}");
    }
    let bin = tree(&prefix.join("bin"));
    assert_eq!(
        bin,
        BTreeSet::from([
            "credcache".to_owned(),
            "credcached".to_owned(),
            "docker-credential-credcache -> credcache".to_owned(),
        ])
    );
    let installed = prefix.join("bin/credcache");
    let version = Command::new(&installed).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("credcache "));
    assert!(
        calls(&fake, "systemctl").is_empty(),
        "no service without --service"
    );

    // Again, with the service: the same files, plus the units for the
    // installed binaries, enabled through systemctl.
    install(&["--service"]);
    let again = tree(&sb.home);
    assert!(home.is_subset(&again));
    let units: BTreeSet<String> = again
        .difference(&home)
        .filter(|p| !p.starts_with("data") && !p.contains(".lock"))
        .cloned()
        .collect();
    assert_eq!(
        units,
        BTreeSet::from([
            ".config/systemd/user/credcached.service".to_owned(),
            ".config/systemd/user/credcached.socket".to_owned(),
        ])
    );
    let service =
        std::fs::read_to_string(sb.home.join(".config/systemd/user/credcached.service")).unwrap();
    assert!(
        service.contains(&format!(
            "ExecStart={}",
            prefix.join("bin/credcached").display()
        )),
        "{service}"
    );
    assert_eq!(
        calls(&fake, "systemctl"),
        [
            "--user daemon-reload",
            "--user enable --now credcached.socket"
        ]
    );

    if have("shellcheck") {
        for script in ["packaging/install.sh", "packaging/deb/build.sh"] {
            let out = Command::new("shellcheck")
                .arg(repo().join(script))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{script}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}

#[test]
fn the_deb_carries_binaries_units_completions_and_man_pages() {
    if !required("dpkg-deb") {
        return;
    }
    let sb = Sandbox::new();
    let out_dir = sb.dir.path().join("deb");
    let built = Command::new("sh")
        .arg(repo().join("packaging/deb/build.sh"))
        .arg("--bin-dir")
        .arg(bin_dir())
        .arg("--out")
        .arg(&out_dir)
        .arg("--fast")
        .output()
        .unwrap();
    assert!(built.status.success(), "{built:?}");
    let deb = PathBuf::from(String::from_utf8_lossy(&built.stdout).trim());
    assert!(deb.starts_with(&out_dir), "{deb:?}");

    let listing = Command::new("dpkg-deb")
        .arg("-c")
        .arg(&deb)
        .output()
        .unwrap();
    assert!(listing.status.success());
    let mut files = BTreeSet::new();
    let mut man_pages = BTreeSet::new();
    for line in String::from_utf8_lossy(&listing.stdout).lines() {
        // drwxr-xr-x root/root 0 2024-01-01 00:00 ./usr/bin/ [-> target]
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (mode, owner, path) = (fields[0], fields[1], fields[5]);
        assert_eq!(owner, "root/root", "{line}");
        if path.ends_with('/') {
            continue;
        }
        let path = path.trim_start_matches("./").to_owned();
        if let Some(page) = path.strip_prefix("usr/share/man/man1/") {
            man_pages.insert(page.to_owned());
            continue;
        }
        match fields.get(7) {
            Some(target) => files.insert(format!("{path} -> {target}")),
            None => {
                let executable = mode.contains('x');
                assert_eq!(executable, path.starts_with("usr/bin/"), "{line}");
                files.insert(path)
            }
        };
    }
    assert_eq!(
        files,
        BTreeSet::from(
            [
                "usr/bin/credcache",
                "usr/bin/credcached",
                "usr/bin/docker-credential-credcache -> credcache",
                "usr/lib/systemd/user/credcached.service",
                "usr/lib/systemd/user/credcached.socket",
                "usr/share/bash-completion/completions/credcache",
                "usr/share/zsh/vendor-completions/_credcache",
                "usr/share/fish/vendor_completions.d/credcache.fish",
                "usr/share/doc/credcache/copyright",
            ]
            .map(str::to_owned)
        )
    );
    // One gzipped page per page `credcache man` writes.
    let pages_dir = sb.dir.path().join("man1");
    sb.run(["man", "--out-dir", pages_dir.to_str().unwrap()])
        .ok();
    let want: BTreeSet<String> = std::fs::read_dir(&pages_dir)
        .unwrap()
        .map(|e| format!("{}.gz", e.unwrap().file_name().to_string_lossy()))
        .collect();
    assert!(want.contains("credcache.1.gz"));
    assert_eq!(man_pages, want);

    let field = |name: &str| {
        let out = Command::new("dpkg-deb")
            .args(["-f"])
            .arg(&deb)
            .arg(name)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(field("Package"), "credcache");
    assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"));

    // The packaged unit runs the packaged binary.
    let root = sb.dir.path().join("unpacked");
    assert!(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(&root)
            .status()
            .unwrap()
            .success()
    );
    let service =
        std::fs::read_to_string(root.join("usr/lib/systemd/user/credcached.service")).unwrap();
    assert!(
        service.contains("\nExecStart=/usr/bin/credcached\n"),
        "{service}"
    );
    assert!(service.contains("\nExecReload=/usr/bin/credcache daemon reload\n"));

    // cargo-deb's metadata in client/Cargo.toml packages the same places.
    let manifest: toml::Table = std::fs::read_to_string(repo().join("client/Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let assets = manifest["package"]["metadata"]["deb"]["assets"]
        .as_array()
        .unwrap();
    // It packages the client build.sh stages (the fast, static build), not
    // target/release's dynamic one.
    let client_sources: Vec<&str> = assets
        .iter()
        .filter_map(|a| a.as_array()?.first()?.as_str())
        .filter(|source| source.ends_with("bin/credcache"))
        .collect();
    assert_eq!(
        client_sources,
        ["../target/deb-assets/usr/bin/credcache"],
        "cargo-deb must package the client build.sh --assets stages"
    );
    // And `build.sh --assets` stages that client beside the generated files.
    let staged = sb.dir.path().join("deb-assets");
    let assets_run = Command::new("sh")
        .arg(repo().join("packaging/deb/build.sh"))
        .arg("--bin-dir")
        .arg(bin_dir())
        .arg("--assets")
        .arg(&staged)
        .output()
        .unwrap();
    assert!(assets_run.status.success(), "{assets_run:?}");
    let client = std::fs::read(staged.join("usr/bin/credcache")).unwrap();
    assert_eq!(client, std::fs::read(bin_dir().join("credcache")).unwrap());
    let mode = std::fs::metadata(staged.join("usr/bin/credcache"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    let dests: BTreeSet<String> = assets
        .iter()
        .map(|a| match a {
            toml::Value::Array(a) => a[1].as_str().unwrap().to_owned(),
            toml::Value::Table(t) => t["dest"].as_str().unwrap().to_owned(),
            other => panic!("asset {other}"),
        })
        .collect();
    let mut dirs: BTreeSet<String> = files
        .iter()
        .filter(|f| !f.starts_with("usr/share/doc/")) // cargo-deb writes the copyright
        .map(|f| {
            let path = f.split(" -> ").next().unwrap();
            format!("{}/", Path::new(path).parent().unwrap().display())
        })
        .collect();
    dirs.insert("usr/share/man/man1/".to_owned());
    assert_eq!(dests, dirs, "cargo-deb assets and build.sh disagree");
}
