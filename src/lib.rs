//! # momentum
//!
//! A streaming telemetry processor: OTLP in, per-(service, environment) SLIs, SLOs and
//! delivery signals out.
//!
//! ```text
//!  OTLP/gRPC ─┐                      ┌─ shard 0 ─┐        ┌─ prometheus (/metrics)
//!  OTLP/HTTP ─┴─ receiver ─ router ──┼─ shard 1 ─┼─ view ─┼─ admin JSON API
//!                  (decode,          └─ shard N ─┘        └─ (archive, push: later)
//!                   validate)   hash(service, env) → shard; each shard owns its state
//! ```
//!
//! Module map:
//! - [`model`]: the decoded, zero-copy form of a trace request handed to shards.
//! - [`receiver`]: request bodies to batches (zero-copy trace decoder, OTLP/JSON adapter).

pub mod model;
pub mod receiver;
