//! The window operator against a naive recomputation, at 1, 2 and 3 workers, and across a
//! snapshot → restore onto a different number of workers.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{scenario as scenario_with_keys, schema, Build, Mode, Scenario};
use weir_engine::data::Value;
use weir_engine::event::{Epoch, Event};
use weir_engine::keys::KeyGroups;
use weir_engine::state::MemoryBackend;
use weir_operators::aggregate::Aggregates;
use weir_operators::timed::TimedOutputs;
use weir_operators::window::{WindowAggregate, WindowConfig, WindowKind};

fn scenario(
    seed: u64,
    partitions: usize,
    per_partition: usize,
    disorder: i64,
    late: f64,
    ooo: i64,
) -> Scenario {
    scenario_with_keys(seed, partitions, per_partition, disorder, late, ooo, 7)
}

fn config(kind: WindowKind, allowed_lateness: i64) -> WindowConfig {
    let aggregates = Aggregates::compile(
        [
            ("n", "count(*)"),
            ("total", "sum(v)"),
            ("lo", "min(v)"),
            ("hi", "max(v)"),
        ],
        &schema(),
    )
    .unwrap();
    WindowConfig {
        name: "w".into(),
        key_columns: vec![0],
        kind,
        allowed_lateness,
        aggregates: Arc::new(aggregates),
        key_groups: KeyGroups::new(16),
    }
}

type Output = (Vec<(Epoch, Event)>, Vec<Event>);

fn build(kind: WindowKind, lateness: i64) -> Arc<Build> {
    Arc::new(move |mut inputs, wm, state| {
        let out = inputs.pop().unwrap().window_aggregate(
            wm,
            config(kind, lateness),
            state,
            Default::default(),
        );
        TimedOutputs {
            results: out.results,
            late: vec![out.late],
        }
    })
}

fn run(
    workers: usize,
    kind: WindowKind,
    lateness: i64,
    scenario: Arc<Scenario>,
    mode: Mode,
    backend: Arc<MemoryBackend>,
) -> Output {
    let (results, mut late) = common::run(
        workers,
        Arc::new(vec![(*scenario).clone()]),
        mode,
        backend,
        "w",
        build(kind, lateness),
    );
    (results, late.pop().unwrap())
}

/// The naive recomputation: every record, every window, following the documented rules.
fn oracle(
    kind: WindowKind,
    lateness: i64,
    scenario: &Scenario,
) -> (Vec<Vec<Value<'static>>>, Vec<Event>) {
    let records: Vec<&Event> = scenario.epochs.iter().flatten().collect();
    let mut windows: BTreeMap<(String, i64, i64), Vec<i64>> = BTreeMap::new();
    let mut late = Vec::new();
    let key = |e: &Event| e.row.get_str(0).unwrap().to_string();
    let value = |e: &Event| e.row.get_i64(1).unwrap();
    match kind {
        WindowKind::Session { gap } => {
            let mut by_key: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
            for e in &records {
                if e.ts + lateness >= e.wm {
                    by_key.entry(key(e)).or_default().push((e.ts, value(e)));
                } else {
                    late.push((*e).clone());
                }
            }
            for (k, mut items) in by_key {
                items.sort();
                let mut current: Option<(i64, i64, Vec<i64>)> = None;
                for (ts, v) in items {
                    match &mut current {
                        Some((_, end, vs)) if ts < *end => {
                            *end = (*end).max(ts + gap);
                            vs.push(v);
                        }
                        _ => {
                            if let Some((s, e, vs)) = current.take() {
                                windows.insert((k.clone(), s, e), vs);
                            }
                            current = Some((ts, ts + gap, vec![v]));
                        }
                    }
                }
                if let Some((s, e, vs)) = current {
                    windows.insert((k, s, e), vs);
                }
            }
        }
        _ => {
            let (size, slide) = match kind {
                WindowKind::Tumbling { size } => (size, size),
                WindowKind::Sliding { size, slide } => (size, slide),
                WindowKind::Session { .. } => unreachable!(),
            };
            for e in &records {
                let mut accepted = false;
                // Every window start s (a multiple of slide) with s <= ts < s + size.
                let mut start = e.ts - e.ts.rem_euclid(slide);
                while start > e.ts - size {
                    if start + size + lateness > e.wm {
                        windows
                            .entry((key(e), start, start + size))
                            .or_default()
                            .push(value(e));
                        accepted = true;
                    }
                    start -= slide;
                }
                if !accepted {
                    late.push((*e).clone());
                }
            }
        }
    }
    let rows = windows
        .into_iter()
        .map(|((k, s, e), vs)| {
            vec![
                Value::Str(k.into()),
                Value::Ts(s),
                Value::Ts(e),
                Value::Int(vs.len() as i64),
                Value::Int(vs.iter().sum()),
                Value::Int(*vs.iter().min().unwrap()),
                Value::Int(*vs.iter().max().unwrap()),
            ]
        })
        .collect();
    late.sort();
    (rows, late)
}

