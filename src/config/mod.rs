//! Configuration: the typed form of config/momentum.yaml, its defaults, and the rules a config must meet.
//!
//! Loading is parse → validate → hand over: [`Config::from_yaml_str`] walks the YAML tree
//! and collects *every* problem (unknown keys, wrong types, bad values, broken semantic
//! rules), each named by its key path (`slos[1].objectives.availability: must be in
//! (0,100)`), so one `momentum validate` run shows everything to fix. Nothing here touches
//! the network or the files a config names; the runtime does that when it builds components.
//!
//! The reference file `config/momentum.yaml` documents every key and *is* the default:
//! [`Config::default`] equals [`Config::embedded_default`], which parses that file.

mod duration;
mod leaf;
mod parse;
mod sections;
mod validate;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;

pub use duration::{Duration, ParseDurationError};
pub use sections::*;

/// The reference config, compiled in: what `momentum run` uses without `--config`.
const REFERENCE_YAML: &str = include_str!("../../config/momentum.yaml");

/// One problem found in a config: the key path at fault and what is wrong with it.
///
/// `path` is dotted with sequence indices (`slos[1].objectives.availability`); for a file
/// that cannot be read or is not YAML it is the file name (empty when parsing a string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Key path (or file) at fault.
    pub path: String,
    /// What is wrong, as one clear phrase.
    pub message: String,
}

impl ConfigError {
    /// An error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// The whole configuration (config/momentum.yaml). `Config::default()` is the documented defaults, identical to
/// [`Config::embedded_default`].
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where telemetry comes in.
    pub receivers: ReceiversConfig,
    /// The admin HTTP server: `/metrics`, health, JSON API, dashboard.
    pub admin: AdminConfig,
    /// Sharding and queueing between receivers and shards.
    pub pipeline: PipelineConfig,
    /// Bounds on every map keyed by input data.
    pub limits: LimitsConfig,
    /// How requests become SLIs.
    pub sli: SliConfig,
    /// SLO objectives, matched per (service, environment) by [`Config::slo_for`].
    pub slos: Vec<SloConfig>,
    /// Deployment, rollback and lookback windows.
    pub delivery: DeliveryConfig,
    /// The composite momentum index.
    pub momentum: MomentumConfig,
    /// Where derived signals (and forwarded originals) go.
    pub exporters: ExportersConfig,
    /// The Parquet archive of closed windows.
    pub archive: ArchiveConfig,
    /// momentum's own metrics over OTLP; `None` unless configured.
    pub telemetry: Option<TelemetryConfig>,
    /// How long shutdown may take to drain, close windows and flush.
    pub shutdown_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            receivers: ReceiversConfig::default(),
            admin: AdminConfig::default(),
            pipeline: PipelineConfig::default(),
            limits: LimitsConfig::default(),
            sli: SliConfig::default(),
            slos: vec![SloConfig::default_catch_all()],
            delivery: DeliveryConfig::default(),
            momentum: MomentumConfig::default(),
            exporters: ExportersConfig::default(),
            archive: ArchiveConfig::default(),
            telemetry: None,
            shutdown_timeout: SHUTDOWN_DEFAULT_TIMEOUT,
        }
    }
}

/// `shutdown_timeout` when left out.
pub const SHUTDOWN_DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl Config {
    /// Parses and validates YAML text, returning every problem found.
    pub fn from_yaml_str(text: &str) -> Result<Config, Vec<ConfigError>> {
        Self::parse_named(text, "")
    }

    /// Reads, parses and validates a config file; read and YAML errors name the file.
    pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
        let name = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse_named(&text, &name),
            Err(e) => Err(vec![ConfigError::new(name, format!("cannot read: {e}"))]),
        }
    }

    fn parse_named(text: &str, origin: &str) -> Result<Config, Vec<ConfigError>> {
        let (config, mut errors, failed) = parse::parse(text, origin);
        let Some(config) = config else {
            return Err(errors);
        };
        // Cross-field rules are skipped for keys that did not parse: the stand-in default
        // would produce a complaint about a value the user never wrote.
        errors.extend(validate::validate(&config, &|path| {
            parse::is_failed(&failed, path)
        }));
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }

    /// The compiled-in reference config (`config/momentum.yaml`): all listeners on
    /// 127.0.0.1, archive under `./data/archive`, push exporters off.
    pub fn embedded_default() -> Config {
        match Self::from_yaml_str(REFERENCE_YAML) {
            Ok(config) => config,
            // The file is part of the build and a unit test parses it; reaching this is a
            // broken build, not bad input.
            Err(errors) => panic!("config/momentum.yaml is invalid: {errors:?}"),
        }
    }

    /// Checks the semantic rules (ranges, cross-field constraints) of a config built in
    /// code; [`Config::from_yaml_str`] already applies them.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let errors = validate::validate(self, &|_| false);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The `slos[]` entry that governs `(service, environment)` by the README's How it works precedence:
    /// exact service and environment > exact service and `*` > `*` and exact environment >
    /// `*` and `*`. Validation rejects two entries of equal precedence for one pair; should a
    /// config built in code have them anyway, the first wins.
    pub fn slo_for(&self, service: &str, environment: &str) -> Option<&SloConfig> {
        let mut best: Option<(u8, &SloConfig)> = None;
        for slo in &self.slos {
            if let Some(level) = slo.precedence(service, environment) {
                if best.is_none_or(|(b, _)| level > b) {
                    best = Some((level, slo));
                }
            }
        }
        best.map(|(_, slo)| slo)
    }
}
