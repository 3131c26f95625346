//! The README's first command, `credcache-emulator demo`, run as a
//! newcomer runs it: it must end well and show what it says it shows.

use crate::harness::Sandbox;

#[test]
fn the_readme_demo_shows_every_kind_and_a_refresh_before_expiry() {
    let sb = Sandbox::new();
    let out = sb
        .command("credcache-emulator")
        .arg("demo")
        .output()
        .expect("run credcache-emulator demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (shown, token_prefix) in [
        ("$ credcache get gcp", "ya29.emu-"),
        ("$ credcache get prod-gke", "gke-emu-"),
        ("$ credcache get corp", "eyJ.emu-"),
        ("$ credcache get app-logs", "ca-emu-"),
        ("$ credcache get apim-dev", "userId1718&"),
    ] {
        let at = stdout
            .find(shown)
            .unwrap_or_else(|| panic!("no {shown:?} in:\n{stdout}"));
        let next = stdout[at..].lines().nth(1).unwrap_or_default();
        assert!(
            next.starts_with(token_prefix),
            "{shown}: {next:?}\n{stdout}"
        );
    }
    // Said from the daemon's own timestamps (demo.rs), not assumed.
    assert!(stdout.contains("s before it expired"), "{stdout}");
    assert!(!stdout.contains("no new token within"), "{stdout}");
    assert!(stdout.contains("upstream calls made:"), "{stdout}");
    assert!(stdout.contains("daemon stopped"), "{stdout}");
}
