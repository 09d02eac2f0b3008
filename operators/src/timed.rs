//! The timely plumbing shared by every watermark-driven keyed operator (windows, rules,
//! rolling aggregates, joins): keyed exchange of one or two inputs, the watermark input,
//! checkpoint alignment and late outputs. The operator's meaning lives in a [`TimedLogic`].
//!
//! The contract, per epoch: records are handed to [`TimedLogic::insert`] as they arrive (the
//! logic decides lateness from the record's own watermark and the last *fired* watermark);
//! once an epoch is complete on every input, [`TimedLogic::advance`] runs with the watermark of
//! that epoch and its results are emitted at that epoch, in the order the logic produced them.
//! Records of epochs after a pending checkpoint wait in a stash until the snapshot is taken,
//! so a snapshot at epoch `c` holds exactly the effect of epochs `≤ c`.

use std::collections::BTreeMap;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::Capability;
use timely::dataflow::StreamVec;
use weir_engine::event::{Epoch, Event};
use weir_engine::keys::KeyGroups;
use weir_engine::state::{KeyedState, StateContext};
use weir_engine::watermark::PendingWatermarks;

use crate::keyed::{key_exchange, Routing};

/// What a watermark-driven keyed operator computes.
pub trait TimedLogic: 'static {
    /// The state snapshotted at checkpoints.
    type State: KeyedState;
    /// Adds a record of input `input`; returns it when it is late (it then goes to that
    /// input's late output). `fired_wm` is the watermark of the last completed epoch.
    fn insert(&mut self, input: usize, event: Event, fired_wm: i64) -> Option<Event>;
    /// The watermark reached `wm`: appends every result it makes final to `out`.
    fn advance(&mut self, wm: i64, out: &mut Vec<Event>);
    /// Like [`advance`](Self::advance), handing `out` to `flush` along the way whenever it
    /// holds [`RESULTS_BATCH`] results or more (and once at the end): a watermark that makes
    /// many results final does not keep them all alive at once, and the memory of rows
    /// already passed on is reused while it is still in the cache.
    fn advance_in_batches(
        &mut self,
        wm: i64,
        out: &mut Vec<Event>,
        flush: &mut dyn FnMut(&mut Vec<Event>),
    ) {
        self.advance(wm, out);
        flush(out);
    }
    /// The state.
    fn state(&self) -> &Self::State;
    /// The state, to restore into.
    fn state_mut(&mut self) -> &mut Self::State;
    /// Called once after the state was restored.
    fn restored(&mut self) {}
}

/// How many results [`TimedLogic::advance_in_batches`] lets gather before passing them on.
pub const RESULTS_BATCH: usize = 1024;

/// One input of a timed operator.
pub struct TimedInput<'scope> {
    /// The records.
    pub stream: StreamVec<'scope, Epoch, Event>,
    /// Keyed (records with equal key values meet on one worker) or broadcast (every worker
    /// sees every record).
    pub routing: Routing,
}

/// The outputs of a timed operator.
pub struct TimedOutputs<'scope> {
    /// Results.
    pub results: StreamVec<'scope, Epoch, Event>,
    /// Late records, one stream per input.
    pub late: Vec<StreamVec<'scope, Epoch, Event>>,
}

type Output = OutputBuilder<Epoch, CapacityContainerBuilder<Vec<Event>>>;

