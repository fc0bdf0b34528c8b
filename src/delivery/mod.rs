//! Delivery signals (SPEC §5): deployments, change failure, lead time, CI/CD, and the
//! momentum index.

pub mod index;
