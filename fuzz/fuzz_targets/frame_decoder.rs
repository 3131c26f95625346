//! `credcache_daemon::fuzzing::frame_decoder`: the parser and its invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| credcache_daemon::fuzzing::frame_decoder(data));
