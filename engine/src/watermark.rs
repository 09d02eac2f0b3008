//! Event-time watermarks: per source partition, combined into one per epoch that every worker
//! agrees on.
//!
//! Each source partition tracks `max event time seen − max_out_of_orderness`. A worker's
//! source reports the minimum over its live partitions (idle and finished ones excluded) as
//! data on a small side stream, at the epoch it holds. [`GlobalWatermark::global_watermark`]
//! broadcasts those reports and, once an epoch is complete, folds them in epoch order:
//! every worker computes the same watermark for the same epoch.

use std::collections::BTreeMap;

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::{Broadcast, Map};
use timely::dataflow::operators::Capability;
use timely::dataflow::StreamVec;

use crate::event::{Epoch, WATERMARK_END, WATERMARK_MIN};

/// The watermark of one source partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartitionWatermark {
    max_ts: i64,
    out_of_orderness: i64,
}

impl PartitionWatermark {
    /// A partition that has seen nothing, allowing `out_of_orderness_ms` of disorder.
    pub fn new(out_of_orderness_ms: i64) -> Self {
        PartitionWatermark {
            max_ts: WATERMARK_MIN,
            out_of_orderness: out_of_orderness_ms.max(0),
        }
    }

    /// Records an event time.
    #[inline]
    pub fn observe(&mut self, ts: i64) {
        if ts > self.max_ts {
            self.max_ts = ts;
        }
    }

    /// The highest event time seen (for checkpoints).
    pub fn max_seen(&self) -> i64 {
        self.max_ts
    }

    /// Resumes from a checkpointed [`max_seen`](Self::max_seen).
    pub fn resume(&mut self, max_seen: i64) {
        self.max_ts = self.max_ts.max(max_seen);
    }

    /// The watermark: no later record of this partition is expected below it.
    #[inline]
    pub fn current(&self) -> i64 {
        if self.max_ts == WATERMARK_MIN {
            WATERMARK_MIN
        } else {
            self.max_ts.saturating_sub(self.out_of_orderness)
        }
    }

    /// The largest event time seen.
    pub fn max_event_time(&self) -> i64 {
        self.max_ts
    }
}

/// Subtracts `delay_ms` from a watermark, keeping the two ends fixed.
#[inline]
pub fn delay_watermark(wm: i64, delay_ms: i64) -> i64 {
    if wm == WATERMARK_END || wm == WATERMARK_MIN {
        wm
    } else {
        wm.saturating_sub(delay_ms)
    }
}

/// A watermark report of one worker's source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LocalWatermark {
    /// Global worker index.
    pub worker: u32,
    /// The minimum watermark over the worker's live, non-idle partitions.
    pub watermark: i64,
    /// All of the worker's live partitions are idle: leave it out of the minimum.
    pub idle: bool,
}

impl LocalWatermark {
    /// An active worker's report.
    pub fn new(worker: u32, watermark: i64) -> Self {
        LocalWatermark {
            worker,
            watermark,
            idle: false,
        }
    }
}

/// Turns local watermark reports into the global watermark stream.
pub trait GlobalWatermark<'scope> {
    /// Broadcasts every worker's reports and emits, at each epoch with reports, the minimum
    /// over all workers' latest reports, idle workers left out (when every worker is idle the
    /// watermark holds). Sources report each epoch once, when they close it. The output is
    /// identical on every worker, and in epoch order.
    ///
    /// # Examples
    /// ```
    /// use timely::dataflow::operators::{Capture, ToStream};
    /// use timely::dataflow::operators::capture::Extract;
    /// use weir_engine::watermark::{GlobalWatermark, LocalWatermark};
    ///
    /// let out = timely::example(|scope| {
    ///     let reports = vec![LocalWatermark::new(0, 10), LocalWatermark::new(0, 20)];
    ///     reports.to_stream(scope).global_watermark("wm").capture()
    /// });
    /// assert_eq!(out.extract(), vec![(0, vec![20])]);
    /// ```
    fn global_watermark(self, name: &str) -> StreamVec<'scope, Epoch, i64>;
}

