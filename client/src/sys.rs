//! The few operating-system calls std does not offer, one file per
//! platform with the same functions: probing and stopping a process by
//! pid, `exec`'s signal (or console event) handling and exit codes,
//! replacing this process with another program, keeping our caller's
//! handles from the daemon, and waiting on the daemon's answer with a
//! deadline.
//!
//! Kept in one place so the rest of the client reads as plain Rust.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;
