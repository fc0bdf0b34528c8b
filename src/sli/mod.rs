//! Service-level indicators computed from spans.
//!
//! - [`sketch`]: the DDSketch behind latency quantiles (and the archive's `latency_sketch`).

pub mod sketch;
