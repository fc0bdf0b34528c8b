//! Service-level indicators computed from spans.
//!
//! - [`classify`]: span → outcome (the README's How it works).
//! - [`window`]: event-time buckets and rolling windows.
//! - [`sketch`]: the DDSketch behind latency quantiles (and the archive's `latency_sketch`).
//! - [`series`]: per-series latency sub-windows and roll-ups.

pub mod classify;
pub mod exemplars;
pub mod metrics;
pub mod rank;
pub mod series;
pub mod sketch;
pub mod window;
