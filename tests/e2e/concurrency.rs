//! Many clients at once: one daemon started, one upstream call.

use std::sync::{Arc, Barrier};

use crate::harness::{Sandbox, count};

#[test]
fn twenty_concurrent_cold_gets_start_one_daemon_and_make_one_call() {
    let sb = Arc::new(Sandbox::new());
    let (script, calls) = sb.counting_script("v");
    sb.write_config(&Sandbox::command_credential("vault", &script));
    let start = Arc::new(Barrier::new(20));
    let handles: Vec<_> = (0..20)
        .map(|_| {
            let sb = sb.clone();
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                sb.run(["get", "vault"])
            })
        })
        .collect();
    for h in handles {
        let out = h.join().unwrap();
        assert_eq!(out.ok(), "tok-1-v\n");
    }
    assert_eq!(count(&calls), 1, "exactly one upstream call");
    let log = sb.log();
    assert_eq!(
        log.matches("listening").count(),
        1,
        "exactly one daemon served: {log}"
    );
}
