//! credcache's test support: the cloud emulator the end-to-end tests and
//! benchmarks point the daemon at, the benchmarks themselves (`bench`), the
//! throwaway homes both run the binaries in (`sandbox`, which builds the
//! binaries when missing), `eventually` for conditions that can only be
//! polled, and a git smart-HTTP server with Basic auth for the git
//! credential-helper tests.

// Unix sockets, epoll, /proc and redis-server: the benchmark is Linux-only.
#[cfg(target_os = "linux")]
pub mod bench;
pub mod demo;
pub mod emulator;
pub mod eventually;
pub mod git_server;
pub mod sandbox;
