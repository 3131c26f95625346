//! `credcache_daemon::fuzzing::managed_identity_answer`: the parser and its invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| credcache_daemon::fuzzing::managed_identity_answer(data));
