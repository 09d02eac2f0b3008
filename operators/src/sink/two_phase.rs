//! Two-phase sinks: one contract for every external system that must see each record exactly
//! once across crashes (Kafka transactions, Redis, Iceberg).
//!
//! Records are **staged** per batch, a batch being every epoch up to the next checkpoint
//! epoch. When the input frontier passes checkpoint epoch `c`, the sink **prepares** the batch
//! (writes what it needs durably: the items themselves, or data files) and records every
//! prepared, uncommitted batch in the checkpoint; only then does its frontier pass `c`, so the
//! checkpoint cannot complete without them. Once checkpoint `c` is complete (its manifest is
//! written) the sink **commits** the batches up to `c`, in order. After a crash the run
//! restores checkpoint `c` and the sink **recovers**: the batches `c` recorded are committed
//! again, and the sink's own commit record (a marker in a transaction, an epoch compared and
//! set, a snapshot property) makes a batch committed before the crash a no-op.
//!
//! When the input ends, what is left is prepared as the batch of the run's final checkpoint,
//! committed once that is complete (the run ends after). Without checkpoints every epoch is a
//! batch, committed as soon as it is complete (at least once).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::StreamVec;
use weir_engine::checkpoint::{names, CheckpointRun, Completion};
use weir_engine::event::Epoch;
use weir_engine::failure::Failures;
use weir_engine::stats::JobStats;

use super::Done;

/// An external system written in two phases. Batches are identified by their epoch (the
/// checkpoint epoch that closes them); ids only grow, across restarts too.
pub trait TwoPhase: 'static {
    /// What the sink receives (an [`Event`](weir_engine::event::Event) for most; Iceberg's committer gets data files).
    type Record: Clone + 'static;
    /// What one record becomes (a message, a Redis write, a row).
    type Item: 'static;
    /// A prepared batch as the checkpoint keeps it.
    type Prepared: Serialize + DeserializeOwned + 'static;

    /// The event time of a record that is one output record (ms); `None` for records that are
    /// not counted as output (Iceberg's data-file descriptions: their rows were counted).
    fn event_time(record: &Self::Record) -> Option<i64>;
    /// Turns a record into an item.
    fn item(&mut self, record: Self::Record) -> Result<Self::Item, String>;
    /// Makes batch `id` ready to commit: what is returned goes into the checkpoint.
    fn prepare(&mut self, id: Epoch, items: Vec<Self::Item>) -> Result<Self::Prepared, String>;
    /// Makes batch `id` visible. Called once per batch in a run, in id order.
    fn commit(&mut self, id: Epoch, prepared: &Self::Prepared) -> Result<(), String>;
    /// After a restore: the batches that worker `owner` of the earlier run had prepared and
    /// maybe not committed, in id order. Commits those not committed yet, and nothing twice.
    fn recover(
        &mut self,
        owner: usize,
        batches: Vec<(Epoch, Self::Prepared)>,
    ) -> Result<(), String>;
}

/// The file of one worker's prepared batches in a checkpoint.
fn batches_file(participant: &str, worker: usize) -> String {
    format!("{}/w{worker:05}", names::sink_file(participant))
}

