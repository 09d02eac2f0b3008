//! The window operator against a naive recomputation, at 1, 2 and 3 workers, and across a
//! snapshot → restore onto a different number of workers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use timely::dataflow::operators::capture::Extract;
use timely::dataflow::operators::{Capture, Input, Probe};
use timely::dataflow::{InputHandleVec, ProbeHandle};
use weir_engine::data::{DataType, Field, Row, Schema, Value};
use weir_engine::event::{Epoch, Event, WATERMARK_END, WATERMARK_MIN};
use weir_engine::keys::KeyGroups;
use weir_engine::state::{CheckpointSchedule, MemoryBackend, StateContext};
use weir_operators::aggregate::Aggregates;
use weir_operators::source::generator::Rng;
use weir_operators::window::{WindowAggregate, WindowConfig, WindowKind};

/// Input as a real source would deliver it: records per epoch, each stamped with its
/// partition's watermark, and the global watermark at the end of each epoch.
struct Scenario {
    epochs: Vec<Vec<Event>>,
    watermarks: Vec<i64>,
}

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("key", DataType::String),
        Field::new("v", DataType::Int),
    ])
    .unwrap()
}

/// `partitions` streams of `per_partition` records with event times advancing ~10 ms per
/// record, disorder up to `disorder` ms, and a fraction `late` up to 2 s behind; duplicate
/// timestamps are common. Partitions are read in random interleaving, cut into epochs.
fn scenario(
    seed: u64,
    partitions: usize,
    per_partition: usize,
    disorder: i64,
    late: f64,
    ooo: i64,
) -> Scenario {
    let mut rng = Rng::new(seed);
    let mut parts: Vec<Vec<(i64, Row)>> = (0..partitions)
        .map(|p| {
            (0..per_partition)
                .map(|i| {
                    let nominal = (i as i64) * 10 + p as i64;
                    let ts = if rng.chance(late) {
                        nominal - 500 - rng.below(1500) as i64
                    } else {
                        nominal - rng.below(disorder as u64 + 1) as i64
                    };
                    // Coarse timestamps: many records share one.
                    let ts = ts - ts.rem_euclid(5);
                    let key = format!("k{}", rng.below(7));
                    (
                        ts,
                        Row::from_values(&[
                            Value::Str(key.into()),
                            Value::Int(rng.below(100) as i64),
                        ]),
                    )
                })
                .collect()
        })
        .collect();
    for p in parts.iter_mut() {
        p.reverse();
    }
    let mut max_ts = vec![WATERMARK_MIN; partitions];
    let wm_of = |m: i64| {
        if m == WATERMARK_MIN {
            WATERMARK_MIN
        } else {
            m - ooo
        }
    };
    let mut epochs = Vec::new();
    let mut watermarks = Vec::new();
    let mut global = WATERMARK_MIN;
    while parts.iter().any(|p| !p.is_empty()) {
        let mut batch = Vec::new();
        for _ in 0..rng.below(60) + 1 {
            let p = rng.below(partitions as u64) as usize;
            if let Some((ts, row)) = parts[p].pop() {
                batch.push(Event::new(ts, wm_of(max_ts[p]), row));
                max_ts[p] = max_ts[p].max(ts);
            }
        }
        let live: Vec<i64> = (0..partitions)
            .filter(|&p| !parts[p].is_empty())
            .map(|p| wm_of(max_ts[p]))
            .collect();
        global = global.max(live.into_iter().min().unwrap_or(WATERMARK_END));
        epochs.push(batch);
        watermarks.push(global);
    }
    Scenario { epochs, watermarks }
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

#[derive(Clone, Copy)]
enum Mode {
    /// Feed everything and end the streams.
    Whole,
    /// Feed epochs `..=c`, checkpoint at `c` (with records of `c + 1` arriving early), stop
    /// without ending.
    StopAfterCheckpoint(Epoch),
    /// Restore from checkpoint `c` and feed the rest.
    RestoreFrom(Epoch),
}

type Output = (Vec<(Epoch, Event)>, Vec<Event>);

fn run(
    workers: usize,
    kind: WindowKind,
    lateness: i64,
    scenario: Arc<Scenario>,
    mode: Mode,
    backend: Arc<MemoryBackend>,
) -> Output {
    let collected = Arc::new(Mutex::new((Vec::new(), Vec::new())));
    let sink = collected.clone();
    timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let mut data = InputHandleVec::<Epoch, Event>::new();
        let mut marks = InputHandleVec::<Epoch, i64>::new();
        let probe = ProbeHandle::new();
        let schedule = match mode {
            Mode::StopAfterCheckpoint(c) => CheckpointSchedule::At([c].into()),
            _ => CheckpointSchedule::Never,
        };
        let state = StateContext::new(
            "w",
            backend.clone(),
            schedule,
            KeyGroups::new(16),
            index,
            peers,
        );
        let (results, late) = worker.dataflow::<Epoch, _, _>(|scope| {
            let out = scope.input_from(&mut data).window_aggregate(
                scope.input_from(&mut marks),
                config(kind, lateness),
                Some(state),
                Default::default(),
            );
            (
                out.results.probe_with(&probe).capture(),
                out.late.probe_with(&probe).capture(),
            )
        });
        let n = scenario.epochs.len() as Epoch;
        let (first, last) = match mode {
            Mode::Whole => (0, n),
            Mode::StopAfterCheckpoint(c) => (0, c + 1),
            Mode::RestoreFrom(c) => (c + 1, n),
        };
        data.advance_to(first);
        marks.advance_to(first);
        for e in first..last {
            if index == 0 {
                for ev in &scenario.epochs[e as usize] {
                    data.send(ev.clone());
                }
            }
            if let Mode::StopAfterCheckpoint(c) = mode {
                if e == c && c + 1 < n {
                    // Records of the next epoch arrive before the checkpoint epoch completes:
                    // they must not be in the snapshot.
                    data.advance_to(c + 1);
                    if index == 0 {
                        for ev in &scenario.epochs[(c + 1) as usize] {
                            data.send(ev.clone());
                        }
                    }
                    data.flush();
                    for _ in 0..20 {
                        worker.step();
                    }
                }
            }
            marks.send(scenario.watermarks[e as usize]);
            data.advance_to(e + 1);
            marks.advance_to(e + 1);
            worker.step_while(|| probe.less_than(&(e + 1)));
        }
        if matches!(mode, Mode::Whole | Mode::RestoreFrom(_)) {
            marks.send(WATERMARK_END);
        }
        data.close();
        marks.close();
        worker.step_while(|| !probe.done());
        let mut out = sink.lock().unwrap();
        for (epoch, events) in results.extract() {
            out.0.extend(events.into_iter().map(|ev| (epoch, ev)));
        }
        for (_, events) in late.extract() {
            out.1.extend(events);
        }
    })
    .unwrap();
    let mut out = std::mem::take(&mut *collected.lock().unwrap());
    out.0.sort();
    out.1.sort();
    out
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
        let scenario = Arc::new(scenario(seed as u64 + 100, 4, 250, 40, 0.02, 30));
        let whole = run(
            2,
            *kind,
            *lateness,
            scenario.clone(),
            Mode::Whole,
            MemoryBackend::new(),
        );
        let checkpoint = scenario.epochs.len() as Epoch / 2;
        for (before, after) in [(2, 3), (3, 1), (1, 2)] {
            let backend = MemoryBackend::new();
            let first = run(
                before,
                *kind,
                *lateness,
                scenario.clone(),
                Mode::StopAfterCheckpoint(checkpoint),
                backend.clone(),
            );
            assert_eq!(
                backend.epochs(),
                vec![checkpoint],
                "{kind:?}: one checkpoint taken"
            );
            assert_eq!(
                backend.finished_workers(checkpoint, "w").len(),
                before,
                "every worker snapshots"
            );
            assert!(
                backend.size_of(checkpoint) > 0,
                "{kind:?}: open windows were snapshotted"
            );
            backend.restore_from(checkpoint);
            let second = run(
                after,
                *kind,
                *lateness,
                scenario.clone(),
                Mode::RestoreFrom(checkpoint),
                backend,
            );
            // What the first run emitted up to the checkpoint, then everything the restored run
            // emitted, is what the uninterrupted run emitted.
            let mut combined: Vec<(Epoch, Event)> = first
                .0
                .into_iter()
                .filter(|(e, _)| *e <= checkpoint)
                .collect();
            combined.extend(second.0);
            assert_eq!(
                rows(&combined),
                rows(&whole.0),
                "{kind:?}: {before} → {after} workers"
            );
            let mut late: Vec<Event> = first
                .1
                .into_iter()
                .filter(|e| {
                    scenario.epochs[..=checkpoint as usize]
                        .iter()
                        .flatten()
                        .any(|x| x == e)
                })
                .collect();
            late.extend(second.1);
            late.sort();
            assert_eq!(
                late, whole.1,
                "{kind:?}: late records, {before} → {after} workers"
            );
        }
    }
}
