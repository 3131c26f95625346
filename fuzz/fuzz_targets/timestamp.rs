//! `credcache_daemon::fuzzing::timestamp`: the parser and its invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| credcache_daemon::fuzzing::timestamp(data));
