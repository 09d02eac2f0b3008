//! Sinks at the end of a dataflow: JSON-lines files, stdout, and a counting null sink.
//!
//! File and stdout sinks encode rows to JSON on every worker, gather the lines on worker 0 of
//! the computation, and write each epoch's lines sorted by `(event time, line)` once the epoch
//! is complete. A file sink also merges the sorted epochs when a bounded run ends, so the file
//! is in one deterministic order whatever the worker count or timing.

mod file;
mod partition;
mod two_phase;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::{Operator, OutputBuilder};
use timely::dataflow::StreamVec;
use weir_engine::checkpoint::{names, CheckpointRun, Completion};
use weir_engine::data::{encode_row, TimestampFormat};
use weir_engine::event::{Epoch, Event};
use weir_engine::failure::Failures;
use weir_engine::stats::JobStats;

pub use file::SortedJsonFile;
pub use partition::{PartitionField, PartitionTransform};
pub use two_phase::{two_phase_sink, TwoPhase};

/// An encoded output line with its event time (the sort key with the text).
pub type Line = (i64, String);

/// Encodes each record as a JSON object with the given column names.
pub fn encode_lines<'scope>(
    stream: StreamVec<'scope, Epoch, Event>,
    name: &str,
    columns: Vec<String>,
    format: TimestampFormat,
) -> StreamVec<'scope, Epoch, Line> {
    stream.unary::<CapacityContainerBuilder<Vec<Line>>, _, _, _>(
        Pipeline,
        &format!("{name}.encode"),
        move |_, _| {
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let mut session = output.session(&cap);
                    for batch in data {
                        for event in batch.drain(..) {
                            let mut line = String::with_capacity(128);
                            encode_row(&event.row, &columns, format, &mut line);
                            session.give((event.ts, line));
                        }
                    }
                });
            }
        },
    )
}

/// Where gathered, sorted lines go.
pub trait LineWriter: 'static {
    /// Writes one complete epoch's lines, already sorted.
    fn write_epoch(&mut self, lines: &[Line]) -> Result<(), String>;
    /// Called once when the input has ended.
    fn finish(&mut self) -> Result<(), String>;
    /// Makes what was written durable and says where the writer stands, for a checkpoint
    /// (a writer that cannot resume returns an error).
    fn position(&mut self) -> Result<Vec<u8>, String> {
        Err("this sink cannot take part in checkpoints".into())
    }
}

/// The progress of a sink: no data, but its frontier passes an epoch only once the sink has
/// made that epoch's output durable. Sources watch it (through a probe) for backpressure and
/// to know which input positions are safe to acknowledge.
pub type Done<'scope> = StreamVec<'scope, Epoch, ()>;

