//! What the daemon asks of the operating system beyond std and tokio, one
//! file per platform with the same functions: process hardening, private
//! files, the at-rest key's protection, the endpoint's listener and peer
//! check, termination and reload events, and how a helper program
//! (`command`, `az`) is started and stopped.
//!
//! Unix: umask 077, modes 0600/0700, `SO_PEERCRED`/`getpeereid` uids,
//! signals. Windows: owner-only DACLs, a named pipe with the user's SID
//! only, DPAPI, console control events.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;
