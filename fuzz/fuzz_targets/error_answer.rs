//! `credcache_daemon::fuzzing::error_answer`: the parser and its invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| credcache_daemon::fuzzing::error_answer(data));
