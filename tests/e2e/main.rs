//! End-to-end tests: the real `credcache` and `credcached` binaries, a real
//! sled database and socket in a temp dir, and the cloud emulator on
//! 127.0.0.1. Nothing here talks to any other address.
//!
//! The binaries are built when missing or stale
//! (`credcache_tests::sandbox::bin_dir`), so `cargo test -p
//! credcache-tests` works on its own.

mod harness;

#[cfg(unix)] // systemd socket activation
mod activation;
#[cfg(unix)] // its table covers apim and container_app
mod api_kinds;
#[cfg(unix)] // shares the azure module's sandboxes
mod apim;
#[cfg(unix)] // fake `az` programs are sh scripts
mod azure;
#[cfg(unix)] // sh scripts as `command` credentials
mod basics;
mod concurrency;
#[cfg(unix)] // file modes and sh scripts
mod config;
#[cfg(unix)] // shares the azure module's sandboxes
mod container_app;
mod demo;
mod docker;
#[cfg(unix)] // signals (SIGTERM to the emulator)
mod emulator_cli;
#[cfg(unix)] // openssl-made certificates, sh stand-ins for azd
mod entra;
#[cfg(unix)] // Unix socket and argv byte strings
mod fast_get;
#[cfg(target_os = "linux")] // signals, sh scripts, mkfifoat and pidfd_open
mod faults;
#[cfg(unix)] // sh scripts as executable sources
mod federation;
#[cfg(unix)] // git http-backend behind sh
mod git;
mod gke;
mod google;
#[cfg(unix)] // FIFOs, file modes
mod hostile;
mod id_token;
mod impersonation;
#[cfg(unix)] // symlinks and file modes
mod kubeconfig;
#[cfg(unix)] // BROWSER scripts in sh, curl following the redirect
mod login;
mod machine_interface;
mod pacing;
#[cfg(unix)] // systemd units, .deb, launchd
mod packaging;
#[cfg(unix)] // SIGKILL and file modes
mod persistence;
mod refresh;
// The SDK endpoints' peer check: Linux reads the kernel's socket table;
// Windows' TCP table names the owning process, but Wine's names none
// (every pid 0), so under Wine the metadata endpoint is off, which
// `daemon::sdk::peer_windows`'s own tests check; macOS has none.
#[cfg(target_os = "linux")]
mod sdk;
#[cfg(target_os = "linux")] // as sdk; the SDKs run under exec --sdk
mod sdk_clients;
mod secrets;
#[cfg(unix)] // /proc, setpriv, file modes
mod security;
#[cfg(unix)] // POSIX shells
mod shells;
#[cfg(unix)] // uids, /tmp directory ownership, setpriv
mod trust;
#[cfg(windows)]
mod windows;
