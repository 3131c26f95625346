//! The end-to-end tests' helpers. The sandbox itself lives in the
//! library (`credcache_tests::sandbox`), shared with the benchmark; this
//! re-exports it so tests keep writing `crate::harness::Sandbox`.

pub use credcache_tests::eventually::eventually;
pub use credcache_tests::sandbox::{Foreground, Out, Sandbox, bin_dir, count, signal};
