//! Sink throughput: every generated payment written (all eight columns), with checkpoints
//! every 10 s, to a blackhole, a JSON-lines file and an Iceberg table (SQL catalog on SQLite,
//! Parquet data files on local disk, one snapshot per checkpoint).

use anyhow::Result;

use crate::timed_checkpointed_run;

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
            let (summary, wall, cpu) = timed_checkpointed_run(&spec(events, dir.path(), sink), w)?;
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
