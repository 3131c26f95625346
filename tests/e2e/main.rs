//! End-to-end tests: the real `credcache` and `credcached` binaries, a real
//! sled database and socket in a temp dir, and the cloud emulator on
//! 127.0.0.1. Nothing here talks to any other address.
//!
//! The binaries must be built first; `cargo test --workspace` (or
//! `cargo nextest run --workspace`) does that, because the client and
//! daemon crates have integration tests of their own.

mod harness;

mod activation;
mod apim;
mod azure;
mod basics;
mod concurrency;
mod config;
mod container_app;
mod docker;
mod faults;
mod git;
mod gke;
mod google;
mod hostile;
mod kubeconfig;
mod machine_interface;
mod packaging;
mod persistence;
mod refresh;
mod secrets;
mod security;
mod shells;
