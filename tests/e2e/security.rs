//! Issue 8's guarantees, end to end: tokens encrypted at rest, a lost or
//! wrong key costs a refetch and nothing else, other users are refused,
//! hostile upstream answers fail cleanly, and upstream text cannot paint
//! the terminal or forge an output line.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use credcache_tests::emulator::{Emulator, Endpoint, Fault};

use crate::harness::{Sandbox, count, google_sandbox};

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn key_file(sb: &Sandbox) -> std::path::PathBuf {
    sb.config.parent().unwrap().join("cache.key")
}

#[test]
fn no_token_byte_in_any_file_under_the_data_directory() {
    let emu = Emulator::start();
    let sb = google_sandbox(&emu);
    let (script, _) = sb.counting_script("v");
    sb.write_config(&format!(
        "{}{}",
        std::fs::read_to_string(&sb.config).unwrap(),
        Sandbox::command_credential("vault", &script)
    ));
    let google = sb.get("gcp");
    let vault = sb.get("vault");
    sb.run(["refresh", "--all"]).ok();
    let google2 = emu.last_token(Endpoint::GoogleToken).unwrap().token;
    sb.run(["daemon", "stop"]).ok();
    let files = files_under(&sb.data);
    assert!(files.len() > 2, "{files:?}");
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        for token in [&google, &google2, &vault, &"tok-2-v".to_owned()] {
            // Any 12-byte window of the token would do; look for the tail.
            let tail = &token.as_bytes()[token.len().saturating_sub(12)..];
            assert!(
                !bytes.windows(tail.len()).any(|w| w == tail),
                "{} holds token bytes",
                f.display()
            );
        }
    }
    let key = key_file(&sb);
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        !key.starts_with(&sb.data),
        "the key is never in the data directory"
    );
}

#[test]
fn a_lost_key_and_a_wrong_key_each_cost_one_refetch() {
    let emu = Emulator::start();
    let sb = google_sandbox(&emu);
    let first = sb.get("gcp");
    sb.kill_daemon();
    assert_eq!(sb.get("gcp"), first, "same key: served from disk");
    assert_eq!(emu.calls(Endpoint::GoogleToken), 1);

    sb.kill_daemon();
    std::fs::remove_file(key_file(&sb)).unwrap();
    let second = sb.get("gcp");
    assert_ne!(
        second, first,
        "lost key: the old record does not open, so a refetch"
    );
    assert_eq!(emu.calls(Endpoint::GoogleToken), 2);
    assert!(
        sb.log().contains("do not open with the cache key"),
        "{}",
        sb.log()
    );

    sb.kill_daemon();
    std::fs::write(key_file(&sb), [0x5Au8; 32]).unwrap();
    let third = sb.get("gcp");
    assert_ne!(third, second, "wrong key: refetch");
    assert_eq!(emu.calls(Endpoint::GoogleToken), 3);

    let status: serde_json::Value =
        serde_json::from_str(sb.run(["status", "--json"]).ok()).unwrap();
    assert_eq!(
        status["cache_key"],
        format!(
            "file {} (protected by its file mode)",
            key_file(&sb).display()
        )
    );
    assert_eq!(
        status["dumpable"], false,
        "the daemon marked itself non-dumpable"
    );
}

