//! What survives: a crash, a restart, a corrupt cache, a config change.

use crate::harness::{Sandbox, count, signal};

#[test]
fn kill_9_then_get_serves_from_disk() {
    let sb = Sandbox::new();
    let (script, calls) = sb.counting_script("v");
    sb.write_config(&Sandbox::command_credential("vault", &script));
    assert_eq!(sb.get("vault"), "tok-1-v");
    let first = sb.daemon_pid().unwrap();
    sb.kill_daemon();
    assert!(
        sb.socket.exists(),
        "a killed daemon leaves its socket behind"
    );

    assert_eq!(
        sb.get("vault"),
        "tok-1-v",
        "the new daemon serves the token from disk"
    );
    assert_eq!(count(&calls), 1, "no upstream call after the crash");
    assert_ne!(
        sb.daemon_pid().unwrap(),
        first,
        "a new daemon took over the stale socket"
    );
}

#[test]
fn sigterm_finishes_flushes_and_removes_the_socket() {
    let sb = Sandbox::new();
    let (script, calls) = sb.counting_script("v");
    sb.write_config(&Sandbox::command_credential("vault", &script));
    let fg = sb.foreground_daemon();
    assert_eq!(sb.get("vault"), "tok-1-v");
    let mut child = fg.child;
    signal(child.id() as i32, rustix::process::Signal::TERM);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!sb.socket.exists(), "socket removed");
    assert_eq!(sb.get("vault"), "tok-1-v");
    assert_eq!(count(&calls), 1);
}

#[test]
fn a_config_change_invalidates_the_token() {
    let sb = Sandbox::new();
    let (script, calls) = sb.counting_script("v");
    let base = Sandbox::command_credential("vault", &script);
    sb.write_config(&base);
    assert_eq!(sb.get("vault"), "tok-1-v");
    // Same command, different lifetime: different settings, different token.
    sb.write_config(&base.replace("lifetime = \"1h\"", "lifetime = \"2h\""));
    sb.run(["daemon", "reload"]).ok();
    assert_eq!(sb.get("vault"), "tok-2-v");
    assert_eq!(count(&calls), 2);

    // And across a restart the old record is not served either.
    sb.kill_daemon();
    sb.write_config(&base);
    assert_eq!(sb.get("vault"), "tok-3-v");
}

#[test]
fn a_corrupt_cache_is_moved_aside_and_rebuilt() {
    let sb = Sandbox::new();
    let (script, calls) = sb.counting_script("v");
    sb.write_config(&Sandbox::command_credential("vault", &script));
    assert_eq!(sb.get("vault"), "tok-1-v");
    sb.kill_daemon();
    let cache = sb.data.join("cache");
    for entry in std::fs::read_dir(&cache).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::write(&path, vec![0xA5; 8192]).unwrap();
        }
    }
    assert_eq!(
        sb.get("vault"),
        "tok-2-v",
        "the daemon starts anyway and refetches"
    );
    assert_eq!(count(&calls), 2);
    let aside = std::fs::read_dir(&sb.data)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("cache.corrupt-")
        })
        .count();
    assert_eq!(
        aside, 1,
        "the corrupt database was kept aside for inspection"
    );
    assert!(sb.log().contains("moved it to"), "{}", sb.log());
}

/// A restarted daemon says it is ready before it has read its cache: its
/// first answer, a `list`, still shows every token it had (the `list`
/// waits for that read), and each is then served without a fetch. The
/// config's parse is kept beside the cache, private.
#[test]
fn a_restarted_daemon_lists_every_token_it_had_cached() {
    use std::os::unix::fs::PermissionsExt as _;
    let sb = Sandbox::new();
    let (script, calls) = sb.counting_script("v");
    let mut config = String::new();
    for name in ["a", "b", "c"] {
        config.push_str(&Sandbox::command_credential(name, &script));
    }
    sb.write_config(&config);
    for name in ["a", "b", "c"] {
        sb.get(name);
    }
    assert_eq!(count(&calls), 3);
    sb.kill_daemon();

    let list: serde_json::Value = serde_json::from_str(sb.run(["list", "--json"]).ok()).unwrap();
    let states: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["state"].as_str().unwrap()))
        .filter(|(name, _)| ["a", "b", "c"].contains(name))
        .collect();
    assert_eq!(states, [("a", "fresh"), ("b", "fresh"), ("c", "fresh")]);
    for name in ["a", "b", "c"] {
        sb.get(name);
    }
    assert_eq!(count(&calls), 3, "all three served from the cache");

    let kept = sb.data.join("config.parsed");
    let mode = std::fs::metadata(&kept).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}
