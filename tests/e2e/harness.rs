//! The end-to-end tests' helpers. The sandbox itself lives in the
//! library (`credcache_tests::sandbox`), shared with the benchmark; this
//! re-exports it so tests keep writing `crate::harness::Sandbox`.

pub use credcache_tests::eventually::eventually;
#[cfg(unix)]
pub use credcache_tests::sandbox::Foreground;
#[cfg(unix)]
pub use credcache_tests::sandbox::signal;
pub use credcache_tests::sandbox::{Out, Sandbox, bin_dir, count};

use credcache_tests::emulator::Emulator;

/// A sandbox with one `google` credential, `gcp`, whose service-account
/// key the emulator wrote.
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

/// Whether any file under `dir` (recursively) holds `needle` as raw bytes:
/// for "no secret in the data directory's plaintext".
#[cfg(unix)] // its users (login, federation) are Unix-only
pub fn dir_contains(dir: &std::path::Path, needle: &[u8]) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.filter_map(Result::ok).any(|e| {
        let path = e.path();
        if path.is_dir() {
            dir_contains(&path, needle)
        } else {
            std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        }
    })
}
