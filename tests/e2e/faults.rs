//! Red-team faults (issue 13): hostile tokens, files that never end, a
//! cache that cannot be written, clients that never read, and `command`
//! programs that leave children behind. The daemon must answer each with a
//! clear one-line error and go on serving everything else.

use credcache_tests::emulator::{Emulator, Endpoint, Fault};

use crate::harness::{Sandbox, google_sandbox};

/// Regression: a token with a newline (a forged header line when printed)
/// or one of 70 KiB was cached and handed out as is.
#[test]
fn a_token_with_control_bytes_or_over_64_kib_is_refused_and_not_cached() {
    let emu = Emulator::start();
    let sb = google_sandbox(&emu);
    let injected =
        r#"{"access_token":"ya29.evil\nX-Injected: yes","expires_in":3599,"token_type":"Bearer"}"#;
    let long = format!(
        "{{\"access_token\":\"ya29.{}\",\"expires_in\":3599,\"token_type\":\"Bearer\"}}",
        "A".repeat(70 << 10)
    );
    for (body, want) in [
        (injected.to_owned(), "outside printable ASCII"),
        (long, "over the 65536-byte limit"),
    ] {
        emu.push_fault(
            Endpoint::GoogleToken,
            Fault::json(200, body).until_cleared(),
        );
        let out = sb.run(["get", "gcp", "--refresh"]);
        out.upstream_failure("credcache: ", want);
        assert!(!out.stderr.contains("X-Injected"), "{out:?}");
        assert!(!out.stderr.contains("AAAAAAAA"), "{out:?}");
        emu.clear_faults(Endpoint::GoogleToken);
        // Not cached: the next `get` asks upstream again and gets a good one.
        let before = emu.calls(Endpoint::GoogleToken);
        let token = sb.get("gcp");
        assert!(
            token.starts_with("ya29.") && !token.contains('\n'),
            "{token:?}"
        );
        assert_eq!(emu.calls(Endpoint::GoogleToken), before + 1);
        sb.run(["forget", "gcp"]).ok();
    }
    let log = sb.log();
    assert!(!log.contains("X-Injected"), "{log}");
}

