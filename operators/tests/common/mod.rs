//! The harness of the operator tests: input as real sources deliver it (records per epoch,
//! each stamped with its partition's watermark, and the global watermark per epoch), run at
//! any worker count, whole or stopped after a checkpoint and restored.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use timely::dataflow::operators::capture::Extract;
use timely::dataflow::operators::{Capture, Input, Probe};
use timely::dataflow::{InputHandleVec, ProbeHandle, Scope, StreamVec};
use weir_engine::data::{DataType, Field, Row, Schema, Value};
use weir_engine::event::{Epoch, Event, WATERMARK_END, WATERMARK_MIN};
use weir_engine::keys::KeyGroups;
use weir_engine::state::{CheckpointSchedule, MemoryBackend, StateContext};
use weir_engine::watermark::min_watermarks;
use weir_operators::source::generator::Rng;
use weir_operators::timed::TimedOutputs;

/// One input: records per epoch and the global watermark at the end of each epoch.
#[derive(Clone)]
pub struct Scenario {
    pub epochs: Vec<Vec<Event>>,
    pub watermarks: Vec<i64>,
}

/// `key: string, v: int`.
pub fn schema() -> Schema {
    Schema::new(vec![
        Field::new("key", DataType::String),
        Field::new("v", DataType::Int),
    ])
    .unwrap()
}

/// `partitions` streams of `per_partition` records with event times advancing ~10 ms per
/// record, disorder up to `disorder` ms, and a fraction `late` up to 2 s behind; timestamps
/// are multiples of 5 ms, so duplicates are common. Keys are `k0`..`k{keys-1}`, values below
/// 100. Partitions are read in random interleaving, cut into epochs.
pub fn scenario(
    seed: u64,
    partitions: usize,
    per_partition: usize,
    disorder: i64,
    late: f64,
    ooo: i64,
    keys: u64,
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
                    let ts = ts - ts.rem_euclid(5);
                    let key = format!("k{}", rng.below(keys));
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

/// Pads scenarios to the same number of epochs (the watermark holds in the padding).
pub fn aligned(mut inputs: Vec<Scenario>) -> Vec<Scenario> {
    let n = inputs.iter().map(|s| s.epochs.len()).max().unwrap_or(0);
    for s in &mut inputs {
        let last = s.watermarks.last().copied().unwrap_or(WATERMARK_MIN);
        s.epochs.resize(n, Vec::new());
        s.watermarks.resize(n, last);
    }
    inputs
}

#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// Feed everything and end the streams.
    Whole,
    /// Feed epochs `..=c`, checkpoint at `c` (with records of `c + 1` arriving early), stop
    /// without ending.
    StopAfterCheckpoint(Epoch),
    /// Restore from checkpoint `c` and feed the rest.
    RestoreFrom(Epoch),
    /// Restore from checkpoint `c` and go on like [`Mode::StopAfterCheckpoint`] at `d`.
    RestoreThenStopAfter(Epoch, Epoch),
    /// Feed epochs `..c` as they complete; then, with checkpoint `c` pending, every later
    /// epoch at once (its records held for the checkpoint) and end the streams, the end
    /// watermark at the last records' epoch: the checkpoint is never taken.
    EndWhileCheckpointPending(Epoch),
}

/// Results with their epochs, and late records per input — sorted.
pub type Output = (Vec<(Epoch, Event)>, Vec<Vec<Event>>);

/// What builds the operator under test from its inputs, the combined watermark and its state.
pub type Build = dyn for<'s> Fn(
        Vec<StreamVec<'s, Epoch, Event>>,
        StreamVec<'s, Epoch, i64>,
        Option<StateContext>,
    ) -> TimedOutputs<'s>
    + Send
    + Sync;

