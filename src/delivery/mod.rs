//! Delivery signals: deployments, rollbacks, change failure, lead time, CI/CD pipelines,
//! and the momentum index.
//!
//! - [`deployments`]: per-pair deployment, rollback, pipeline and lead-time state.
//! - [`index`]: the momentum index and its components (pure functions).
//! - [`records`]: explicit deployment records (spans, log records) and the pair they
//!   count for.
//! - [`view`]: the delivery signals as readers see them.

pub mod deployments;
pub mod index;
pub mod records;
pub mod view;
