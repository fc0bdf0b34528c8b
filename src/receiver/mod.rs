//! The receiver side of the pipeline: turning request bodies into batches.
//!
//! - [`decode`]: the zero-copy OTLP trace decoder (`ExportTraceServiceRequest` bytes →
//!   [`crate::model::TraceBatch`]).

pub mod decode;
