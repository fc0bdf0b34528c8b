//! # momentum
//!
//! A streaming telemetry processor: OTLP in, per-(service, environment) SLIs, SLOs and
//! delivery signals out.
//!
//! ```text
//!  OTLP/gRPC ─┐                      ┌─ shard 0 ─┐─ view ─┬─ prometheus (/metrics, remote write)
//!  OTLP/HTTP ─┴─ receiver ─ router ──┼─ shard 1 ─┤        ├─ otlp push, own telemetry
//!                  (decode,          └─ shard N ─┘        └─ admin JSON API
//!                   validate)          └─ closed windows ─ archive writer ─ Parquet
//! ```
//!
//! Module map (lowest layer first; a module imports only from the ones above it in
//! docs/architecture.md, which `tests/architecture.rs` holds to):
//! - [`identity`]: the pair a piece of telemetry belongs to (one set of rules for every
//!   signal), the pair hash and shard choice; [`signal`]: the OTLP signals, their paths,
//!   transports and refusal reasons. Both import nothing from the crate.
//! - [`config`]: the typed config (config/momentum.yaml), its defaults and validation with key paths.
//! - [`model`]: the decoded, zero-copy form of a trace request handed to shards.
//! - [`receiver`]: OTLP/gRPC and OTLP/HTTP, the lean decoder, OTLP/JSON, admission.
//! - [`pipeline`]: router (hash → shard), shards (single-owner state), clocks.
//! - [`sli`]: classification, event-time windows, sketches, per-series latency state.
//! - [`slo`]: burn rates, error budgets, alerts, incidents, the release gate.
//! - [`delivery`]: deployments, rollbacks, change failure, lead time, pipelines.
//! - [`view`]: immutable snapshots the shards publish; [`telemetry`]: what exporters read.
//! - [`export`]: the neutral family model and its renderers: Prometheus exposition,
//!   remote write, OTLP metrics push, and momentum's own telemetry over OTLP; forwarding
//!   of the original requests to the next hop (`export::forward`: admission, disk queue,
//!   retries).
//! - [`admin`]: `/metrics`, health, and the JSON API.
//! - [`archive`]: the Parquet archive of closed windows: schemas, the writer task.
//! - [`report`]: `momentum report`, offline analysis of an archive (table/json/csv/html).
//! - [`app`]: wiring and graceful shutdown; [`serve`]: the accept loop every listener
//!   shares, with its connection limits and timeouts.
//! - [`tls`]: server TLS (mTLS, reload) and the exporters' client TLS; [`auth`]: bearer
//!   tokens.
//! - [`inline`]: the whole pipeline in one thread, driven by hand (tests, replays).
//! - [`loadgen`]: `momentum loadgen`, a synthetic fleet sending OTLP to any endpoint.

pub mod admin;
pub mod alloc;
pub mod app;
pub mod archive;
pub mod auth;
pub mod config;
pub mod delivery;
pub mod demo;
pub mod export;
pub mod history;
pub mod identity;
pub mod inline;
pub mod loadgen;
pub mod model;
pub mod pipeline;
pub mod receiver;
pub mod report;
pub mod serve;
pub mod signal;
pub mod sli;
pub mod slo;
pub mod telemetry;
pub mod tls;
pub mod view;
