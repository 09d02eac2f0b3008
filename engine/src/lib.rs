//! weir's runtime: the row data model, epochs and event-time watermarks, key groups and keyed
//! state, and the execution of one timely computation across threads and processes.
//!
//! Connectors, operators and the job model live in the crates above this one; only this crate
//! and operator internals touch timely's builder API.

pub mod checkpoint;
pub mod clock;
pub mod crash;
pub mod data;
pub mod event;
pub mod failure;
pub mod io;
pub mod keys;
pub mod metrics;
pub mod prefetch;
pub mod runtime;
pub mod state;
pub mod stats;
pub mod stop;
pub mod store;
pub mod watermark;

pub use timely;
