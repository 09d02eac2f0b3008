//! What a weir job composes: expressions, filters and projections, window aggregates, and the
//! sources and sinks at the edges of a dataflow.

pub mod aggregate;
pub mod expr;
pub mod filter_project;
#[cfg(feature = "iceberg")]
pub mod iceberg;
pub mod join;
pub mod kafka;
pub mod keyed;
pub mod ordered;
pub mod redis;
pub mod rolling;
pub mod rule;
pub mod sink;
pub mod source;
pub mod timed;
pub mod window;
