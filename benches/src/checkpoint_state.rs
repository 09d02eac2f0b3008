//! Checkpoint duration, size and restore time against the size of a window step's state.
//!
//! Real window state (a tumbling window per user: count, sum, min, max of an amount), spread
//! over `workers` workers and 128 key groups, checkpointed through the same path a job takes —
//! `StateContext::snapshot` (serialising what to write) into a `file://` store, then the
//! manifest. The first checkpoint writes everything; every later one follows a burst of
//! updates to random users (what one second of a busy stream brings) and is incremental:
//! the changes, plus the key groups whose turn it is to be written in full. Then a restore
//! rebuilds every worker's state from the newest checkpoint, and the restored run takes its
//! first checkpoint (incremental too: it continues the restored chains).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use weir_engine::checkpoint::{Checkpoints, DurableBackend, Participant};
use weir_engine::data::{DataType, Field, Row, Schema, Value};
use weir_engine::keys::KeyGroups;
use weir_engine::state::{CheckpointSchedule, KeyedState, StateBackend, StateContext};
use weir_engine::store::Store;
use weir_operators::aggregate::Aggregates;
use weir_operators::window::{WindowKind, WindowState};

const STEP: &str = "per_user";
const DAY_MS: i64 = 86_400_000;

/// What one state size measured.
struct Measured {
    keys: u64,
    full: Duration,
    full_bytes: u64,
    incremental: Vec<Duration>,
    incremental_bytes: Vec<u64>,
    restore: Duration,
    restore_bytes: u64,
    /// The restored run's first checkpoint (after the same burst of updates).
    after_restore: Duration,
}

/// A burst of `updates` events of random users (xorshift from `seed`), each on the worker
/// owning its key group.
fn update(states: &mut [WindowState], seed: &mut u64, updates: u64, keys: u64, ts: i64) {
    let groups = KeyGroups::new(128);
    for _ in 0..updates {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let i = *seed % keys;
        let (key, _) = user(i);
        let w = groups.worker_of(groups.group_of(key.as_bytes()), states.len());
        add(&mut states[w], i, ts);
    }
}

fn aggregates() -> Result<Arc<Aggregates>> {
    let schema = Schema::new(vec![
        Field::new("user", DataType::String),
        Field::new("amount", DataType::Float),
    ])
    .map_err(|e| anyhow!(e))?;
    let specs = [
        ("n", "count(*)"),
        ("total", "sum(amount)"),
        ("low", "min(amount)"),
        ("high", "max(amount)"),
    ];
    Aggregates::compile(specs, &schema)
        .map(Arc::new)
        .map_err(|(name, e)| anyhow!("aggregate {name}: {e}"))
}

fn user(i: u64) -> (Row, Row) {
    let name = format!("user-{i:010}");
    let key = Row::from_values(&[Value::Str(name.as_str().into())]);
    let amount = (i % 10_000) as f64 / 7.0;
    let row = Row::from_values(&[Value::Str(name.as_str().into()), Value::Float(amount)]);
    (key, row)
}

/// Adds one event of user `i` (at `ts`) to the state of the worker that owns it.
fn add(state: &mut WindowState, i: u64, ts: i64) {
    let (key, row) = user(i);
    state.insert_fixed(key.as_bytes(), ts, &row, |_| true);
}

/// Serialised bytes per user, from a small sample.
fn bytes_per_user(aggs: &Arc<Aggregates>, groups: KeyGroups) -> Result<f64> {
    let mut state = WindowState::new(
        STEP,
        WindowKind::Tumbling { size: DAY_MS },
        aggs.clone(),
        groups,
    );
    let sample = 20_000;
    for i in 0..sample {
        add(&mut state, i, 0);
    }
    let bytes: usize = state
        .snapshot_groups(&|_| true)?
        .iter()
        .map(|(_, b)| b.len())
        .sum();
    Ok(bytes as f64 / sample as f64)
}

/// `workers` states holding `keys` users between them, each user on the worker owning its
/// key group (filled in parallel).
fn fill(aggs: &Arc<Aggregates>, groups: KeyGroups, workers: usize, keys: u64) -> Vec<WindowState> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                s.spawn(move || {
                    let kind = WindowKind::Tumbling { size: DAY_MS };
                    let mut state = WindowState::new(STEP, kind, aggs.clone(), groups);
                    for i in 0..keys {
                        let (key, _) = user(i);
                        if groups.worker_of(groups.group_of(key.as_bytes()), workers) == w {
                            add(&mut state, i, 0);
                        }
                    }
                    state
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("fill"))
            .collect()
    })
}

/// One checkpoint of every worker's state: snapshots in parallel, then the manifest.
fn checkpoint(
    checkpoints: &Checkpoints,
    contexts: &mut [StateContext],
    states: &mut [WindowState],
    epoch: u64,
) -> Result<(Duration, u64)> {
    let participants = [Participant {
        name: weir_engine::checkpoint::names::step(STEP),
        every_worker: true,
    }];
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for (ctx, state) in contexts.iter_mut().zip(states.iter_mut()) {
            s.spawn(move || ctx.snapshot(epoch, state).expect("snapshot"));
        }
    });
    let manifest = checkpoints
        .complete(epoch, &participants, contexts.len(), 3)
        .map_err(|e| anyhow!(e))?;
    Ok((t0.elapsed(), manifest.written_bytes()))
}