/// Regression: a FIFO as key file blocked the daemon's only worker (and
/// start-up, which fingerprints it); `/dev/zero` or a huge file ate memory.
#[test]
fn a_fifo_dev_zero_or_huge_key_file_is_a_config_error_and_the_daemon_serves_on() {
    let emu = Emulator::start();
    let sb = google_sandbox(&emu);
    let fifo = sb.dir.path().join("fifo.json");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    let big = sb.dir.path().join("big.json");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let zero = std::path::PathBuf::from("/dev/zero");
    for (name, path) in [("fifo", &fifo), ("zero", &zero), ("big", &big)] {
        sb.append_config(&format!(
            "[credentials.{name}]\nkind = \"google\"\nkey_file = {:?}\n",
            path.display().to_string()
        ));
    }
    let good = sb.get("gcp");
    for (name, want) in [
        ("fifo", "it is a FIFO, not a regular file"),
        ("zero", "it is a character device, not a regular file"),
        ("big", "it is over the 1 MiB limit"),
    ] {
        let out = sb.run(["get", name]);
        assert_eq!(out.code, 2, "{name}: {out:?}");
        assert!(out.stderr.contains("cannot read key file"), "{out:?}");
        assert!(out.stderr.contains(want), "{name}: {out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
        // The cached credential still answers, from the cache.
        assert_eq!(sb.get("gcp"), good);
    }
    sb.run(["daemon", "stop"]).ok();
    sb.wait_lock_free();
}

/// Regression: the third-party cap was directives mixed into
/// `CREDCACHE_LOG`'s, so `sled::pagecache=trace` (more specific) won and
/// printed hundreds of sled TRACE lines.
#[test]
fn third_party_crates_stay_at_info_whatever_credcache_log_says() {
    let emu = Emulator::start();
    let mut sb = google_sandbox(&emu);
    sb.env(
        "CREDCACHE_LOG",
        "trace,sled=trace,sled::pagecache=trace,hyper=trace,reqwest=trace,h2=trace",
    );
    let token = sb.get("gcp");
    sb.run(["daemon", "stop"]).ok();
    sb.wait_lock_free();
    let log = sb.log();
    // Our own debug lines get through...
    assert!(log.contains("no usable cached token: fetching"), "{log}");
    // ...and nothing below info from anyone else (credcache has no TRACE
    // events of its own).
    let trace: Vec<&str> = log.lines().filter(|l| l.contains("TRACE")).collect();
    assert!(
        trace.is_empty(),
        "{} TRACE lines: {:?}",
        trace.len(),
        &trace[..trace.len().min(5)]
    );
    assert!(!log.contains(&token));
}

/// A script for a `command` credential: `body` after a shebang, with
/// `PIDS` replaced by a file it may write pids to.
fn script(sb: &Sandbox, name: &str, body: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let pids = sb.dir.path().join(format!("{name}.pids"));
    let path = sb.dir.path().join(format!("{name}.sh"));
    let body = body.replace("PIDS", &format!("'{}'", pids.display()));
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    (path, pids)
}

/// Waits until every pid in `file` has exited (a pidfd turns readable when
/// its process ends), with a generous bound so a survivor fails the test
/// instead of hanging it.
pub(crate) fn assert_all_exit(file: &std::path::Path) {
    let text = std::fs::read_to_string(file).unwrap();
    let pids: Vec<i32> = text
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(!pids.is_empty(), "no pids in {}", file.display());
    for pid in pids {
        let pid = rustix::process::Pid::from_raw(pid).unwrap();
        let Ok(fd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) else {
            continue; // already gone
        };
        let mut fds = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        let bound = rustix::event::Timespec {
            tv_sec: 60,
            tv_nsec: 0,
        };
        let ready = rustix::event::poll(&mut fds, Some(&bound)).unwrap();
        assert_eq!(ready, 1, "process {pid:?} was left running");
    }
}

/// Regression: a program that left a background child holding stdout
/// always timed out, since its output never reached end of file.
#[test]
fn a_command_leaving_a_child_on_stdout_answers_and_the_child_is_ended() {
    let sb = Sandbox::new();
    let (path, pids) = script(&sb, "bg", "sleep 600 &\necho $! > PIDS\necho tok-bg");
    sb.write_config(&Sandbox::command_credential("bg", &path));
    assert_eq!(sb.get("bg"), "tok-bg");
    assert_all_exit(&pids);
}

/// Regression: on timeout only the program itself was killed, and the
/// child it started lived on.
#[test]
fn a_command_that_hangs_is_killed_with_its_whole_process_group() {
    let sb = Sandbox::new();
    let (path, pids) = script(
        &sb,
        "hang",
        "echo $$ > PIDS\nsleep 600 &\necho $! >> PIDS\nwait",
    );
    sb.write_config(&format!(
        "[daemon]\nhttp_timeout = \"1s\"\n{}",
        Sandbox::command_credential("hang", &path)
    ));
    let out = sb.run(["get", "hang"]);
    out.upstream_failure(
        "credcache: ",
        "did not finish within 1 s; killed it and its process group",
    );
    assert_all_exit(&pids);
}

/// Regression: output past 1 MiB was left unread, so a program printing
/// without end blocked on the pipe until the timeout.
#[test]
fn a_command_printing_over_1_mib_is_stopped_and_says_so() {
    let sb = Sandbox::new();
    let (path, _) = script(&sb, "yes", "exec yes aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    sb.write_config(&format!(
        "[daemon]\nhttp_timeout = \"600s\"\n{}",
        Sandbox::command_credential("yes", &path)
    ));
    let out = sb.run(["get", "yes"]);
    out.upstream_failure("credcache: ", "printed more than 1048576 bytes (1 MiB)");
}

/// Runs `credcache ARGS` in a mount namespace of its own where `setup`
/// (shell) ran first; the daemon it starts stays in that namespace.
fn in_namespace(sb: &Sandbox, setup: &str, args: &[&str]) -> crate::harness::Out {
    let client = crate::harness::bin_dir().join("credcache");
    let script = format!("{setup} && exec \"$0\" \"$@\"");
    let mut cmd = sb.command_for("unshare");
    cmd.args(["-m", "sh", "-c", &script]).arg(client).args(args);
    cmd.output().unwrap().into()
}

