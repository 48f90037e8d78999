//! A JSON body: the daemon's parser (fast scanner, then serde) and serde alone agree.
//! The property itself is `graywatch::fuzzing::check_event_json`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| graywatch::fuzzing::check_event_json(data));
