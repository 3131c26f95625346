//! Token values and secrets never reach logs, errors, status or list.

use crate::harness::Sandbox;

#[test]
fn no_token_in_the_debug_log_status_or_list() {
    let sb = Sandbox::new();
    let (script, _) = sb.counting_script("v");
    sb.write_config(&Sandbox::command_credential("vault", &script));
    let token = sb.get("vault");
    sb.run(["refresh", "--all"]).ok();
    let status = sb.run(["status"]).ok().to_owned();
    let status_json = sb.run(["status", "--json"]).ok().to_owned();
    let list = sb.run(["list"]).ok().to_owned();
    let list_json = sb.run(["list", "--json"]).ok().to_owned();
    let log = sb.log();
    assert!(
        log.contains("DEBUG") || log.contains("debug"),
        "the log ran at debug level:\n{log}"
    );
    for (what, text) in [
        ("log", &log),
        ("status", &status),
        ("status --json", &status_json),
        ("list", &list),
        ("list --json", &list_json),
    ] {
        assert!(!text.contains("tok-"), "{what} shows a token:\n{text}");
    }
    assert!(token.starts_with("tok-"));
}
