//! gzip and zstd on any bytes: never a panic, never more than the limit out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use momentum::receiver::decompress;

const LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let encoding = match selector % 3 {
        0 => "gzip",
        1 => "zstd",
        _ => "identity",
    };
    if let Ok(out) = decompress(Some(encoding), bytes::Bytes::copy_from_slice(body), LIMIT) {
        assert!(out.len() <= LIMIT, "{} bytes out of {encoding}", out.len());
    }
});