impl<'scope> GlobalWatermark<'scope> for StreamVec<'scope, Epoch, LocalWatermark> {
    fn global_watermark(self, name: &str) -> StreamVec<'scope, Epoch, i64> {
        let peers = self.scope().peers();
        self.broadcast()
            .unary_frontier(Pipeline, name, move |_cap, _info| {
                let mut latest = vec![WATERMARK_MIN; peers];
                let mut idle = vec![false; peers];
                let mut current = WATERMARK_MIN;
                let mut pending: BTreeMap<Epoch, (Capability<Epoch>, Vec<LocalWatermark>)> =
                    BTreeMap::new();
                move |(input, frontier), output| {
                    input.for_each_stamp(|cap, data| {
                        if let Some(cap) = cap.retain_least(output.output_index()) {
                            let entry = pending
                                .entry(*cap.time())
                                .or_insert_with(|| (cap, Vec::new()));
                            for batch in data {
                                entry.1.append(batch);
                            }
                        }
                    });
                    // Fold complete epochs in order, so that every worker folds the same reports.
                    // An epoch is complete once the frontier has passed it, or as soon as every
                    // worker's report for it is in: sources report once per epoch, when they
                    // close it, in epoch order on one channel per worker, so every report of
                    // that epoch and of the ones before is in too (one progress round sooner).
                    while let Some(mut entry) = pending.first_entry() {
                        let (_, reports) = entry.get_mut();
                        // Sorted only when there are as many reports as workers.
                        let all_in = reports.len() == peers && {
                            reports.sort_unstable_by_key(|r| r.worker);
                            reports
                                .iter()
                                .enumerate()
                                .all(|(i, r)| r.worker as usize == i)
                        };
                        if frontier.less_equal(entry.key()) && !all_in {
                            break;
                        }
                        let (cap, reports) = entry.remove();
                        for report in reports {
                            let w = report.worker as usize;
                            latest[w] = latest[w].max(report.watermark);
                            idle[w] = report.idle;
                        }
                        let min = (0..peers).filter(|&w| !idle[w]).map(|w| latest[w]).min();
                        if let Some(min) = min.filter(|&m| m > current) {
                            current = min;
                        }
                        // Every folded epoch, advanced or not: downstream knows the epoch's
                        // watermark is final without waiting for this operator's frontier.
                        output.session(&cap).give(current);
                    }
                }
            })
    }
}

/// Shifts a global watermark stream back by `delay_ms`: the watermark downstream of an
/// operator that emits its records `delay_ms` behind its input watermark.
pub fn delay_stream<'scope>(
    stream: StreamVec<'scope, Epoch, i64>,
    delay_ms: i64,
) -> StreamVec<'scope, Epoch, i64> {
    if delay_ms == 0 {
        return stream;
    }
    stream.map(move |wm| delay_watermark(wm, delay_ms))
}

/// The watermark of a step reading two streams: at each epoch where it advances, the minimum
/// of both streams' watermarks as of that epoch (identical on every worker, like its inputs).
pub fn min_watermarks<'scope>(
    a: StreamVec<'scope, Epoch, i64>,
    b: StreamVec<'scope, Epoch, i64>,
) -> StreamVec<'scope, Epoch, i64> {
    a.binary_frontier(b, Pipeline, Pipeline, "min_watermark", |_cap, _info| {
        let mut latest = [WATERMARK_MIN; 2];
        let mut current = WATERMARK_MIN;
        let mut pending: BTreeMap<Epoch, (Capability<Epoch>, [i64; 2])> = BTreeMap::new();
        move |(in_a, fa), (in_b, fb), output| {
            for (side, input) in [(0, in_a), (1, in_b)] {
                input.for_each_stamp(|cap, data| {
                    if let Some(cap) = cap.retain_least(output.output_index()) {
                        let entry = pending
                            .entry(*cap.time())
                            .or_insert_with(|| (cap, [WATERMARK_MIN; 2]));
                        for wm in data.flat_map(|batch| batch.iter()) {
                            entry.1[side] = entry.1[side].max(*wm);
                        }
                    }
                });
            }
            while let Some(entry) = pending.first_entry() {
                if fa.less_equal(entry.key()) || fb.less_equal(entry.key()) {
                    break;
                }
                let (cap, marks) = entry.remove();
                latest[0] = latest[0].max(marks[0]);
                latest[1] = latest[1].max(marks[1]);
                let min = latest[0].min(latest[1]);
                if min > current {
                    current = min;
                    output.session(&cap).give(current);
                }
            }
        }
    })
}

/// Watermark values that arrived on an operator's watermark input, held with their epoch's
/// capability until the epoch is complete.
pub struct PendingWatermarks {
    pending: BTreeMap<Epoch, (Capability<Epoch>, i64)>,
    current: i64,
}

impl Default for PendingWatermarks {
    fn default() -> Self {
        PendingWatermarks {
            pending: BTreeMap::new(),
            current: WATERMARK_MIN,
        }
    }
}

impl PendingWatermarks {
    /// Stashes a watermark received at the capability's epoch.
    pub fn push(&mut self, cap: Capability<Epoch>, wm: i64) {
        let entry = self.pending.entry(*cap.time()).or_insert((cap, wm));
        entry.1 = entry.1.max(wm);
    }

    /// The watermark of the last completed epoch.
    pub fn current(&self) -> i64 {
        self.current
    }

    /// The earliest epoch with a pending watermark.
    pub fn next_epoch(&self) -> Option<Epoch> {
        self.pending.keys().next().copied()
    }

