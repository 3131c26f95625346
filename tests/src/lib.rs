//! credcache's test support: the cloud emulator the end-to-end tests and
//! benchmarks point the daemon at.

pub mod demo;
pub mod emulator;