/// Runs the operator built by `build` (state under the name `op`) over `inputs`.
pub fn run(
    workers: usize,
    inputs: Arc<Vec<Scenario>>,
    mode: Mode,
    backend: Arc<MemoryBackend>,
    op: &'static str,
    build: Arc<Build>,
) -> Output {
    let collected = Arc::new(Mutex::new((Vec::new(), vec![Vec::new(); inputs.len()])));
    let sink = collected.clone();
    timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let sides = inputs.len();
        let mut data: Vec<InputHandleVec<Epoch, Event>> =
            (0..sides).map(|_| InputHandleVec::new()).collect();
        let mut marks: Vec<InputHandleVec<Epoch, i64>> =
            (0..sides).map(|_| InputHandleVec::new()).collect();
        let probe = ProbeHandle::new();
        let schedule = match mode {
            // A checkpoint at every epoch up to `c`: the one restored from is incremental,
            // its key groups' chains mixing full parts and changes.
            Mode::StopAfterCheckpoint(c) => CheckpointSchedule::At((0..=c).collect()),
            Mode::RestoreThenStopAfter(c, d) => CheckpointSchedule::At((c + 1..=d).collect()),
            Mode::EndWhileCheckpointPending(c) => CheckpointSchedule::At([c].into()),
            _ => CheckpointSchedule::Never,
        };
        let state = StateContext::new(
            op,
            backend.clone(),
            schedule,
            KeyGroups::new(16),
            index,
            peers,
        );
        let (results, late) = worker.dataflow::<Epoch, _, _>(|scope: Scope<'_, Epoch>| {
            let streams: Vec<_> = data.iter_mut().map(|h| scope.input_from(h)).collect();
            let mut wms: Vec<_> = marks.iter_mut().map(|h| scope.input_from(h)).collect();
            let wm = match wms.len() {
                1 => wms.pop().unwrap(),
                _ => {
                    let b = wms.pop().unwrap();
                    min_watermarks(wms.pop().unwrap(), b)
                }
            };
            let out = build(streams, wm, Some(state));
            let late: Vec<_> = out
                .late
                .into_iter()
                .map(|l| l.probe_with(&probe).capture())
                .collect();
            (out.results.probe_with(&probe).capture(), late)
        });
        let n = inputs[0].epochs.len() as Epoch;
        let (first, last) = match mode {
            Mode::Whole => (0, n),
            Mode::StopAfterCheckpoint(c) => (0, c + 1),
            Mode::RestoreFrom(c) => (c + 1, n),
            Mode::RestoreThenStopAfter(c, d) => (c + 1, d + 1),
            Mode::EndWhileCheckpointPending(c) => (0, c),
        };
        for h in data.iter_mut() {
            h.advance_to(first);
        }
        for h in marks.iter_mut() {
            h.advance_to(first);
        }
        for e in first..last {
            for (side, h) in data.iter_mut().enumerate() {
                if index == 0 {
                    for ev in &inputs[side].epochs[e as usize] {
                        h.send(ev.clone());
                    }
                }
            }
            if let Mode::StopAfterCheckpoint(c) | Mode::RestoreThenStopAfter(_, c) = mode {
                if e == c && c + 1 < n {
                    // Records of the next epoch arrive before the checkpoint epoch completes:
                    // they must not be in the snapshot.
                    for (side, h) in data.iter_mut().enumerate() {
                        h.advance_to(c + 1);
                        if index == 0 {
                            for ev in &inputs[side].epochs[(c + 1) as usize] {
                                h.send(ev.clone());
                            }
                        }
                        h.flush();
                    }
                    for _ in 0..20 {
                        worker.step();
                    }
                }
            }
            for (side, h) in marks.iter_mut().enumerate() {
                h.send(inputs[side].watermarks[e as usize]);
                h.advance_to(e + 1);
            }
            for h in data.iter_mut() {
                h.advance_to(e + 1);
            }
            worker.step_while(|| probe.less_than(&(e + 1)));
        }
        if let Mode::EndWhileCheckpointPending(c) = mode {
            for e in c..n {
                for (side, h) in data.iter_mut().enumerate() {
                    h.advance_to(e);
                    if index == 0 {
                        for ev in &inputs[side].epochs[e as usize] {
                            h.send(ev.clone());
                        }
                    }
                }
                for (side, h) in marks.iter_mut().enumerate() {
                    h.advance_to(e);
                    h.send(inputs[side].watermarks[e as usize]);
                }
            }
        }
        if !matches!(
            mode,
            Mode::StopAfterCheckpoint(_) | Mode::RestoreThenStopAfter(..)
        ) {
            for h in marks.iter_mut() {
                h.send(WATERMARK_END);
            }
        }
        drop(data);
        drop(marks);
        worker.step_while(|| !probe.done());
        let mut out = sink.lock().unwrap();
        for (epoch, events) in results.extract() {
            out.0.extend(events.into_iter().map(|ev| (epoch, ev)));
        }
        for (side, l) in late.into_iter().enumerate() {
            for (_, events) in l.extract() {
                out.1[side].extend(events);
            }
        }
    })
    .unwrap();
    let mut out = std::mem::take(&mut *collected.lock().unwrap());
    out.0.sort();
    for l in &mut out.1 {
        l.sort();
    }
    out
}

/// Rows of results as values, sorted by their debug text (an order independent of epochs).
pub fn rows(results: &[(Epoch, Event)]) -> Vec<String> {
    let mut rows: Vec<String> = results
        .iter()
        .map(|(_, e)| format!("{} {:?}", e.ts, e.row))
        .collect();
    rows.sort();
    rows
}

