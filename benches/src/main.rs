//! Throughput harness (see benches/RESULTS.md).

fn main() {}
