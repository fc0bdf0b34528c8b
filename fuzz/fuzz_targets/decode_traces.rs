//! The lean trace decoder on any bytes: never a panic, and never a refusal of what prost
//! accepts (but for attribute values nested deeper than the decoder's limit).
#![no_main]

use libfuzzer_sys::fuzz_target;
use momentum::receiver::decode::{decode_traces, DecodeError, DecodeOptions};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let opts = DecodeOptions {
        max_value_bytes: 256,
    };
    let lean = decode_traces(bytes::Bytes::copy_from_slice(data), &opts);
    if ExportTraceServiceRequest::decode(data).is_ok() {
        if let Err(e) = &lean {
            assert!(
                matches!(e, DecodeError::ValueTooDeep { .. }),
                "prost accepts what the lean decoder refuses: {e}"
            );
        }
    }
});
