//! An NDJSON body: line by line the scanner agrees with serde, and every line is accounted for.
//! The property itself is `graywatch::fuzzing::check_ndjson_body`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| graywatch::fuzzing::check_ndjson_body(data));