fn rows(results: &[(Epoch, Event)]) -> Vec<Vec<Value<'static>>> {
    let mut rows: Vec<_> = results
        .iter()
        .map(|(_, e)| e.row.iter().map(Value::into_owned).collect::<Vec<_>>())
        .collect();
    rows.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    rows
}

fn sorted(mut rows: Vec<Vec<Value<'static>>>) -> Vec<Vec<Value<'static>>> {
    rows.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    rows
}

const KINDS: [(WindowKind, i64); 4] = [
    (WindowKind::Tumbling { size: 100 }, 0),
    (WindowKind::Tumbling { size: 250 }, 40),
    (
        WindowKind::Sliding {
            size: 300,
            slide: 100,
        },
        20,
    ),
    (WindowKind::Session { gap: 45 }, 30),
];

#[test]
fn windows_match_the_oracle_identically_at_one_two_and_three_workers() {
    for (seed, (kind, lateness)) in KINDS.iter().enumerate() {
        let scenario = Arc::new(scenario(seed as u64 + 1, 4, 300, 40, 0.03, 30));
        let (expected, expected_late) = oracle(*kind, *lateness, &scenario);
        assert!(
            !expected_late.is_empty() && expected.len() > 20,
            "{kind:?}: the scenario must have late records"
        );
        let mut outputs = Vec::new();
        for workers in 1..=3 {
            let out = run(
                workers,
                *kind,
                *lateness,
                scenario.clone(),
                Mode::Whole,
                MemoryBackend::new(),
            );
            assert_eq!(
                rows(&out.0),
                sorted(expected.clone()),
                "{kind:?} at {workers} worker(s)"
            );
            assert_eq!(
                out.1, expected_late,
                "{kind:?} late records at {workers} worker(s)"
            );
            outputs.push(out);
        }
        // Same results, same epochs, same order within the epoch.
        assert_eq!(outputs[0], outputs[1], "{kind:?}: 1 vs 2 workers");
        assert_eq!(outputs[0], outputs[2], "{kind:?}: 1 vs 3 workers");
    }
}

#[test]
fn results_carry_window_end_minus_one_as_event_time() {
    let scenario = Arc::new(scenario(7, 3, 200, 20, 0.0, 20));
    let (results, late) = run(
        2,
        WindowKind::Tumbling { size: 100 },
        0,
        scenario,
        Mode::Whole,
        MemoryBackend::new(),
    );
    assert!(late.is_empty());
    assert!(results
        .iter()
        .all(|(_, e)| e.ts == e.row.get_i64(2).unwrap() - 1 && e.wm == e.ts));
}

#[test]
fn snapshot_then_restore_on_other_worker_counts_continues_exactly() {
    for (seed, (kind, lateness)) in KINDS.iter().enumerate() {
        let scenario = scenario(seed as u64 + 100, 4, 250, 40, 0.02, 30);
        common::assert_restores_exactly(Arc::new(vec![scenario]), "w", build(*kind, *lateness));
    }
}

#[test]
fn inputs_that_end_while_a_checkpoint_is_pending_lose_nothing() {
    // The records held back for the checkpoint go in before the end watermark fires (they
    // were once reported late, under load, when a job ended with a checkpoint pending).
    for (seed, (kind, lateness)) in KINDS.iter().enumerate() {
        let scenario = Arc::new(scenario(seed as u64 + 200, 3, 200, 30, 0.02, 30));
        let n = scenario.epochs.len() as Epoch;
        let whole = run(
            2,
            *kind,
            *lateness,
            scenario.clone(),
            Mode::Whole,
            MemoryBackend::new(),
        );
        for workers in 1..=3 {
            let ended = run(
                workers,
                *kind,
                *lateness,
                scenario.clone(),
                Mode::EndWhileCheckpointPending(n / 2),
                MemoryBackend::new(),
            );
            assert_eq!(
                rows(&ended.0),
                rows(&whole.0),
                "{kind:?} at {workers} worker(s)"
            );
            assert_eq!(
                ended.1, whole.1,
                "{kind:?} late records at {workers} worker(s)"
            );
        }
    }
}
