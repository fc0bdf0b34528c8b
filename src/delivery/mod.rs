//! Delivery signals: deployments, rollbacks, change failure, lead time, CI/CD pipelines,
//! and the momentum index.
//!
//! - [`deployments`]: per-pair deployment, rollback, pipeline and lead-time state.
//! - [`index`]: the momentum index and its components (pure functions).
//! - [`pipelines`]: CI/CD pipeline runs of a pair; [`revisions`]: the process-wide
//!   revision index that joins runs to the deployments they produced (lead time).
//! - [`records`]: explicit deployment records (spans, log records) and the pair they
//!   count for.
//! - [`view`]: the delivery signals as readers see them.

pub mod deployments;
pub mod index;
pub mod pipelines;
pub mod records;
pub mod revisions;
pub mod view;
