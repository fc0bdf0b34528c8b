pub mod classify;
pub mod series;
pub mod sketch;
pub mod window;