    /// Removes the earliest pending epoch (call once it is complete) and returns its
    /// capability and the watermark as of that epoch; updates [`current`](Self::current).
    pub fn pop_first(&mut self) -> Option<(Capability<Epoch>, i64)> {
        let (_, (cap, wm)) = self.pending.pop_first()?;
        self.current = self.current.max(wm);
        Some((cap, self.current))
    }

    /// Number of epochs waiting.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True when nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use timely::dataflow::operators::capture::Extract;
    use timely::dataflow::operators::{Capture, Input, Inspect, Probe};
    use timely::dataflow::InputHandleVec;

    use super::*;

    #[test]
    fn partition_watermark_lags_by_out_of_orderness() {
        let mut p = PartitionWatermark::new(5);
        assert_eq!(p.current(), WATERMARK_MIN);
        p.observe(100);
        p.observe(90);
        assert_eq!(p.current(), 95);
        assert_eq!(delay_watermark(WATERMARK_END, 10), WATERMARK_END);
        assert_eq!(delay_watermark(100, 10), 90);
    }

    #[test]
    fn every_worker_sees_the_same_minimum_per_epoch() {
        let (send, recv) = std::sync::mpsc::channel();
        let send = std::sync::Mutex::new(send);
        timely::execute(timely::Config::process(3), move |worker| {
            let index = worker.index() as u32;
            let mut input = InputHandleVec::<Epoch, LocalWatermark>::new();
            let probe = timely::dataflow::ProbeHandle::new();
            let captured = worker.dataflow(|scope| {
                let stream = scope.input_from(&mut input).global_watermark("wm");
                let stream = stream.probe_with(&probe);
                stream.capture()
            });
            // Worker w reports 10·(w+1) at epoch 0 and 100 + w at epoch 2.
            input.send(LocalWatermark::new(index, 10 * (index as i64 + 1)));
            input.advance_to(2);
            input.send(LocalWatermark::new(index, 100 + index as i64));
            input.advance_to(3);
            // Worker 2 goes idle: the others alone decide.
            let idle = index == 2;
            input.send(LocalWatermark {
                worker: index,
                watermark: 200 + index as i64,
                idle,
            });
            input.advance_to(4);
            input.send(LocalWatermark::new(index, WATERMARK_END));
            input.close();
            worker.step_while(|| !probe.done());
            send.lock()
                .unwrap()
                .send((index, captured.extract()))
                .unwrap();
        })
        .unwrap();
        let mut results: Vec<_> = recv.iter().collect();
        results.sort();
        for (_, seen) in &results {
            assert_eq!(
                seen,
                &vec![
                    (0, vec![10]),
                    (2, vec![100]),
                    (3, vec![200]),
                    (4, vec![WATERMARK_END])
                ]
            );
        }
        assert_eq!(results.len(), 3);
    }

    /// Steps `worker` until `done` or 2 000 steps, each parked at most 1 ms.
    fn step_until(worker: &mut timely::worker::Worker, mut done: impl FnMut() -> bool) -> bool {
        for _ in 0..2000 {
            if done() {
                return true;
            }
            worker.step_or_park(Some(std::time::Duration::from_millis(1)));
        }
        done()
    }

    #[test]
    fn an_epoch_whose_reports_are_all_in_folds_before_its_frontier_passes() {
        let (send, recv) = std::sync::mpsc::channel();
        let send = std::sync::Mutex::new(send);
        let barrier = std::sync::Barrier::new(2);
        timely::execute(timely::Config::process(2), move |worker| {
            let index = worker.index() as u32;
            let mut input = InputHandleVec::<Epoch, LocalWatermark>::new();
            let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
            let sink = seen.clone();
            let probe = timely::dataflow::ProbeHandle::new();
            worker.dataflow(|scope| {
                scope
                    .input_from(&mut input)
                    .global_watermark("wm")
                    .inspect(move |wm| sink.borrow_mut().push(*wm))
                    .probe_with(&probe);
            });
            // Epoch 0: only worker 0 reports, and the input stays open at 0: not complete.
            if index == 0 {
                input.send(LocalWatermark::new(0, 10));
                input.flush();
            }
            let early = step_until(worker, || !seen.borrow().is_empty());
            // Both workers have looked before the second report goes.
            barrier.wait();
            // Worker 1 reports too, still at the open epoch 0: every report is in.
            if index == 1 {
                input.send(LocalWatermark::new(1, 20));
                input.flush();
            }
            let folded = step_until(worker, || !seen.borrow().is_empty());
            let got = seen.borrow().clone();
            // Folded while epoch 0 is still open everywhere.
            let open = probe.less_equal(&0);
            input.close();
            worker.step_while(|| !probe.done());
            send.lock()
                .unwrap()
                .send((early, folded && open, got))
                .unwrap();
        })
        .unwrap();
        for (early, folded, got) in recv.iter() {
            assert!(!early, "folded with one report of two: {got:?}");
            assert!(folded, "not folded once both reports were in");
            assert_eq!(got, vec![10]);
        }
    }
}
