//! What both credcache binaries need to agree on: the wire protocol between
//! `credcache` and `credcached`, the config file's schema and validation,
//! where files live, how timestamps are read and written, which host a
//! `[[git]]`/`[[docker]]` entry covers, and the daemon's readiness line.
//!
//! Nothing here does I/O beyond reading a config file or a frame from a
//! stream the caller owns; nothing here starts a runtime.

pub mod codec;
pub mod config;
pub mod env_var;
pub mod files;
pub mod host_pattern;
pub mod paths;
pub mod protocol;
pub mod readiness;
pub mod secret;
pub mod time;
#[cfg(windows)]
pub mod windows;

pub use protocol::PROTOCOL_VERSION;
pub use secret::Secret;

/// The version both binaries report (`--version`, `status`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
