//! Checkpoint costs: checkpoint duration, size and restore time against state size
//! ([`crate::checkpoint_state`]), and the fraud job's throughput with checkpoints off, every
//! 10 s and every 1 s (local disk).

use anyhow::{bail, Result};

use crate::timed_checkpointed_run;

fn fraud_spec(events: u64, checkpoint: Option<(&str, &str)>) -> String {
    let checkpoint = checkpoint
        .map(|(interval, store)| {
            format!("checkpoint: {{ interval: {interval}, retain: 100000, store: \"{store}\" }}")
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

/// The cost of checkpoints counted in instructions, which this VM's slow periods do not
/// change (whole runs vary by ±20 %, more than the 5 % to be shown; it has no hardware
/// counters): the release `weir` runs the fraud job at one worker under valgrind's callgrind
/// with checkpoints off, configured but never due (`interval: 1h`: the cost of recording
/// changed state, plus the final checkpoint), and every second (every checkpoint kept, so they
/// can be counted). One native run gives instructions per CPU-second, which turns the cost of
/// one checkpoint into its share of a 10-s interval.
pub fn cost(events: u64) -> Result<()> {
    let weir = crate::latency::weir_binary()?;
    if std::process::Command::new("valgrind")
        .arg("--version")
        .output()
        .is_err()
    {
        bail!("valgrind is missing: `apt-get install valgrind`");
    }
    let dir = tempfile::tempdir()?;
    let run = |interval: Option<&str>, under_valgrind: bool| -> Result<(f64, f64, usize)> {
        let store = dir
            .path()
            .join(format!("store-{}", interval.unwrap_or("off")));
        let _ = std::fs::remove_dir_all(&store);
        let checkpoint = interval
            .map(|i| {
                format!(
                    "checkpoint: {{ interval: {i}, retain: 100000, store: \"file://{}\" }}",
                    store.display()
                )
            })
            .unwrap_or_default();
        let spec = fraud_spec(events, None).replace(
            "name: bench-fraud\n",
            &format!("name: bench-fraud\n{checkpoint}\n"),
        );
        let path = dir.path().join("job.yaml");
        std::fs::write(&path, spec)?;
        let mut cmd = if under_valgrind {
            let mut c = std::process::Command::new("valgrind");
            c.args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
                .arg(&weir);
            c
        } else {
            std::process::Command::new(&weir)
        };
        let started = crate::cpu_time_of_children();
        let out = cmd
            .arg("run")
            .arg(&path)
            .args(["--workers", "1", "--progress", "never"])
            .output()?;
        let cpu = (crate::cpu_time_of_children() - started).as_secs_f64();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            bail!("weir run failed: {stderr}");
        }
        let instructions = stderr
            .lines()
            .find_map(|l| l.split("Collected :").nth(1))
            .and_then(|n| n.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        let taken = std::fs::read_dir(store.join("bench-fraud"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().join("_MANIFEST").exists())
                    .count()
            })
            .unwrap_or(0);
        Ok((instructions, cpu, taken))
    };
    println!("\nfraud job ({events} generated payments, 1 worker): checkpoint cost in instructions (callgrind)");
    let (off, _, _) = run(None, true)?;
    let (recording, _, _) = run(Some("1h"), true)?;
    let (every_second, _, taken) = run(Some("1s"), true)?;
    let (_, native_cpu, _) = run(None, false)?;
    let per_second = off / native_cpu.max(1e-3);
    // The final checkpoint is in both configured runs; the others are the 1-s run's own.
    let per_checkpoint = (every_second - recording) / (taken.saturating_sub(1).max(1)) as f64;
    let share = |x: f64| x / off * 100.0;
    println!("  off                  {off:>16.0} instructions");
    println!(
        "  interval 1h          {recording:>16.0}   recording changes: {:+.2} %",
        share(recording - off)
    );
    println!("  interval 1s          {every_second:>16.0}   {taken} checkpoints: {per_checkpoint:.0} instructions each");
    println!(
        "  natively {:.2} CPU-s off: {:.2e} instructions per CPU-second",
        native_cpu, per_second
    );
    let interval =
        |secs: f64| (recording - off) / off * 100.0 + per_checkpoint / (per_second * secs) * 100.0;
    println!(
        "so checkpoints every 10 s cost {:+.2} % of the job's instructions, every 1 s {:+.2} %",
        interval(10.0),
        interval(1.0)
    );
    Ok(())
}
