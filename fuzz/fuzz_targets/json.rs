//! OTLP/JSON on any bytes: a clear error or a protobuf the lean decoder reads, never a
//! panic.
#![no_main]

#[path = "signal.rs"]
mod signal;

use libfuzzer_sys::fuzz_target;
use momentum::receiver::decode::{decode_traces, DecodeOptions};
use momentum::receiver::json::json_to_protobuf;
use momentum::receiver::Signal;

fuzz_target!(|data: &[u8]| {
    let Some((signal, body)) = signal::split(data) else {
        return;
    };
    if let Ok(pb) = json_to_protobuf(signal, body) {
        if signal == Signal::Traces {
            let opts = DecodeOptions {
                max_value_bytes: 256,
            };
            let _ = decode_traces(bytes::Bytes::from(pb), &opts);
        }
    }
});
