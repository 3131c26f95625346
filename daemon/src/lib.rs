//! `credcached`, the per-user daemon that fetches, caches and refreshes
//! short-lived cloud tokens, as a library: `main.rs` only parses arguments
//! and calls [`startup::run`], and tests can start the pieces in-process.
//!
//! Start reading at [`startup`] (lock, socket, signals), then [`server`]
//! (connections and requests) and [`engine`] (cache and single-flight
//! fetching); [`providers`] has one module per credential kind.

pub mod clock;
pub mod engine;
pub mod fetch_error;
pub mod files;
pub mod fingerprint;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod logging;
#[cfg(test)]
mod loopback;
pub mod parsed_config;
pub mod providers;
pub mod schedule;
pub mod sdk;
pub mod seal;
pub mod server;
pub mod startup;
pub mod store;
pub mod sys;
#[cfg(unix)]
pub mod systemd;
#[cfg(windows)]
pub use sys::systemd;
mod wire;
