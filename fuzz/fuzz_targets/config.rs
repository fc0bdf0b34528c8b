//! The config loader on any text: a config or a list of errors with key paths, never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use momentum::config::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(errors) = Config::from_yaml_str(text) {
            assert!(!errors.is_empty());
        }
    }
});
