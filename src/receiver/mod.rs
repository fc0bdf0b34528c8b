//! The receiver side of the pipeline: turning request bodies into batches.
//!
//! - [`decode`]: the zero-copy OTLP trace decoder (`ExportTraceServiceRequest` bytes →
//!   [`crate::model::TraceBatch`]).
//! - [`json`]: the OTLP/JSON adapter (JSON body → protobuf bytes, for all three signals).

pub mod decode;
pub mod json;
