//! Checkpoint costs: checkpoint duration, size and restore time against state size
//! ([`crate::checkpoint_state`]), and the fraud job's throughput with checkpoints off, every
//! 10 s and every 1 s (local disk).

use anyhow::Result;

use crate::timed_checkpointed_run;

fn fraud_spec(events: u64, checkpoint: Option<(&str, &str)>) -> String {
    let checkpoint = checkpoint
        .map(|(interval, store)| {
            format!("checkpoint: {{ interval: {interval}, store: \"{store}\" }}")
        })
        .unwrap_or_default();
    format!(
        r#"
name: bench-fraud
{checkpoint}
sources:
  payments: {{ kind: generator, stream: payments, events: {events}, seed: 7, partitions: 8 }}
steps:
  failed_bursts: {{ from: payments, rule: {{ key: user_id, count_over: 10m, threshold: 3, where: "status = 'FAILED'", id: payment_id }} }}
  per_user: {{ from: payments, key: user_id, window: {{ kind: tumbling, size: 1m }}, aggregates: {{ n: "count(*)", total: "sum(amount)" }} }}
sinks:
  alerts: {{ from: failed_bursts, kind: blackhole }}
  windows: {{ from: per_user, kind: blackhole }}
"#
    )
}

/// One run of the fraud job with checkpoints every `interval` (or none): (wall s, CPU s,
/// events in, checkpoints taken).
fn fraud_run(
    events: u64,
    workers: usize,
    interval: Option<&str>,
) -> Result<(f64, f64, u64, usize)> {
    let dir = tempfile::tempdir()?;
    let store = format!("file://{}/store", dir.path().display());
    let spec = fraud_spec(events, interval.map(|i| (i, store.as_str())));
    let (summary, wall, cpu) = timed_checkpointed_run(&spec, workers)?;
    let taken = std::fs::read_dir(dir.path().join("store/bench-fraud"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().join("_MANIFEST").exists())
                .count()
        })
        .unwrap_or(0);
    Ok((wall, cpu, summary.stats.records_in, taken))
}

/// Throughput with checkpoints off / every 10 s / every 1 s: `repeat` rounds, each running
/// the three settings in a rotated order (so none always runs first, on a cold allocator and
/// page cache), compared by their medians.
pub fn throughput(events: u64, workers: usize, repeat: usize) -> Result<()> {
    println!("\nfraud job ({events} generated payments, {workers} worker(s)): checkpoint interval vs throughput, {repeat} interleaved rounds");
    println!(
        "{:<6} {:<12} {:>8} {:>12} {:>8} {:>14} {:>12}",
        "round", "checkpoints", "wall s", "events/s", "cpu s", "events/cpu-s", "checkpoints"
    );
    let settings = [None, Some("10s"), Some("1s")];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); settings.len()];
    for round in 0..repeat.max(1) {
        for k in 0..settings.len() {
            let which = (round + k) % settings.len();
            let interval = settings[which];
            let (wall, cpu, records, taken) = fraud_run(events, workers, interval)?;
            let rate = records as f64 / cpu;
            rates[which].push(rate);
            println!(
                "{:<6} {:<12} {:>8.2} {:>12.0} {:>8.2} {:>14.0} {:>12}",
                round + 1,
                interval.unwrap_or("off"),
                wall,
                records as f64 / wall,
                cpu,
                rate,
                taken
            );
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let medians: Vec<f64> = rates.iter_mut().map(median).collect();
    println!("median events per CPU-second:");
    for (interval, m) in settings.iter().zip(&medians) {
        println!(
            "  {:<12} {:>12.0} ({:+.1}% vs off)",
            interval.unwrap_or("off"),
            m,
            (m / medians[0] - 1.0) * 100.0
        );
    }
    Ok(())
}

/// Both parts.
pub fn run_all(events: u64, workers: usize, repeat: usize) -> Result<()> {
    crate::checkpoint_state::run(workers, &[10, 100, 1000], 16, 100_000)?;
    throughput(events, workers, repeat)
}
