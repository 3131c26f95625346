//! End-to-end tests: the real `credcache` and `credcached` binaries, a real
//! sled database and socket in a temp dir, and the cloud emulator on
//! 127.0.0.1. Nothing here talks to any other address.
//!
//! The binaries are built when missing or stale
//! (`credcache_tests::sandbox::bin_dir`), so `cargo test -p
//! credcache-tests` works on its own.

mod harness;

mod activation;
mod api_kinds;
mod apim;
mod azure;
mod basics;
mod concurrency;
mod config;
mod container_app;
mod demo;
mod docker;
mod emulator_cli;
mod fast_get;
mod faults;
mod federation;
mod git;
mod gke;
mod google;
mod hostile;
mod id_token;
mod impersonation;
mod kubeconfig;
mod login;
mod machine_interface;
mod pacing;
mod packaging;
mod persistence;
mod refresh;
mod secrets;
mod security;
mod shells;
mod trust;
