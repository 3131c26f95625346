//! `credcache_daemon::fuzzing::azd_output`: the parser and its invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| credcache_daemon::fuzzing::azd_output(data));
