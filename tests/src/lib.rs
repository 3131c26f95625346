//! credcache's test support: the cloud emulator the end-to-end tests and
//! benchmarks point the daemon at, the benchmarks themselves (`bench`), and
//! a git smart-HTTP server with Basic auth for the git credential-helper
//! tests.

pub mod bench;
pub mod demo;
pub mod emulator;
pub mod git_server;
