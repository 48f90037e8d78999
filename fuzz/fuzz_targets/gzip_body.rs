//! A gzip body: decompression never exceeds the size limit, whatever the input.
//! The property itself is `graywatch::fuzzing::check_gzip_body`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| graywatch::fuzzing::check_gzip_body(data));