#[test]
fn a_connection_from_another_uid_is_refused() {
    let sb = Sandbox::new();
    let (script, _) = sb.counting_script("v");
    sb.write_config(&Sandbox::command_credential("vault", &script));
    sb.get("vault");
    // Open the door on purpose, so only the peer check stands in the way.
    let dir = sb.socket.parent().unwrap();
    for p in [sb.dir.path(), dir] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&sb.socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    // The client refuses a socket directory that is not its own, so reach
    // the socket through a link in a directory the other user owns.
    let theirs = sb.dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(&sb.socket, theirs.join("credcache.sock")).unwrap();
    let client = crate::harness::bin_dir().join("credcache");
    let out = sb
        .command_for("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&client)
        .args(["get", "vault"])
        .env("CREDCACHE_NO_AUTOSTART", "1")
        .env("CREDCACHE_SOCKET", theirs.join("credcache.sock"))
        .output()
        .unwrap();
    let out: crate::harness::Out = out.into();
    assert_ne!(out.code, 0, "{out:?}");
    assert!(!out.stdout.contains("tok-"), "{out:?}");
    // Answered after the refused connection was accepted, so it is logged.
    sb.run(["status"]).ok();
    let log = sb.log();
    assert!(
        log.contains("refused a connection from another user") && log.contains("65534"),
        "{log}"
    );
    // And the daemon still serves its own user.
    assert_eq!(sb.get("vault"), "tok-1-v");
}

#[test]
fn hostile_bodies_fail_cleanly_and_the_daemon_lives() {
    let emu = Emulator::start();
    let sb = google_sandbox(&emu);
    let huge = format!(
        "{{\"access_token\":\"{}\",\"expires_in\":3599}}",
        "A".repeat(64 << 20)
    );
    for (fault, want) in [
        (Fault::json(200, huge), "over 1048576 bytes"),
        (
            Fault::json(200, r#"{"access_token":"x","expires_in":1e400}"#),
            "unreadable body",
        ),
        (
            Fault::json(
                200,
                r#"{"access_token":"x","expires_in":99999999999999999999}"#,
            ),
            "expires_in",
        ),
        (Fault::json(200, ""), "unreadable body"),
        (Fault::json(200, "[1,2,3]"), "no access_token"),
    ] {
        // Until cleared: a background retry of the last failure must not
        // take this fault away from the `get` below.
        emu.push_fault(Endpoint::GoogleToken, fault.until_cleared());
        let out = sb.run(["get", "gcp", "--refresh"]);
        emu.clear_faults(Endpoint::GoogleToken);
        assert_eq!(out.code, 5, "{want}: {out:?}");
        assert!(out.stderr.contains(want), "{want}: {out:?}");
        assert!(out.stderr.len() < 600, "short, one line: {out:?}");
    }
    let status: serde_json::Value =
        serde_json::from_str(sb.run(["status", "--json"]).ok()).unwrap();
    let pid = status["pid"].as_u64().unwrap();
    let rss_kb: u64 = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap();
    assert!(
        rss_kb < 64 * 1024,
        "the 64 MiB answer was never buffered: peak RSS {rss_kb} kB"
    );
    sb.get("gcp");
}

#[test]
fn upstream_text_cannot_paint_the_terminal_or_forge_a_line() {
    let emu = Emulator::start();
    let sb = google_sandbox(&emu);
    emu.push_fault(
        Endpoint::GoogleToken,
        Fault::json(400, "{\"error\":\"invalid_grant\",\"error_description\":\"\\u001b[2J\\u001b[31mpwned\\u0007 ok\\rfake\"}"),
    );
    let out = sb.run(["get", "gcp"]);
    assert_eq!(out.code, 5, "{out:?}");
    assert!(
        !out.stderr.contains('\x1b') && !out.stderr.contains('\x07') && !out.stderr.contains('\r'),
        "{out:?}"
    );
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(
        out.stderr.contains("pwned"),
        "the words survive, the escapes do not: {out:?}"
    );
    assert!(!sb.log().contains('\x1b'));
}

#[test]
fn a_key_file_others_can_read_is_warned_about() {
    let emu = Emulator::start();
    let sb = google_sandbox(&emu);
    let key = sb.dir.path().join("sa.json");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    sb.get("gcp");
    let status = sb.run(["status"]);
    assert!(
        status
            .ok()
            .contains("sa.json is readable by others (mode 644); it holds a secret: chmod 600 it"),
        "{status:?}"
    );
    assert!(sb.log().contains("readable by others"));
    assert_eq!(count(&sb.dir.path().join("none")), 0);
}
