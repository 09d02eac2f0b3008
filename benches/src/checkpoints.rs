//! Checkpoint costs: the fraud job's throughput with checkpoints off, every 10 s and every 1 s
//! (local disk), and the store path of one checkpoint against state size — writing every
//! worker's key groups, completing the manifest, and reading the state back for a restore.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use weir_engine::checkpoint::{Checkpoints, DurableBackend, Participant};
use weir_engine::keys::KeyGroup;
use weir_engine::state::StateBackend;
use weir_engine::store::Store;

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
fn throughput(events: u64, workers: usize, repeat: usize) -> Result<()> {
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

/// One checkpoint of `bytes` of keyed state over `workers` workers and 128 key groups:
/// write + complete, then a restore's read of every group. Returns (write, restore).
fn store_path(bytes: usize, workers: usize) -> Result<(Duration, Duration, u64)> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&format!("file://{}/store", dir.path().display()))?;
    let checkpoints = Checkpoints::new(store, "bench").with_generation(1);
    let backend = DurableBackend::new(checkpoints.clone(), None);
    let groups = 128u32;
    let per_group = bytes / groups as usize;
    // Incompressible-ish payload, generated before the clock starts.
    let payload: Vec<u8> = (0..per_group)
        .map(|i| ((i * 2654435761usize) >> 13) as u8)
        .collect();
    let owned: Vec<Vec<(KeyGroup, Vec<u8>)>> = (0..workers)
        .map(|w| {
            (0..groups)
                .filter(|g| *g as usize % workers == w)
                .map(|g| (KeyGroup(g), payload.clone()))
                .collect()
        })
        .collect();
    let participants = [Participant {
        name: "step.big".into(),
        every_worker: true,
    }];
    let epoch = 9;
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for (w, groups) in owned.into_iter().enumerate() {
            let backend = &backend;
            s.spawn(move || {
                backend.write(epoch, "big", w, groups).expect("write");
                backend.finished(epoch, "big", w).expect("done");
            });
        }
    });
    let manifest = checkpoints
        .complete(epoch, &participants, workers, 3)
        .map_err(|e| anyhow!(e))?;
    let write = t0.elapsed();
    let size: u64 = manifest.files.values().sum();
    let t1 = Instant::now();
    let restore = checkpoints
        .latest()?
        .ok_or_else(|| anyhow!("no checkpoint"))?;
    let reader = DurableBackend::new(checkpoints, Some(restore));
    let mut read = 0usize;
    for g in 0..groups {
        read += reader.read("big", KeyGroup(g))?.map_or(0, |b| b.len());
    }
    let restore = t1.elapsed();
    assert_eq!(read, per_group * groups as usize);
    Ok((write, restore, size))
}

/// Both parts.
pub fn run_all(events: u64, workers: usize, repeat: usize) -> Result<()> {
    println!(
        "one checkpoint's store path on local disk (file://), {workers} workers, 128 key groups"
    );
    println!(
        "{:<10} {:>12} {:>16} {:>16}",
        "state", "size MB", "write+complete s", "restore read s"
    );
    for mb in [10usize, 100, 1000] {
        let mut runs: Vec<(Duration, Duration, u64)> = (0..3)
            .map(|_| store_path(mb << 20, workers))
            .collect::<Result<_>>()?;
        runs.sort_by_key(|r| r.0);
        let worst = runs.iter().map(|r| r.0).max().unwrap_or_default();
        let (w, r, size) = runs[1];
        println!(
            "{:<10} {:>12.1} {:>16.3} {:>16.3}   (worst write of 3: {:.3} s)",
            format!("{mb} MB"),
            size as f64 / (1 << 20) as f64,
            w.as_secs_f64(),
            r.as_secs_f64(),
            worst.as_secs_f64()
        );
    }
    throughput(events, workers, repeat)
}