/// Gathers lines on worker 0 and hands each complete epoch, sorted, to `writer`.
pub fn write_sorted_lines<'scope>(
    lines: StreamVec<'scope, Epoch, Line>,
    name: &str,
    mut writer: Option<Box<dyn LineWriter>>,
    checkpoints: Option<CheckpointRun>,
    stats: Arc<JobStats>,
    failures: Failures,
) -> Done<'scope> {
    let sink_name = name.to_string();
    let scope = lines.scope();
    let stats = stats.sink(name.trim_start_matches("sink."), scope.index());
    let mut builder = OperatorBuilder::new(name.to_string(), scope);
    let activator = scope.activator_for(builder.operator_info().address.clone());
    let mut input = builder.new_input(lines, Exchange::new(|_: &Line| 0));
    let (output, done) = builder.new_output();
    let mut output: OutputBuilder<_, CapacityContainerBuilder<Vec<()>>> =
        OutputBuilder::from(output);
    let mut pending: BTreeMap<Epoch, Vec<Line>> = BTreeMap::new();
    // The writer's checkpoints, and the next checkpoint epoch.
    let checkpoints = checkpoints.filter(|_| writer.is_some());
    let mut next_checkpoint = checkpoints
        .as_ref()
        .and_then(CheckpointRun::first_checkpoint);
    let mut final_written = false;
    builder.build_reschedule(move |mut initial| {
        // Held at the next checkpoint epoch until the writer's position is stored.
        let mut hold = next_checkpoint.and_then(|c| {
            let mut cap = initial.pop()?;
            cap.downgrade(&c);
            Some(cap)
        });
        move |frontiers| {
            let _ = &mut output;
            let frontier = &frontiers[0];
            input.for_each_stamp(|cap, data| {
                if let Some(&epoch) = cap.least() {
                    let entry = pending.entry(epoch).or_default();
                    for batch in data {
                        entry.append(batch);
                    }
                }
            });
            let Some(out) = writer.as_mut() else {
                return false;
            };
            let store = |c: Epoch, out: &mut Box<dyn LineWriter>| {
                let cps = &checkpoints
                    .as_ref()
                    .expect("a checkpoint epoch")
                    .checkpoints;
                let stored = out.position().and_then(|position| {
                    cps.write(c, &names::sink_file(&sink_name), &position)
                        .and_then(|()| cps.done(c, &sink_name, 0))
                        .map_err(|e| e.to_string())
                });
                if let Err(e) = stored {
                    tracing::error!("{sink_name}: checkpoint {c} failed: {e}");
                }
            };
            loop {
                let next = pending.first_key_value().map(|(e, _)| *e);
                // A checkpoint epoch the frontier passed, with every epoch up to it
                // written: store the position before writing anything later. (After the
                // input ends only the final checkpoint is taken.)
                if let Some(c) = next_checkpoint
                    .filter(|c| !frontier.less_equal(c) && next.is_none_or(|e| e > *c))
                {
                    if !frontier.is_empty() {
                        store(c, out);
                    }
                    next_checkpoint = checkpoints
                        .as_ref()
                        .and_then(|cps| cps.next_at_or_after(c + 1))
                        .filter(|_| !frontier.is_empty());
                    match (next_checkpoint, hold.as_mut()) {
                        (Some(n), Some(cap)) => cap.downgrade(&n),
                        _ => hold = None,
                    }
                    continue;
                }
                let Some(entry) = pending.first_entry() else {
                    break;
                };
                if frontier.less_equal(entry.key()) {
                    break;
                }
                let epoch = *entry.key();
                let mut lines = entry.remove();
                lines.sort_unstable();
                stats.written(epoch, lines.iter().map(|l| l.0));
                if let Err(e) = out.write_epoch(&lines) {
                    failures.report(format!("sink `{sink_name}`: {e}"));
                    writer = None;
                    return false;
                }
            }
            if !frontier.is_empty() {
                return hold.is_some();
            }
            hold = None;
            if let Some(run) = &checkpoints {
                // The file as the run leaves it goes into the final checkpoint; the final
                // merge waits until that is complete, so a restore never sees it half done.
                let f = run.final_checkpoint();
                if !final_written {
                    store(f, out);
                    final_written = true;
                }
                if failures.any() {
                    // The run fails: the file stays as the last checkpoint knows it.
                    writer = None;
                    return false;
                }
                if !run.is_complete(f) {
                    activator.activate_after(Completion::LOOK_EVERY);
                    return true;
                }
            }
            if let Err(e) = out.finish() {
                failures.report(format!("sink `{sink_name}`: {e}"));
            }
            writer = None;
            false
        }
    });
    done
}

/// Writes lines to standard output.
pub struct StdoutWriter;

impl LineWriter for StdoutWriter {
    fn write_epoch(&mut self, lines: &[Line]) -> Result<(), String> {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        for (_, line) in lines {
            writeln!(out, "{line}").map_err(|e| format!("cannot write to stdout: {e}"))?;
        }
        out.flush()
            .map_err(|e| format!("cannot write to stdout: {e}"))
    }

    fn finish(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// Counts records and drops them (benchmarks, dry runs).
pub fn null_sink<'scope>(
    stream: StreamVec<'scope, Epoch, Event>,
    name: &str,
    stats: Arc<JobStats>,
) -> Done<'scope> {
    let stats = stats.sink(name.trim_start_matches("sink."), stream.scope().index());
    stream.unary::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
        Pipeline,
        name,
        move |_cap, _info| {
            move |input, _output| {
                input.for_each_stamp(|cap, data| {
                    let epoch = cap.least().copied().unwrap_or_default();
                    for batch in data {
                        stats.written(epoch, batch.iter().map(|e| e.ts));
                        batch.clear();
                    }
                });
            }
        },
    )
}
