//! `credcache-bench`: the numbers behind BENCHMARKS.md. It starts the
//! emulator and daemons in throwaway homes (or measures a running daemon
//! with `--socket`), runs the scenarios and prints one JSON line per
//! measurement. It talks to nothing but 127.0.0.1 and its own Unix
//! sockets, and every loop in it is bounded by a count or a deadline.

pub mod args;
mod client;
mod cold;
mod conn;
mod home;
mod lab;
mod memory;
mod peers;
mod pin;
mod procfs;
mod redis;
mod report;
mod run;
mod soak;
mod startup;
pub mod stats;
mod throughput;

pub use run::Bench;
