//! Exporters: the neutral family model ([`families`]) and what renders it — Prometheus
//! exposition ([`prometheus`], served by the admin endpoint), the push exporters
//! ([`otlp`], [`remote_write`]), momentum's own telemetry ([`own_telemetry`]) — and the
//! forwarding of original requests to the next hop ([`forward`]).
//!
//! # Adding a push exporter
//!
//! A push exporter sends the derived metrics somewhere every interval. It is one file, one
//! config section and one line here:
//!
//! 1. **The file**, `src/export/<name>.rs`: a type that implements [`PushExporter`]. `NAME`
//!    is its `exporter` label (`momentum_exporter_sent_total{exporter=…}`); `config`
//!    picks its section out of [`Config`] (`None`: not configured, not started); `check`
//!    returns every error `build` could return, without starting anything (it is what
//!    `momentum validate` runs); `build` makes it from the section, the [`Telemetry`]
//!    handle it reads views and counters through, its [`ExporterStats`] and the export
//!    spans; `run` pushes until `stop` turns true, then once more. [`push`] has the
//!    shared loop (`push::every`), retries with backoff inside the interval
//!    (`push::Target::send`), the HTTP client with client TLS and header maps — use them,
//!    and a failed push is counted and retried like every other exporter's.
//! 2. **The config section**: a struct in `config/sections.rs` (an `Option` field of
//!    `ExportersConfig`), parsed in `config/parse.rs` with its key paths, documented in
//!    `config/momentum.yaml`.
//! 3. **The registration**: one `v.visit::<YourType>()` line in [`each`]. The wiring
//!    (`app.rs`), its counters in `/metrics` and `momentum validate` all go through
//!    that list.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::watch;

use crate::config::Config;
use crate::telemetry::{ExporterStats, Telemetry};
use push::{BuildError, Spans};

pub mod families;
pub mod forward;
pub mod otlp;
pub mod own_telemetry;
pub mod prometheus;
pub mod push;
pub mod remote_write;

/// A push exporter (see the module doc for the recipe).
pub trait PushExporter: Sized + Send + 'static {
    /// Its config section.
    type Config: Send + Sync + 'static;
    /// The `exporter` label of its counters.
    const NAME: &'static str;
    /// Its section of `config`; None when it is not configured.
    fn config(config: &Config) -> Option<&Self::Config>;
    /// Every error [`PushExporter::build`] could return for `cfg`, found without starting
    /// anything (`momentum validate`). Must be called on a tokio runtime.
    fn check(cfg: &Self::Config) -> Result<(), BuildError>;
    /// Builds it. Must be called on a tokio runtime.
    fn build(
        cfg: &Self::Config,
        telemetry: Telemetry,
        stats: Arc<ExporterStats>,
        spans: Spans,
    ) -> Result<Self, BuildError>;
    /// Pushes every interval until `stop`, then once more.
    fn run(self, stop: watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static;
}

/// What walks the push exporters: [`each`] calls `visit` once per exporter type.
pub trait Visit {
    /// Called with each exporter type.
    fn visit<E: PushExporter>(&mut self);
}

/// The push exporters momentum has: the one list a new exporter joins.
pub fn each(v: &mut impl Visit) {
    v.visit::<otlp::OtlpPush>();
    v.visit::<remote_write::RemoteWrite>();
}

/// A running push exporter's task.
pub type Running = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// How a planned exporter is built once the telemetry exists.
type Builder =
    Box<dyn FnOnce(Telemetry, Spans, watch::Receiver<bool>) -> Result<Running, BuildError> + Send>;

/// A configured push exporter: its counters exist before the [`Telemetry`] that reads
/// them; it is built once that telemetry exists ([`Planned::build`]).
pub struct Planned {
    /// its counters
    pub stats: Arc<ExporterStats>,
    build: Builder,
}

impl Planned {
    /// Builds the exporter; its task runs until `stop`.
    pub fn build(
        self,
        telemetry: Telemetry,
        spans: Spans,
        stop: watch::Receiver<bool>,
    ) -> Result<Running, BuildError> {
        (self.build)(telemetry, spans, stop)
    }
}

/// The push exporters `config` turns on, in [`each`] order.
pub fn plan(config: &Arc<Config>) -> Vec<Planned> {
    struct P<'a>(&'a Arc<Config>, Vec<Planned>);
    impl Visit for P<'_> {
        fn visit<E: PushExporter>(&mut self) {
            if E::config(self.0).is_none() {
                return;
            }
            let config = self.0.clone();
            let stats = ExporterStats::new(E::NAME);
            self.1.push(Planned {
                stats: stats.clone(),
                build: Box::new(move |telemetry, spans, stop| {
                    let Some(cfg) = E::config(&config) else {
                        unreachable!("planned only when configured")
                    };
                    let e = E::build(cfg, telemetry, stats, spans)?;
                    Ok(Box::pin(e.run(stop)) as Running)
                }),
            });
        }
    }
    let mut p = P(config, Vec::new());
    each(&mut p);
    p.1
}

/// Every error building the configured push exporters would give (`momentum validate`),
/// with the exporter's `NAME`. Must be called on a tokio runtime.
pub fn check(config: &Config) -> Vec<(&'static str, BuildError)> {
    struct C<'a>(&'a Config, Vec<(&'static str, BuildError)>);
    impl Visit for C<'_> {
        fn visit<E: PushExporter>(&mut self) {
            if let Some(cfg) = E::config(self.0) {
                if let Err(e) = E::check(cfg) {
                    self.1.push((E::NAME, e));
                }
            }
        }
    }
    let mut c = C(config, Vec::new());
    each(&mut c);
    c.1
}
