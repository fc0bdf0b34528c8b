//! Delivery signals: deployments, rollbacks, change failure, lead time, CI/CD pipelines.

pub mod deployments;
