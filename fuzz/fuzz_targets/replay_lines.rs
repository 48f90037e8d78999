//! Replay input: every line accounted for, the same output whatever the read buffer.
//! The property itself is `graywatch::fuzzing::check_replay`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| graywatch::fuzzing::check_replay(data));