/// Builds the operator `name` over `inputs`, driven by `watermarks` (identical on every
/// worker).
pub fn timed_operator<'scope, L: TimedLogic>(
    name: &str,
    inputs: Vec<TimedInput<'scope>>,
    watermarks: StreamVec<'scope, Epoch, i64>,
    key_groups: KeyGroups,
    mut logic: L,
    state: Option<StateContext>,
) -> TimedOutputs<'scope> {
    let scope = watermarks.scope();
    let peers = scope.peers();
    let sides = inputs.len();
    let mut builder = OperatorBuilder::new(name.to_string(), scope);
    let mut data_in = Vec::with_capacity(sides);
    let worker = scope.index();
    for input in inputs {
        let stream = match input.routing {
            Routing::Key(_) => input.stream,
            Routing::Local => input.stream.broadcast(),
        };
        let pact = key_exchange(input.routing, key_groups, worker, peers);
        data_in.push(builder.new_input(stream, pact));
    }
    let mut wm_in = builder.new_input(watermarks, Pipeline);
    let (results_out, results) = builder.new_output();
    let mut results_out: Output = OutputBuilder::from(results_out);
    let mut late_outs: Vec<Output> = Vec::with_capacity(sides);
    let mut late = Vec::with_capacity(sides);
    for _ in 0..sides {
        let (out, stream) = builder.new_output();
        late_outs.push(OutputBuilder::from(out));
        late.push(stream);
    }
    let name = name.to_string();
    let mut state_ctx = state;
    if let Some(ctx) = &mut state_ctx {
        if let Err(e) = ctx.restore(logic.state_mut()) {
            panic!("step `{name}` cannot restore its state: {e}");
        }
        logic.restored();
    }

    builder.build(move |initial_caps| {
        // Held at the pending checkpoint epoch until the snapshot is written: downstream (and
        // the probe that completes checkpoints) cannot pass the epoch before this operator's
        // state for it is durable.
        let mut hold: Vec<Capability<Epoch>> = initial_caps;
        let mut watermarks = PendingWatermarks::default();
        // The latest epoch a watermark arrived for: the watermark stream is in epoch order
        // (one per epoch whose reports are all in, see `global_watermark`), so the watermark
        // of every epoch up to it is known without waiting for that input's frontier — one
        // progress round between workers less before a complete epoch fires.
        let mut wm_seen: Option<Epoch> = None;
        // Records of epochs after a pending checkpoint wait here until it is taken; the
        // capability is for the late output of the record's input.
        type Stash = BTreeMap<(Epoch, usize), (Capability<Epoch>, Vec<Event>)>;
        let mut stash: Stash = BTreeMap::new();
        let mut late_buf = Vec::new();
        let mut results_buf = Vec::new();

        move |frontiers| {
            let mut results_out = results_out.activate();
            let mut late_outs: Vec<_> = late_outs.iter_mut().map(|o| o.activate()).collect();

            wm_in.for_each_stamp(|cap, data| {
                if let Some(&e) = cap.least() {
                    wm_seen = wm_seen.max(Some(e));
                }
                if let Some(cap) = cap.retain_least(0) {
                    for batch in data {
                        for wm in batch.drain(..) {
                            watermarks.push(cap.clone(), wm);
                        }
                    }
                }
            });

            let checkpoint = state_ctx
                .as_ref()
                .and_then(StateContext::pending_checkpoint);
            for (side, input) in data_in.iter_mut().enumerate() {
                input.for_each_stamp(|cap, data| {
                    let Some(&epoch) = cap.least() else { return };
                    if checkpoint.is_some_and(|c| epoch > c) {
                        let entry = stash.entry((epoch, side)).or_insert_with(|| {
                            (
                                cap.retain_least(1 + side).expect("a message has a time"),
                                Vec::new(),
                            )
                        });
                        for batch in data {
                            entry.1.append(batch);
                        }
                        return;
                    }
                    let fired = watermarks.current();
                    for batch in data {
                        for event in batch.drain(..) {
                            late_buf.extend(logic.insert(side, event, fired));
                        }
                    }
                    if !late_buf.is_empty() {
                        late_outs[side]
                            .session(&cap)
                            .give_iterator(late_buf.drain(..));
                    }
                });
            }

            // Complete epochs, in order: advance the logic at each epoch's watermark; take the
            // pending checkpoint once its epoch is complete, then release the records held
            // back for it. After the inputs end nothing is checkpointed.
            let running = frontiers.iter().any(|f| !f.frontier().is_empty());
            let (data_frontiers, wm_frontier) = frontiers.split_at(sides);
            let complete = |e: &Epoch| {
                data_frontiers.iter().all(|f| !f.less_equal(e))
                    && (!wm_frontier[0].less_equal(e) || wm_seen.is_some_and(|s| s >= *e))
            };
            loop {
                let next_wm = watermarks.next_epoch().filter(|e| complete(e));
                // Once the inputs have ended no checkpoint is taken: what waits (watermarks,
                // stashed records) is processed in epoch order.
                let checkpoint = state_ctx
                    .as_ref()
                    .and_then(StateContext::pending_checkpoint)
                    .filter(|c| running && complete(c));
                let first_stashed = stash.first_key_value().map(|((e, _), _)| *e);
                let release_until = match (next_wm, checkpoint) {
                    // Records of an epoch go in before that epoch's watermark fires.
                    (Some(e), c)
                        if c.is_none_or(|c| e <= c)
                            && (running || first_stashed.is_none_or(|s| e < s)) =>
                    {
                        let (cap, wm) = watermarks.pop_first().expect("a pending epoch");
                        logic.advance_in_batches(wm, &mut results_buf, &mut |results| {
                            if !results.is_empty() {
                                results_out.session(&cap).give_iterator(results.drain(..));
                            }
                        });
                        continue;
                    }
                    (_, Some(c)) => {
                        let ctx = state_ctx.as_mut().expect("a checkpoint implies state");
                        if let Err(e) = ctx.snapshot(c, logic.state_mut()) {
                            // The checkpoint fails (it will lack this step's mark); the job
                            // goes on and the next one tries again.
                            tracing::error!("step `{name}`: checkpoint {c} failed: {e}");
                        }
                        ctx.pending_checkpoint()
                    }
                    // The inputs ended with records still held for a checkpoint that will not
                    // be taken: release those up to the next watermark's epoch (all, without
                    // one), before it fires.
                    (next, None) if !running && !stash.is_empty() => next,
                    _ => break,
                };
                let fired = watermarks.current();
                while let Some(entry) = stash.first_entry() {
                    if release_until.is_some_and(|n| entry.key().0 > n) {
                        break;
                    }
                    let ((_, side), (cap, events)) = entry.remove_entry();
                    for event in events {
                        late_buf.extend(logic.insert(side, event, fired));
                    }
                    if !late_buf.is_empty() {
                        late_outs[side]
                            .session(&cap)
                            .give_iterator(late_buf.drain(..));
                    }
                }
                if !running && stash.is_empty() && watermarks.next_epoch().is_none() {
                    break;
                }
            }
            if !running && stash.is_empty() && watermarks.next_epoch().is_none() {
                // Everything is processed: the state as the run leaves it goes into the
                // final checkpoint (before the capabilities are dropped below).
                if let Some(ctx) = state_ctx.as_mut() {
                    if let Some(f) = ctx.take_final_checkpoint() {
                        if let Err(e) = ctx.snapshot(f, logic.state_mut()) {
                            tracing::error!("step `{name}`: the final checkpoint failed: {e}");
                        }
                    }
                }
            }
            let pending = state_ctx
                .as_ref()
                .and_then(StateContext::pending_checkpoint)
                .filter(|_| running);
            match pending {
                Some(c) => hold
                    .iter_mut()
                    .filter(|cap| *cap.time() < c)
                    .for_each(|cap| cap.downgrade(&c)),
                None => hold.clear(),
            }
        }
    });

    TimedOutputs { results, late }
}