/// Writes `stream` through `sink` on every worker. The returned stream's frontier passes a
/// checkpoint epoch once the sink has prepared it (without checkpoints: once every epoch is
/// committed). `participant` is the sink's name in checkpoints.
pub fn two_phase_sink<'scope, S: TwoPhase>(
    stream: StreamVec<'scope, Epoch, S::Record>,
    participant: &str,
    mut sink: S,
    checkpoints: Option<CheckpointRun>,
    stats: Arc<JobStats>,
    failures: Failures,
) -> Done<'scope> {
    let scope = stream.scope();
    let worker = scope.index();
    let peers = scope.peers();
    let participant = participant.to_string();
    let stats = stats.sink(participant.trim_start_matches("sink."), worker);
    let mut builder = OperatorBuilder::new(participant.clone(), scope);
    let activator = scope.activator_for(builder.operator_info().address.clone());
    let mut input = builder.new_input(stream, Pipeline);
    let (output, done) = builder.new_output();
    let mut output: OutputBuilder<_, CapacityContainerBuilder<Vec<()>>> =
        OutputBuilder::from(output);

    // Recovery first: batches of the restored checkpoint, of the workers this one stands in for.
    let mut failed = false;
    if let Some(restore) = checkpoints.as_ref().and_then(|c| c.restore.as_ref()) {
        let prefix = format!("{}/", names::sink_file(&participant));
        for file in restore.files_under(&prefix) {
            let owner = file[prefix.len()..]
                .trim_start_matches('w')
                .parse::<usize>()
                .ok();
            let Some(owner) = owner.filter(|o| o % peers == worker) else {
                continue;
            };
            let recovered = restore.read(&file).and_then(|bytes| {
                let batches: Vec<(Epoch, S::Prepared)> =
                    bincode::deserialize(&bytes.unwrap_or_default())
                        .map_err(|e| format!("{file} is damaged: {e}"))?;
                sink.recover(owner, batches)
            });
            if let Err(e) = recovered {
                failures.report(format!(
                    "sink `{}`: cannot recover checkpoint {}: {e}",
                    participant.trim_start_matches("sink."),
                    restore.epoch()
                ));
                failed = true;
            }
        }
    }

    if let Some(run) = &checkpoints {
        run.completion.committed_through(&participant, worker, 0);
    }
    builder.build_reschedule(move |mut initial| {
        let mut cap = initial.pop();
        // Staged items by batch id.
        let mut open: BTreeMap<Epoch, Vec<S::Item>> = BTreeMap::new();
        // Prepared, not yet committed, in id order.
        let mut prepared: Vec<(Epoch, S::Prepared)> = Vec::new();
        let mut next_checkpoint = checkpoints.as_ref().and_then(|c| c.first_checkpoint());
        let mut final_written = false;
        let mut reported_through: Epoch = 0;
        let name = participant.trim_start_matches("sink.").to_string();
        move |frontiers| {
            let _ = &mut output;
            if failed {
                return false;
            }
            let mut error: Option<String> = None;
            input.for_each_stamp(|stamp, data| {
                let Some(&epoch) = stamp.least() else { return };
                let id = match &checkpoints {
                    Some(c) => c.next_at_or_after(epoch).unwrap_or(epoch),
                    None => epoch,
                };
                let staged = open.entry(id).or_default();
                for batch in data {
                    stats.written(epoch, batch.iter().filter_map(S::event_time));
                    for event in batch.drain(..) {
                        match sink.item(event) {
                            Ok(item) => staged.push(item),
                            Err(e) => {
                                error.get_or_insert(e);
                            }
                        }
                    }
                }
            });
            let frontier = frontiers[0].frontier().first().copied();
            let passed = |e: Epoch| frontier.is_none_or(|f| f > e);
            let result = (|| -> Result<(), String> {
                if let Some(e) = error {
                    return Err(e);
                }
                if let Some(run) = &checkpoints {
                    // Prepare every checkpoint the input has passed, items or not: the
                    // checkpoint waits for this sink's file. (Once the input has ended no
                    // checkpoint is taken: the tail is committed below.)
                    while let Some(c) = next_checkpoint.filter(|c| frontier.is_some_and(|f| f > *c))
                    {
                        let items = take_up_to(&mut open, c);
                        if !items.is_empty() {
                            prepared.push((c, sink.prepare(c, items)?));
                        }
                        // A checkpoint that cannot be written fails (the coordinator says so);
                        // its batches stay prepared and go into the next one.
                        if let Err(e) = record(run, &participant, worker, c, &prepared) {
                            tracing::error!("sink `{name}`: checkpoint {c} failed: {e}");
                        }
                        next_checkpoint = run.next_at_or_after(c + 1);
                    }
                    if frontier.is_none() && !final_written {
                        // The input has ended: what is left is the final checkpoint's batch.
                        let f = run.final_checkpoint();
                        let items = take_up_to(&mut open, Epoch::MAX - 1);
                        if !items.is_empty() {
                            prepared.push((f, sink.prepare(f, items)?));
                        }
                        record(run, &participant, worker, f, &prepared)
                            .map_err(|e| format!("the final checkpoint failed: {e}"))?;
                        final_written = true;
                    }
                    let commit_up_to = prepared.iter().rposition(|(id, _)| run.is_complete(*id));
                    if let Some(last) = commit_up_to {
                        for (id, batch) in prepared.drain(..=last) {
                            sink.commit(id, &batch)?;
                            stats.committed();
                        }
                    }
                }
                // Without checkpoints every epoch is a batch of its own.
                if checkpoints.is_none() {
                    let ready: Vec<Epoch> = open.keys().copied().filter(|e| passed(*e)).collect();
                    for id in ready {
                        let items = open.remove(&id).unwrap_or_default();
                        let batch = sink.prepare(id, items)?;
                        sink.commit(id, &batch)?;
                        stats.committed();
                    }
                }
                Ok(())
            })();
            if let Err(e) = result {
                failures.report(format!("sink `{name}`: {e}"));
                failed = true;
                cap = None;
                return false;
            }
            if let Some(run) = &checkpoints {
                // For a stop with savepoint: how far this sink has committed (told to the
                // process only when it moves).
                let through = match prepared.first() {
                    Some((id, _)) => id.saturating_sub(1),
                    None => next_checkpoint.map_or(Epoch::MAX, |n| n.saturating_sub(1)),
                };
                if through > reported_through {
                    reported_through = through;
                    run.completion
                        .committed_through(&participant, worker, through);
                }
            }
            // The frontier of `done`: the next checkpoint to prepare, or (without checkpoints)
            // the input's own.
            let hold = match (&checkpoints, frontier) {
                (_, None) => None,
                (Some(_), Some(f)) => Some(next_checkpoint.unwrap_or(f).max(f)),
                (None, Some(f)) => Some(f),
            };
            match (hold, cap.as_mut()) {
                (Some(h), Some(c)) if *c.time() < h => c.downgrade(&h),
                (None, _) => cap = None,
                _ => {}
            }
            if !prepared.is_empty() {
                if failures.any() {
                    return false; // the run fails; a restore commits what is prepared
                }
                activator.activate_after(Completion::LOOK_EVERY);
            }
            cap.is_some() || !prepared.is_empty()
        }
    });
    done
}

/// Records every prepared, uncommitted batch in checkpoint `epoch` and marks the sink done.
fn record<P: Serialize>(
    run: &CheckpointRun,
    participant: &str,
    worker: usize,
    epoch: Epoch,
    prepared: &[(Epoch, P)],
) -> Result<(), String> {
    let bytes =
        bincode::serialize(prepared).map_err(|e| format!("cannot encode prepared batches: {e}"))?;
    run.checkpoints
        .write(epoch, &batches_file(participant, worker), &bytes)
        .and_then(|_| run.checkpoints.done(epoch, participant, worker))
        .map_err(|e| e.to_string())
}

/// Removes and concatenates the staged items of every batch up to `id`.
fn take_up_to<T>(open: &mut BTreeMap<Epoch, Vec<T>>, id: Epoch) -> Vec<T> {
    let rest = open.split_off(&(id + 1));
    let mut items = Vec::new();
    for (_, mut v) in std::mem::replace(open, rest) {
        items.append(&mut v);
    }
    items
}
