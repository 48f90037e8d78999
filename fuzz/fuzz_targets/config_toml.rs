//! The configuration file: settings or an error naming the field, never a panic.
//! The property itself is `graywatch::fuzzing::check_config`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| graywatch::fuzzing::check_config(data));
