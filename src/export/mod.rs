//! Exporters: the neutral family model and its renderers.

pub mod families;
pub mod prometheus;
