//! The epoch clock: every source on every worker of every process closes its epochs at the
//! same instants.
//!
//! Epochs are processing-time ticks, and downstream an epoch is complete only when every
//! source has closed it. A source that counted ticks from its own start would run ahead of a
//! source that started later (another process that connected a second later, a worker whose
//! Kafka connection was slow), and the gap never closes: every epoch of the early source then
//! waits for the late one, and once the gap exceeds the sources' in-flight bound the early
//! source stops reading for good. So epochs are read off the wall clock against one anchor
//! the workers agree on when the computation starts ([`agree_on_anchor`]): epoch `first + n`
//! covers `[anchor + n·tick, anchor + (n+1)·tick)` everywhere.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use timely::dataflow::operators::vec::{Broadcast, Input};
use timely::dataflow::operators::{Inspect, Probe};
use timely::worker::Worker;

use crate::event::Epoch;

/// Maps wall-clock time to epochs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochClock {
    /// When the first epoch opens, in nanoseconds since the Unix epoch.
    anchor_ns: u128,
    /// Length of an epoch, in nanoseconds (at least 1).
    tick_ns: u128,
}

impl EpochClock {
    /// Epochs of length `tick` counted from `anchor`.
    pub fn new(anchor: SystemTime, tick: Duration) -> Self {
        EpochClock {
            anchor_ns: nanos_since_unix(anchor),
            tick_ns: tick.as_nanos().max(1),
        }
    }

    /// A clock anchored now: for a computation of one worker, or tests.
    pub fn starting_now(tick: Duration) -> Self {
        EpochClock::new(SystemTime::now(), tick)
    }

    /// The length of an epoch.
    pub fn tick(&self) -> Duration {
        Duration::from_nanos(self.tick_ns.min(u64::MAX as u128) as u64)
    }

    /// Ticks elapsed at `at` since the anchor (0 before it).
    fn ticks_at(&self, at: SystemTime) -> u128 {
        nanos_since_unix(at).saturating_sub(self.anchor_ns) / self.tick_ns
    }

    /// The epoch open at `at`, in a run whose first epoch is `first`.
    pub fn epoch_at(&self, first: Epoch, at: SystemTime) -> Epoch {
        let ticks = self.ticks_at(at).min(u64::MAX as u128) as u64;
        first.saturating_add(ticks)
    }

    /// The epoch open now.
    pub fn epoch_now(&self, first: Epoch) -> Epoch {
        self.epoch_at(first, SystemTime::now())
    }

    /// How long after `at` the open epoch closes.
    pub fn until_next_at(&self, at: SystemTime) -> Duration {
        let now = nanos_since_unix(at);
        let next = self.anchor_ns + (self.ticks_at(at) + 1) * self.tick_ns;
        Duration::from_nanos(next.saturating_sub(now).min(u64::MAX as u128) as u64)
    }

    /// How long until the open epoch closes.
    pub fn until_next(&self) -> Duration {
        self.until_next_at(SystemTime::now())
    }
}

fn nanos_since_unix(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// Agrees on the anchor of the epoch clock with every other worker of the computation: each
/// offers its wall-clock time, and all take the latest offer (so no worker starts behind the
/// anchor). Steps `worker` until every offer has arrived; call it before building the job's
/// dataflow, on every worker.
pub fn agree_on_anchor(worker: &mut Worker) -> SystemTime {
    let latest = Rc::new(Cell::new(0u128));
    let seen = latest.clone();
    let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
        let (input, stream) = scope.new_input::<u128>();
        let (probe, _) = stream
            .broadcast()
            .inspect(move |offer: &u128| seen.set(seen.get().max(*offer)))
            .probe();
        (input, probe)
    });
    input.send(nanos_since_unix(SystemTime::now()));
    input.close();
    // Parked between steps (a message from a peer wakes the worker): a peer that starts
    // seconds later, restoring a checkpoint, costs no CPU while it is waited for.
    while !probe.done() {
        worker.step_or_park(Some(Duration::from_millis(10)));
    }
    let ns = latest.get();
    UNIX_EPOCH + Duration::new((ns / 1_000_000_000) as u64, (ns % 1_000_000_000) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_follow_the_wall_clock_from_the_anchor() {
        let anchor = UNIX_EPOCH + Duration::from_secs(1_000);
        let clock = EpochClock::new(anchor, Duration::from_millis(10));
        assert_eq!(clock.epoch_at(5, anchor), 5);
        assert_eq!(clock.epoch_at(5, anchor + Duration::from_millis(9)), 5);
        assert_eq!(clock.epoch_at(5, anchor + Duration::from_millis(10)), 6);
        assert_eq!(
            clock.epoch_at(5, anchor + Duration::from_millis(1_234)),
            128
        );
        // Before the anchor (a clock a little behind another machine's): the first epoch.
        assert_eq!(clock.epoch_at(5, anchor - Duration::from_millis(30)), 5);
        assert_eq!(
            clock.until_next_at(anchor + Duration::from_millis(1_234)),
            Duration::from_millis(6)
        );
    }

    #[test]
    fn workers_agree_on_one_anchor() {
        let anchors = timely::execute(timely::Config::process(3), |worker| {
            std::thread::sleep(Duration::from_millis(5 * worker.index() as u64));
            agree_on_anchor(worker)
        })
        .expect("timely")
        .join()
        .into_iter()
        .map(|r| r.expect("worker"))
        .collect::<Vec<_>>();
        assert_eq!(anchors.len(), 3);
        assert!(anchors.iter().all(|a| *a == anchors[0]), "{anchors:?}");
    }
}
