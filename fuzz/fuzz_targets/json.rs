//! OTLP/JSON on any bytes: a clear error or a protobuf the lean decoder reads, never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use momentum::receiver::decode::{decode_traces, DecodeOptions};
use momentum::receiver::json::json_to_protobuf;
use momentum::receiver::Signal;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let signal = match selector % 3 {
        0 => Signal::Traces,
        1 => Signal::Metrics,
        _ => Signal::Logs,
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
