//! Delivery signals: deployments, rollbacks, change failure, lead time, CI/CD pipelines,
//! and the momentum index.
//!
//! - [`deployments`]: per-pair deployment, rollback, pipeline and lead-time state.
//! - [`index`]: the momentum index and its components (pure functions).

pub mod deployments;
pub mod index;