/// Runs whole at 1, 2 and 3 workers; asserts identical output (epochs and order included)
/// and returns it.
pub fn run_everywhere(inputs: Arc<Vec<Scenario>>, op: &'static str, build: Arc<Build>) -> Output {
    let outputs: Vec<Output> = (1..=3)
        .map(|w| {
            run(
                w,
                inputs.clone(),
                Mode::Whole,
                MemoryBackend::new(),
                op,
                build.clone(),
            )
        })
        .collect();
    assert!(outputs[0] == outputs[1], "{op}: 1 vs 2 workers differ");
    assert!(outputs[0] == outputs[2], "{op}: 1 vs 3 workers differ");
    outputs.into_iter().next().unwrap()
}

/// Stops after a checkpoint half-way at one worker count, restores at another and stops
/// again after two more checkpoints (checkpoints at every epoch: the restored run's continue
/// the restored chains), then restores at the first count to the end; asserts that what each leg emitted up to its checkpoint, then the last leg's
/// output, equals the uninterrupted run's, and so do the late records.
pub fn assert_restores_exactly(inputs: Arc<Vec<Scenario>>, op: &'static str, build: Arc<Build>) {
    let whole = run(
        2,
        inputs.clone(),
        Mode::Whole,
        MemoryBackend::new(),
        op,
        build.clone(),
    );
    let n = inputs[0].epochs.len() as Epoch;
    // The second leg is shorter than a rotation of full parts (StateContext::FULL_EVERY), so
    // that the last restore reads chains the first leg began.
    let (first_stop, second_stop) = (n / 2, (n / 2 + 2).min(n - 2));
    for (before, after) in [(2, 3), (3, 1), (1, 2)] {
        let backend = MemoryBackend::new();
        let first = run(
            before,
            inputs.clone(),
            Mode::StopAfterCheckpoint(first_stop),
            backend.clone(),
            op,
            build.clone(),
        );
        assert_eq!(
            backend.epochs(),
            (0..=first_stop).collect::<Vec<_>>(),
            "{op}: a checkpoint at every epoch"
        );
        assert_eq!(
            backend.finished_workers(first_stop, op).len(),
            before,
            "{op}: every worker snapshots"
        );
        assert!(
            backend.size_of(first_stop) > 0,
            "{op}: state was snapshotted"
        );
        backend.restore_from(first_stop);
        let second = run(
            after,
            inputs.clone(),
            Mode::RestoreThenStopAfter(first_stop, second_stop),
            backend.clone(),
            op,
            build.clone(),
        );
        backend.restore_from(second_stop);
        let third = run(
            before,
            inputs.clone(),
            Mode::RestoreFrom(second_stop),
            backend,
            op,
            build.clone(),
        );
        // Each leg's results up to its checkpoint, then the last leg's: the uninterrupted
        // run's.
        let legs = [
            (first, 0, first_stop),
            (second, first_stop + 1, second_stop),
        ];
        let mut combined: Vec<(Epoch, Event)> = Vec::new();
        let mut late: Vec<Vec<Event>> = vec![Vec::new(); inputs.len()];
        for ((results, lates), from, to) in legs {
            combined.extend(results.into_iter().filter(|(e, _)| (from..=to).contains(e)));
            for (side, l) in lates.into_iter().enumerate() {
                // Late records of the leg's own input epochs.
                let fed = &inputs[side].epochs[from as usize..=to as usize];
                late[side].extend(
                    l.into_iter()
                        .filter(|e| fed.iter().flatten().any(|x| x == e)),
                );
            }
        }
        combined.extend(third.0);
        assert_eq!(
            rows(&combined),
            rows(&whole.0),
            "{op}: {before} → {after} → {before} workers"
        );
        for (side, (mut late, late_last)) in late.into_iter().zip(third.1).enumerate() {
            late.extend(late_last);
            late.sort();
            assert_eq!(
                late, whole.1[side],
                "{op}: late records of input {side}, {before} → {after} → {before} workers"
            );
        }
    }
}

/// Every input record that is on time (not behind its partition watermark by more than
/// `lateness`), per input.
pub fn on_time(inputs: &[Scenario], lateness: i64) -> Vec<Vec<Event>> {
    inputs
        .iter()
        .map(|s| {
            s.epochs
                .iter()
                .flatten()
                .filter(|e| e.ts >= e.wm.saturating_sub(lateness))
                .cloned()
                .collect()
        })
        .collect()
}
