//! The `weir` binary's parts: the command line, the coordinator (HTTP API, durable job store,
//! placement, restarts), the worker agent that runs job processes, and the `/metrics`
//! endpoint every process serves.

pub mod cli;
pub mod coordinator;
pub mod metrics_http;
pub mod wire;
pub mod worker;