/// Fills `target` bytes of window state, checkpoints it once in full and `rounds` times
/// incrementally (after `updates` random updates each), then restores.
fn measure(
    target: u64,
    workers: usize,
    rounds: u64,
    updates: u64,
    per_user: f64,
) -> Result<Measured> {
    let aggs = aggregates()?;
    let groups = KeyGroups::new(128);
    let keys = (target as f64 / per_user) as u64;
    let dir = tempfile::tempdir()?;
    let store = Store::open(&format!("file://{}/store", dir.path().display()))?;
    let checkpoints = Checkpoints::new(store, "bench").with_generation(1);
    let backend: Arc<dyn StateBackend> = Arc::new(DurableBackend::new(checkpoints.clone(), None));
    let mut states = fill(&aggs, groups, workers, keys);
    let mut contexts: Vec<StateContext> = (0..workers)
        .map(|w| {
            let schedule = CheckpointSchedule::Every(1);
            StateContext::new(STEP, backend.clone(), schedule, groups, w, workers)
        })
        .collect();
    for (ctx, state) in contexts.iter_mut().zip(states.iter_mut()) {
        ctx.restore(state)?; // nothing to restore: starts recording changes
    }
    let (full, full_bytes) = checkpoint(&checkpoints, &mut contexts, &mut states, 0)?;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut incremental = Vec::new();
    let mut incremental_bytes = Vec::new();
    for epoch in 1..=rounds {
        update(&mut states, &mut seed, updates, keys, epoch as i64);
        let (took, bytes) = checkpoint(&checkpoints, &mut contexts, &mut states, epoch)?;
        incremental.push(took);
        incremental_bytes.push(bytes);
    }
    checkpoints.wait_for_retention();
    drop(states);
    let t0 = Instant::now();
    let latest = checkpoints
        .latest()?
        .ok_or_else(|| anyhow!("no complete checkpoint"))?;
    let restore_bytes = latest.manifest.total_bytes();
    let reader: Arc<dyn StateBackend> =
        Arc::new(DurableBackend::new(checkpoints.clone(), Some(latest)));
    let (mut contexts, mut states): (Vec<StateContext>, Vec<WindowState>) =
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers)
                .map(|w| {
                    let (reader, aggs) = (reader.clone(), aggs.clone());
                    s.spawn(move || {
                        let kind = WindowKind::Tumbling { size: DAY_MS };
                        let mut state = WindowState::new(STEP, kind, aggs, groups);
                        let schedule = CheckpointSchedule::Every(1);
                        let mut ctx = StateContext::new(STEP, reader, schedule, groups, w, workers);
                        ctx.restore(&mut state).expect("restore");
                        (ctx, state)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("restore"))
                .unzip()
        });
    let restore = t0.elapsed();
    let restored: usize = states.iter().map(|s| s.stats().keys).sum();
    if restored as u64 != keys {
        return Err(anyhow!("restored {restored} users of {keys}"));
    }
    update(&mut states, &mut seed, updates, keys, rounds as i64 + 1);
    let (after_restore, _) = checkpoint(&checkpoints, &mut contexts, &mut states, rounds + 1)?;
    Ok(Measured {
        keys,
        full,
        full_bytes,
        incremental,
        incremental_bytes,
        restore,
        restore_bytes,
        after_restore,
    })
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// Every size in `sizes_mb`.
pub fn run(workers: usize, sizes_mb: &[u64], rounds: u64, updates: u64) -> Result<()> {
    let per_user = bytes_per_user(&aggregates()?, KeyGroups::new(128))?;
    println!(
        "window state checkpoints on local disk (file://): {workers} workers, 128 key groups, \
         {per_user:.0} bytes per user; {rounds} incremental checkpoints, each after \
         {updates} updates to random users"
    );
    println!(
        "{:<8} {:>11} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10} {:>9} {:>13}",
        "state",
        "users",
        "full s",
        "full MB",
        "incr p50 s",
        "incr max s",
        "incr MB",
        "restore s",
        "read MB",
        "1st after s"
    );
    for &size in sizes_mb {
        let m = measure(size << 20, workers, rounds, updates, per_user)?;
        let mut sorted = m.incremental.clone();
        sorted.sort();
        let p50 = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
        let max = sorted.last().copied().unwrap_or_default();
        let avg_bytes =
            m.incremental_bytes.iter().sum::<u64>() / m.incremental_bytes.len().max(1) as u64;
        println!(
            "{:<8} {:>11} {:>9.3} {:>9.1} {:>10.3} {:>10.3} {:>10.1} {:>10.3} {:>9.1} {:>13.3}",
            format!("{size} MB"),
            m.keys,
            m.full.as_secs_f64(),
            mb(m.full_bytes),
            p50.as_secs_f64(),
            max.as_secs_f64(),
            mb(avg_bytes),
            m.restore.as_secs_f64(),
            mb(m.restore_bytes),
            m.after_restore.as_secs_f64(),
        );
    }
    Ok(())
}
