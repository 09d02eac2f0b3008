//! Sink throughput: every generated payment written (all eight columns), with checkpoints
//! every 10 s, to a blackhole, a JSON-lines file and an Iceberg table (SQL catalog on SQLite,
//! Parquet data files on local disk, one snapshot per checkpoint).

use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Result};
use weir_engine::stats::JobStats;
use weir_jobs::run::{run, Durable, RunOptions};

use crate::cpu_time;

fn spec(events: u64, dir: &std::path::Path, sink: &str) -> String {
    let d = dir.display();
    let sink = match sink {
        "blackhole" => "{ from: payments, kind: blackhole }".to_string(),
        "file" => format!("{{ from: payments, kind: file, path: \"{d}/out.jsonl\" }}"),
        _ => format!(
            "{{ from: payments, kind: iceberg, catalog: \"sqlite://{d}/catalog.db\", warehouse: \"file://{d}/warehouse\", table: bench.payments }}"
        ),
    };
    format!(
        r#"
name: bench-sinks
checkpoint: {{ interval: 10s, store: "file://{d}/store" }}
sources:
  payments: {{ kind: generator, stream: payments, events: {events}, seed: 7, partitions: 8 }}
sinks:
  out: {sink}
"#
    )
}

/// Rows per second and per CPU-second into each sink, at each worker count.
pub fn run_sinks(events: u64, workers: &[usize]) -> Result<()> {
    println!("sinks: {events} generated payments, every row written, checkpoints every 10 s");
    println!(
        "{:<10} {:>8} {:>8} {:>12} {:>8} {:>14} {:>10}",
        "sink", "workers", "wall s", "rows/s", "cpu s", "rows/cpu-s", "MB written"
    );
    for sink in ["blackhole", "file", "iceberg"] {
        for &w in workers {
            let dir = tempfile::tempdir()?;
            let plan = Arc::new(
                weir_jobs::load_spec(&spec(events, dir.path(), sink), &[])
                    .map_err(|e| anyhow!("{e}"))?,
            );
            let mut options = RunOptions::local(w);
            options.durable = Durable::for_plan(&plan, None).map_err(|e| anyhow!(e))?;
            let (cpu0, t0) = (cpu_time(), Instant::now());
            let summary = run(plan, options, Arc::new(JobStats::default()))?;
            let (wall, cpu) = (
                t0.elapsed().as_secs_f64(),
                (cpu_time() - cpu0).as_secs_f64(),
            );
            let written = match sink {
                "file" => std::fs::metadata(dir.path().join("out.jsonl"))
                    .map(|m| m.len())
                    .unwrap_or(0),
                "iceberg" => du(&dir.path().join("warehouse")),
                _ => 0,
            };
            let rows = summary.stats.records_in as f64;
            println!(
                "{:<10} {:>8} {:>8.2} {:>12.0} {:>8.2} {:>14.0} {:>10.1}",
                sink,
                w,
                wall,
                rows / wall,
                cpu,
                rows / cpu,
                written as f64 / (1 << 20) as f64
            );
        }
    }
    Ok(())
}

/// Bytes under `dir`.
fn du(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => du(&e.path()),
                    _ => e.metadata().map(|m| m.len()).unwrap_or(0),
                })
                .sum()
        })
        .unwrap_or(0)
}