fn status_warnings(sb: &Sandbox) -> Vec<String> {
    let status: serde_json::Value =
        serde_json::from_str(sb.run(["status", "--json"]).ok()).unwrap();
    status["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_owned())
        .collect()
}

/// Regression: a data directory that cannot be written (here a read-only
/// mount, which stops root too) made the daemon refuse to start.
#[test]
fn a_read_only_data_dir_runs_memory_only_and_says_so() {
    let sb = Sandbox::new();
    let (script, count) = sb.counting_script("ro");
    sb.write_config(&Sandbox::command_credential("ro", &script));
    std::fs::create_dir_all(&sb.data).unwrap();
    let mount = format!(
        "mount -t tmpfs -o ro,mode=0700 tmpfs '{}'",
        sb.data.display()
    );
    let out = in_namespace(&sb, &mount, &["get", "ro"]);
    assert_eq!(out.ok().trim(), "tok-1-ro", "{out:?}");
    assert_eq!(sb.get("ro"), "tok-1-ro", "answered from memory");
    assert_eq!(crate::harness::count(&count), 1);
    let warnings = status_warnings(&sb);
    assert!(
        warnings.iter().any(|w| w.contains("running memory-only")),
        "{warnings:?}"
    );
}

/// A data directory that does not exist and cannot be created (its parent
/// is a read-only mount) is served from memory too, not a refusal to
/// start; one that is not safe to use (a symlink) still is.
#[test]
fn an_uncreatable_data_dir_runs_memory_only_and_an_unsafe_one_is_refused() {
    let mut sb = Sandbox::new();
    let (script, _) = sb.counting_script("ro");
    sb.write_config(&Sandbox::command_credential("ro", &script));
    let parent = sb.dir.path().join("ro-parent");
    std::fs::create_dir_all(&parent).unwrap();
    let data = parent.join("data");
    sb.env("CREDCACHE_DATA_DIR", data.display().to_string());
    let mount = format!("mount -t tmpfs -o ro tmpfs '{}'", parent.display());
    let out = in_namespace(&sb, &mount, &["get", "ro"]);
    assert_eq!(out.ok().trim(), "tok-1-ro", "{out:?}");
    let warnings = status_warnings(&sb);
    assert!(
        warnings.iter().any(|w| w.contains("running memory-only")),
        "{warnings:?}"
    );
    sb.run(["daemon", "stop"]).ok();

    let target = sb.dir.path().join("elsewhere");
    std::fs::create_dir_all(&target).unwrap();
    let link = sb.dir.path().join("data-link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    sb.env("CREDCACHE_DATA_DIR", link.display().to_string());
    let out = sb.run(["daemon", "start"]);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr.contains("symlink") || out.stderr.contains("symbolic"),
        "{out:?}"
    );
}

/// Regression: once a write failed for want of space, the cache stayed
/// broken until a restart.
#[test]
fn a_full_disk_is_a_status_warning_and_writes_resume_when_space_returns() {
    let sb = Sandbox::new();
    let mut config = String::new();
    for name in ["alpha-cred", "charlie-cred"] {
        let (script, _) = sb.counting_script(name);
        config.push_str(&Sandbox::command_credential(name, &script));
    }
    // A record bigger than a page, so it needs space the full disk lacks
    // (a small one would fit in the page sled's file already has).
    let (big, _) = script(
        &sb,
        "bravo",
        "printf 'tok-bravo-%s' \"$(head -c 12000 /dev/zero | tr '\\0' x)\"",
    );
    config.push_str(&Sandbox::command_credential("bravo-cred", &big));
    sb.write_config(&config);
    std::fs::create_dir_all(&sb.data).unwrap();
    let mount = format!(
        "mount -t tmpfs -o size=4m,mode=0700 tmpfs '{}'",
        sb.data.display()
    );
    let out = in_namespace(&sb, &mount, &["get", "alpha-cred"]);
    assert_eq!(out.ok().trim(), "tok-1-alpha-cred", "{out:?}");
    let pid = sb.daemon_pid().unwrap().to_string();
    let filler = sb.data.join("filler");
    let nsenter = |shell: &str| {
        sb.command_for("nsenter")
            .args(["-t", &pid, "-m", "sh", "-c", shell])
            .status()
            .unwrap()
    };
    // Fill the disk (dd stops at ENOSPC, which is the point).
    nsenter(&format!(
        "dd if=/dev/zero of='{}' bs=4k 2>/dev/null; true",
        filler.display()
    ));
    assert!(
        sb.get("bravo-cred").starts_with("tok-bravo-xxx"),
        "a full disk still answers"
    );
    let warnings = status_warnings(&sb);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("cannot write the cache")),
        "{warnings:?}"
    );
    // Space returns: the next write succeeds, takes the one that failed
    // with it, and the warning goes.
    assert!(nsenter(&format!("rm '{}'", filler.display())).success());
    assert_eq!(sb.get("charlie-cred"), "tok-1-charlie-cred");
    let warnings = status_warnings(&sb);
    assert!(
        !warnings
            .iter()
            .any(|w| w.contains("cannot write the cache")),
        "{warnings:?}"
    );
    // The record whose write failed is on disk now too (names are the
    // plaintext part of a key; the tmpfs is visible in the namespace only).
    let on_disk = nsenter(&format!("grep -rqa bravo-cred '{}'", sb.data.display()));
    assert!(on_disk.success(), "the failed write was never retried");
}
