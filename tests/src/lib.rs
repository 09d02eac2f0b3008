//! Helpers shared by weir's end-to-end tests (`tests/tests/`, `cluster/tests/`).

use std::path::Path;
use std::sync::Arc;

use weir_engine::stats::JobStats;
use weir_jobs::run::{run, RunOptions, RunSummary};

/// Validates `spec` and runs it in this process with `workers` threads.
pub fn run_spec(spec: &str, workers: usize) -> RunSummary {
    let plan =
        weir_jobs::load_spec(spec, &[]).unwrap_or_else(|e| panic!("invalid spec:\n{e}\n{spec}"));
    run(
        Arc::new(plan),
        RunOptions::local(workers),
        Arc::new(JobStats::default()),
    )
    .unwrap_or_else(|e| panic!("run failed: {e}"))
}

/// The lines of a file (empty when it does not exist).
pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|s| s.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// The lines of a file, parsed as JSON objects.
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    lines(path)
        .iter()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: bad JSON line {l}: {e}", path.display()))
        })
        .collect()
}

/// Every file of `dir` (name → content), for comparing the whole output of two runs.
pub fn read_dir(dir: &Path) -> std::collections::BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.expect("dir entry"))
                .filter(|e| e.path().is_file())
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().to_string(),
                        std::fs::read_to_string(e.path()).expect("read"),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A TCP port that was free a moment ago, on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}
