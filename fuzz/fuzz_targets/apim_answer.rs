//! `credcache_daemon::fuzzing::apim_answer`: the parser and its invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| credcache_daemon::fuzzing::apim_answer(data));
