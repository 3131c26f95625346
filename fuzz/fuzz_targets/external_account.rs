//! `credcache_daemon::fuzzing::external_account`: the parsers and their invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| credcache_daemon::fuzzing::external_account(data));
