//! `kind = "azure"` against the emulator.

use credcache_tests::emulator::{Emulator, Endpoint};

use crate::harness::Sandbox;

pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const CLIENT: &str = "11111111-1111-1111-1111-111111111111";

/// A sandbox with an emulator-registered client-secret credential `corp`
/// (secret in `CORP_SECRET`).
pub fn client_secret_sandbox(emu: &Emulator, secret: &str) -> Sandbox {
    emu.register_client(TENANT, CLIENT, "the-right-secret");
    let mut sb = Sandbox::new();
    sb.env("CORP_SECRET", secret);
    sb.write_config(&format!(
        "[credentials.corp]\nkind = \"azure\"\nmethod = \"client-secret\"\ntenant_id = \"{TENANT}\"\nclient_id = \"{CLIENT}\"\n\
         client_secret_env = \"CORP_SECRET\"\nauthority_host = \"{}\"\n",
        emu.url()
    ));
    sb
}

#[test]
fn client_secret_token_is_fetched_and_cached() {
    let emu = Emulator::start();
    let sb = client_secret_sandbox(&emu, "the-right-secret");
    let token = sb.get("corp");
    assert_eq!(emu.last_token(Endpoint::EntraToken).unwrap().token, token);
    assert_eq!(sb.get("corp"), token);
    assert_eq!(emu.calls(Endpoint::EntraToken), 1);
    assert_eq!(
        emu.calls_to(Endpoint::EntraToken)[0].scope.as_deref(),
        Some("https://management.azure.com/.default")
    );
}

#[test]
fn a_wrong_secret_shows_the_aadsts_error() {
    let emu = Emulator::start();
    let sb = client_secret_sandbox(&emu, "wrong");
    let out = sb.run(["get", "corp"]);
    assert_eq!(out.code, 5, "{out:?}");
    assert!(
        out.stderr
            .contains("invalid_client: AADSTS7000215: Invalid client secret provided."),
        "{out:?}"
    );
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(!out.stderr.contains("wrong"), "the secret is never echoed");
    assert!(!sb.log().contains("the-right-secret") && !sb.log().contains("=wrong"));
}
