pub mod forward;
pub mod prometheus;
