//! Refresh pacing and the limits a `get` is held to, against tokens that
//! live seconds (issue 13). Like `refresh.rs`, these read what the daemon
//! did (a `watch` stream, the emulator's call log) rather than sleeping.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use chrono::{DateTime, Utc};
use credcache_tests::emulator::{Emulator, Endpoint};

use crate::harness::Sandbox;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn time(v: &serde_json::Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

/// A sandbox with one `google` credential `gcp` on the emulator.
pub fn google_sandbox(emu: &Emulator) -> Sandbox {
    let sb = Sandbox::new();
    let key = sb.dir.path().join("sa.json");
    emu.write_service_account_key(&key);
    sb.write_config(&format!(
        "[credentials.gcp]\nkind = \"google\"\nkey_file = {:?}\n",
        key.display().to_string()
    ));
    sb
}

#[test]
fn two_second_tokens_are_refreshed_at_most_every_ten_seconds() {
    let emu = Emulator::start();
    emu.set_lifetime(Endpoint::GoogleToken, 2);
    let sb = google_sandbox(&emu);
    // Only a watcher: it keeps the credential warm but asks nothing more,
    // so every token after the first is a background refresh.
    let mut watch = sb
        .command("credcache")
        .args(["watch", "gcp"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let first = json(&lines.next().unwrap().unwrap());
    let second = json(&lines.next().unwrap().unwrap());
    let calls = emu.calls(Endpoint::GoogleToken);
    watch.kill().unwrap();
    let _ = watch.wait();

    // Before pacing the second came 1 s after the first (half of a 2 s
    // lifetime), and about 20 calls were made in 20 s.
    let gap = time(&second["fetched_at"]) - time(&first["fetched_at"]);
    assert!(
        gap >= chrono::Duration::seconds(10),
        "refreshed {gap} apart"
    );
    assert_eq!(calls, 2, "one fetch and one background refresh");
}
