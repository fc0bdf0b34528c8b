//! Exporters: the neutral family model and its renderers.

pub mod families;
pub mod forward;
pub mod otlp;
pub mod own_telemetry;
pub mod prometheus;
pub mod push;
pub mod remote_write;
