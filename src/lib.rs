//! # momentum
//!
//! A streaming telemetry processor: OTLP in, per-(service, environment) SLIs, SLOs and
//! delivery signals out.
//!
//! ```text
//!  OTLP/gRPC ─┐                      ┌─ shard 0 ─┐─ view ─┬─ prometheus (/metrics)
//!  OTLP/HTTP ─┴─ receiver ─ router ──┼─ shard 1 ─┤        └─ admin JSON API
//!                  (decode,          └─ shard N ─┘─ closed windows ─ archive writer ─ Parquet
//!                   validate)   hash(service, env) → shard; each shard owns its state
//! ```
//!
//! Module map:
//! - [`config`]: the typed config (SPEC §4), its defaults and validation with key paths.
//! - [`model`]: the decoded, zero-copy form of a trace request handed to shards.
//! - [`receiver`]: OTLP/gRPC and OTLP/HTTP, the lean decoder, OTLP/JSON, admission.
//! - [`pipeline`]: router (hash → shard), shards (single-owner state), clocks.
//! - [`sli`]: classification, event-time windows, sketches, per-series latency state.
//! - [`view`]: immutable snapshots the shards publish; [`telemetry`]: what exporters read.
//! - [`export`]: Prometheus exposition.
//! - [`admin`]: `/metrics`, health, and the JSON API.
//! - [`archive`]: the Parquet archive of closed windows: schemas, the writer task.
//! - [`report`]: `momentum report`, offline analysis of an archive (table/json/csv/html).
//! - [`app`]: wiring and graceful shutdown.

pub mod admin;
pub mod app;
pub mod archive;
pub mod config;
pub mod export;
pub mod model;
pub mod pipeline;
pub mod receiver;
pub mod report;
pub mod sli;
pub mod telemetry;
pub mod view;
