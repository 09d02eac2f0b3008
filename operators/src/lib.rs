//! What a weir job composes: expressions, filters and projections, window aggregates, and the
//! sources and sinks at the edges of a dataflow.

pub mod expr;
pub mod aggregate;
pub mod keyed;
pub mod window;
