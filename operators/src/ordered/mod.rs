//! Keyed processing in event-time order: the engine under rules, rolling aggregates and
//! joins.
//!
//! Records wait until the watermark passes them (minus the allowed lateness); then, per key,
//! they are handed to a [`KeyedProcess`] in event-time order — records of one key, one event
//! time and one input together, keys in value order, inputs in [`KeyedProcess::side_rank`]
//! order, rows in byte order — interleaved with the timers the process asks for. A timer at
//! `t` fires after every record at `t` or earlier has been processed. Because the order depends only on the records
//! and never on arrival, results are the same at any worker count and on every replay.
//!
//! A record is late when its event time is behind its own partition watermark (or the last
//! fired watermark) by more than the allowed lateness: it goes to the late output instead.
//! Results carry their event time as their watermark; downstream, the step's watermark is the
//! input watermark delayed by the allowed lateness.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use timely::dataflow::StreamVec;
use weir_engine::data::Row;
use weir_engine::event::{Epoch, Event, WATERMARK_MIN};
use weir_engine::keys::{KeyGroup, KeyGroups};
use weir_engine::state::{
    decode_state, encode_state, include_once, Changes, KeyedState, StateContext, StateError,
    StateStats,
};
use weir_engine::stats::{JobStats, OperatorStats};

use crate::keyed::{KeyExtractor, Routing};
use crate::timed::{timed_operator, TimedInput, TimedLogic, TimedOutputs, RESULTS_BATCH};

mod keys;
use keys::{KeyEntry, KeyTable};

/// What an ordered step keeps per key.
pub trait KeyState: Clone + Default + Serialize + DeserializeOwned + 'static {
    /// Records (or versions) held; a key holding none and without a timer is dropped.
    fn entries(&self) -> usize;

    /// Asks for the memory the next records of this key touch to be loaded into the cache
    /// (see [`weir_engine::prefetch`]): called a few records ahead, with the key's slot
    /// already fetched.
    #[inline]
    fn prefetch(&self) {}
}

/// How many records ahead a key's slot is prefetched, and its state.
const PREFETCH_SLOT: usize = 6;
const PREFETCH_STATE: usize = 3;

/// Per-key logic run in event-time order.
pub trait KeyedProcess: 'static {
    /// What is kept per key.
    type KeyState: KeyState;

    /// Every record of one key at event time `ts` from input `side`, in row byte order.
    fn on_records(
        &mut self,
        key: &Row,
        ts: i64,
        side: usize,
        rows: &[Row],
        state: &mut Self::KeyState,
        out: &mut Vec<Event>,
    );

    /// The key's timer at `t` is due: every record at `t` or before has been processed.
    fn on_timer(&mut self, key: &Row, t: i64, state: &mut Self::KeyState, out: &mut Vec<Event>);

    /// When the key next needs [`on_timer`](Self::on_timer), if ever.
    fn next_timer(&self, state: &Self::KeyState) -> Option<i64>;

    /// Records of equal key and event time are processed by input in this order (lowest
    /// first); by default in input order.
    fn side_rank(&self, side: usize) -> usize {
        side
    }

    /// Records of the control input (broadcast to every worker: rule changes, for instance)
    /// at event time `ts`: they apply to every key from `ts` on (before any keyed record at
    /// `ts`).
    fn on_control(&mut self, ts: i64, rows: &[Row]) {
        let _ = (ts, rows);
    }

    /// What the control input changed, for checkpoints (identical on every worker).
    fn control_state(&self) -> Vec<u8> {
        Vec::new()
    }

    /// Restores what [`control_state`](Self::control_state) returned.
    fn restore_control(&mut self, bytes: &[u8]) {
        let _ = bytes;
    }
}

/// A timer for dropping state that no result depends on (a range every record has left):
/// `t` rounded up to a multiple of `span / 8`, so that a busy key re-arms it once per
/// `span / 8` of event time instead of on every record.
pub fn cleanup_timer(t: i64, span: i64) -> i64 {
    let grain = (span / 8).max(1);
    t.saturating_add(grain - 1)
        .div_euclid(grain)
        .saturating_mul(grain)
}

/// A record waiting for the watermark.
struct Pending {
    ts: i64,
    /// A control record: processed before every keyed record of its event time.
    control: bool,
    /// The key's [`Row::sort_prefix`] (0 for control records).
    prefix: u64,
    rank: u8,
    side: u8,
    /// The interned key ([`CONTROL`] for control records).
    key: u32,
    row: Row,
}

/// The key id of control records.
const CONTROL: u32 = u32::MAX;

/// A waiting record as checkpointed: with its key's bytes.
#[derive(Clone, Serialize, Deserialize)]
struct PendingRecord {
    ts: i64,
    control: bool,
    rank: u8,
    side: u8,
    key: Row,
    row: Row,
}

/// One key group's changes since the previous checkpoint: its waiting records (all of them,
/// replacing those before) and the keys whose state changed (`None`: dropped).
#[derive(Serialize, Deserialize)]
struct GroupChanges<S> {
    pending: Vec<PendingRecord>,
    keys: Vec<(Row, Option<KeyEntry<S>>)>,
}

/// The control state and its waiting records.
type ControlSnapshot = (Vec<u8>, Vec<PendingRecord>);

/// Changes recorded since the last checkpoint (when checkpoints are incremental).
#[derive(Default)]
struct Recorded {
    /// Keys whose state changed (each flagged in its slot; a key dropped and interned again
    /// may appear twice).
    keys: Vec<Row>,
    /// Key groups that had waiting records at the last checkpoint.
    pending_groups: BTreeSet<KeyGroup>,
}

/// What a snapshot of one key group holds.
#[derive(Serialize, Deserialize)]
struct GroupSnapshot<S> {
    pending: Vec<PendingRecord>,
    keys: Vec<(Row, KeyEntry<S>)>,
    /// The control state and pending control records, the same in every group of a worker
    /// (every worker sees every control record).
    control: Option<(Vec<u8>, Vec<PendingRecord>)>,
}

/// The state of an ordered keyed step on one worker: records waiting for the watermark, and
/// per-key state with its timer.
pub struct OrderedState<S> {
    name: String,
    key_groups: KeyGroups,
    pending: Vec<Pending>,
    keys: KeyTable<S>,
    /// Timers by key id; the keys of one timer are ordered by value when it fires.
    timers: BTreeSet<(i64, u32)>,
    /// With a control input: its state as of the last control record, and the key groups of
    /// this worker (each snapshot group carries the control state, so any restore finds it).
    control: Option<(Vec<u8>, std::ops::Range<u32>)>,
    /// Restored control state and pending records, for the logic to pick up.
    restored_control: Option<ControlSnapshot>,
    /// Restored waiting records per key group (the last part of a group's chain wins), queued
    /// once every group is restored.
    restored_pending: BTreeMap<KeyGroup, Vec<PendingRecord>>,
    /// Changes since the last checkpoint, when recording.
    recorded: Option<Recorded>,
}

impl<S: KeyState> OrderedState<S> {
    fn record(&self, p: &Pending) -> PendingRecord {
        let key = match self.keys.get(p.key) {
            Some(slot) => slot.key.clone(),
            None => Row::from_values(&[]),
        };
        PendingRecord {
            ts: p.ts,
            control: p.control,
            rank: p.rank,
            side: p.side,
            key,
            row: p.row.clone(),
        }
    }

    /// The waiting control records and the control state, when there is a control input.
    fn control_snapshot(&self) -> Option<ControlSnapshot> {
        let (bytes, _) = self.control.as_ref()?;
        let pending = self
            .pending
            .iter()
            .filter(|p| p.control)
            .map(|p| self.record(p))
            .collect();
        Some((bytes.clone(), pending))
    }

    /// Sets (`Some`) or drops (`None`) the restored state of `key`.
    fn put_key(&mut self, key: &Row, entry: Option<KeyEntry<S>>) {
        let id = match (&entry, self.keys.find(key.as_bytes())) {
            (_, Some(id)) => id,
            (Some(_), None) => self.keys.intern(key.as_bytes()),
            (None, None) => return,
        };
        let slot = self.keys.get_mut(id).expect("live");
        if let Some(r) = slot.entry.registered {
            self.timers.remove(&(r, id));
        }
        match entry {
            Some(mut entry) => {
                if let Some(t) = entry.timer {
                    self.timers.insert((t, id));
                }
                entry.registered = entry.timer;
                slot.entry = entry;
            }
            None => self.keys.remove(id),
        }
    }

    /// Queues a restored record.
    fn push(&mut self, record: PendingRecord) {
        let PendingRecord {
            ts,
            control,
            rank,
            side,
            key,
            row,
        } = record;
        self.enqueue(ts, side, rank, (!control).then_some(key.as_bytes()), row);
    }

    /// Queues a record until the watermark passes it: a keyed one (with its key's encoded
    /// bytes) interns its key, a control one has none.
    fn enqueue(&mut self, ts: i64, side: u8, rank: u8, key: Option<&[u8]>, row: Row) {
        let (key, prefix) = match key {
            None => (CONTROL, 0),
            Some(bytes) => {
                let id = self.keys.intern(bytes);
                let slot = self.keys.get_mut(id).expect("just interned");
                slot.pending += 1;
                (id, slot.prefix)
            }
        };
        self.pending.push(Pending {
            ts,
            control: key == CONTROL,
            prefix,
            rank,
            side,
            key,
            row,
        });
    }
}

impl<S: KeyState> KeyedState for OrderedState<S> {
    fn snapshot_groups(
        &self,
        include: &dyn Fn(KeyGroup) -> bool,
    ) -> Result<Vec<(KeyGroup, Vec<u8>)>, StateError> {
        let mut groups: BTreeMap<KeyGroup, GroupSnapshot<S>> = BTreeMap::new();
        let empty = || GroupSnapshot {
            pending: Vec::new(),
            keys: Vec::new(),
            control: None,
        };
        // Only the groups asked for are copied (an incremental checkpoint asks for a few).
        let mut include = include_once(self.key_groups, include);
        if let (Some(control), Some((_, owned))) = (self.control_snapshot(), &self.control) {
            for g in owned.clone().map(KeyGroup).filter(|g| include(*g)) {
                groups.entry(g).or_insert_with(empty).control = Some(control.clone());
            }
        }
        for p in self.pending.iter().filter(|p| !p.control) {
            let key = self
                .keys
                .get(p.key)
                .expect("a waiting record's key is live");
            let group = self.key_groups.group_of(key.key.as_bytes());
            if include(group) {
                let record = self.record(p);
                groups
                    .entry(group)
                    .or_insert_with(empty)
                    .pending
                    .push(record);
            }
        }
        for (_, slot) in self.keys.iter() {
            if slot.entry.state.entries() == 0 && slot.entry.timer.is_none() {
                continue; // interned only for its waiting records
            }
            let group = self.key_groups.group_of(slot.key.as_bytes());
            if include(group) {
                groups
                    .entry(group)
                    .or_insert_with(empty)
                    .keys
                    .push((slot.key.clone(), slot.entry.clone()));
            }
        }
        groups
            .into_iter()
            .map(|(group, mut snapshot)| {
                // Same state, same bytes: no hash-map or arrival order leaks in.
                snapshot.pending.sort_by(|a, b| {
                    (a.ts, a.rank, &a.key, &a.row).cmp(&(b.ts, b.rank, &b.key, &b.row))
                });
                snapshot.keys.sort_by(|a, b| a.0.cmp(&b.0));
                Ok((group, encode_state(&self.name, group, &snapshot)?))
            })
            .collect()
    }

    fn restore_group(&mut self, group: KeyGroup, bytes: &[u8]) -> Result<(), StateError> {
        let snapshot: GroupSnapshot<S> = decode_state(&self.name, group, bytes)?;
        if snapshot.control.is_some() {
            self.restored_control = snapshot.control;
        }
        for (key, entry) in snapshot.keys {
            self.put_key(&key, Some(entry));
        }
        self.restored_pending.insert(group, snapshot.pending);
        Ok(())
    }

    fn record_changes(&mut self) -> bool {
        self.recorded = Some(Recorded::default());
        true
    }

    fn take_changes(&mut self) -> Result<Changes, StateError> {
        let Some(recorded) = self.recorded.as_mut() else {
            return Ok(Changes::default());
        };
        let mut keys = std::mem::take(&mut recorded.keys);
        let had_pending = std::mem::take(&mut recorded.pending_groups);
        keys.sort_unstable();
        keys.dedup();
        let mut groups: BTreeMap<KeyGroup, GroupChanges<S>> = BTreeMap::new();
        let empty = || GroupChanges {
            pending: Vec::new(),
            keys: Vec::new(),
        };
        for key in keys {
            let entry = self.keys.find(key.as_bytes()).and_then(|id| {
                let slot = self.keys.get_mut(id).expect("live");
                slot.changed = false;
                let held = slot.entry.state.entries() > 0 || slot.entry.timer.is_some();
                held.then(|| slot.entry.clone())
            });
            let group = self.key_groups.group_of(key.as_bytes());
            groups
                .entry(group)
                .or_insert_with(empty)
                .keys
                .push((key, entry));
        }
        // A group's waiting records are listed whole whenever it has or had any.
        let mut has_pending = BTreeSet::new();
        for p in self.pending.iter().filter(|p| !p.control) {
            let record = self.record(p);
            let group = self.key_groups.group_of(record.key.as_bytes());
            has_pending.insert(group);
            groups
                .entry(group)
                .or_insert_with(empty)
                .pending
                .push(record);
        }
        for group in had_pending.difference(&has_pending) {
            groups.entry(*group).or_insert_with(empty);
        }
        if let Some(recorded) = self.recorded.as_mut() {
            recorded.pending_groups = has_pending;
        }
        let common = match self.control_snapshot() {
            Some(control) => encode_state(&self.name, KeyGroup(0), &control)?,
            None => Vec::new(),
        };
        let groups = groups
            .into_iter()
            .map(|(group, mut changes)| {
                // Same changes, same bytes.
                changes.pending.sort_by(|a, b| {
                    (a.ts, a.rank, &a.key, &a.row).cmp(&(b.ts, b.rank, &b.key, &b.row))
                });
                Ok((group, encode_state(&self.name, group, &changes)?))
            })
            .collect::<Result<_, StateError>>()?;
        Ok(Changes { common, groups })
    }

    fn apply_changes(
        &mut self,
        group: KeyGroup,
        common: &[u8],
        own: &[u8],
    ) -> Result<(), StateError> {
        if !common.is_empty() {
            self.restored_control = Some(decode_state(&self.name, group, common)?);
        }
        if own.is_empty() {
            return Ok(());
        }
        let changes: GroupChanges<S> = decode_state(&self.name, group, own)?;
        for (key, entry) in changes.keys {
            self.put_key(&key, entry);
        }
        self.restored_pending.insert(group, changes.pending);
        Ok(())
    }

    fn finish_restore(&mut self) {
        for (group, records) in std::mem::take(&mut self.restored_pending) {
            if !records.is_empty() {
                if let Some(recorded) = self.recorded.as_mut() {
                    recorded.pending_groups.insert(group);
                }
            }
            for record in records {
                self.push(record);
            }
        }
    }

    fn stats(&self) -> StateStats {
        StateStats {
            keys: self.keys.len(),
            entries: self.pending.len()
                + self
                    .keys
                    .iter()
                    .map(|(_, s)| s.entry.state.entries())
                    .sum::<usize>(),
        }
    }
}

/// The logic driving a [`KeyedProcess`]: what the timed operator runs on each worker, and a
/// synchronous driver for tests and benchmarks (through [`TimedLogic`]).
pub struct OrderedLogic<P: KeyedProcess> {
    process: P,
    state: OrderedState<P::KeyState>,
    extractors: Vec<KeyExtractor>,
    lateness: i64,
    stats: OperatorStats,
    group: Vec<Row>,
    ready: Vec<Pending>,
    due: Vec<u32>,
}

impl<P: KeyedProcess> OrderedLogic<P> {
    /// The logic of `process` configured by `config`.
    pub fn new(config: &OrderedConfig, process: P, stats: Arc<JobStats>) -> Self {
        // With a control input, every key group carries its state (a worker of a timely run
        // narrows this to its own groups).
        let control = config
            .control
            .then(|| (process.control_state(), 0..config.key_groups.count()));
        OrderedLogic {
            process,
            state: OrderedState {
                name: config.name.clone(),
                key_groups: config.key_groups,
                pending: Vec::new(),
                keys: KeyTable::default(),
                timers: BTreeSet::new(),
                control,
                restored_control: None,
                restored_pending: BTreeMap::new(),
                recorded: None,
            },
            extractors: config
                .key_columns
                .iter()
                .map(|c| KeyExtractor::new(c.clone()))
                .collect(),
            lateness: config.allowed_lateness,
            stats: stats.operator(&config.name, 0),
            group: Vec::new(),
            ready: Vec::new(),
            due: Vec::new(),
        }
    }

    /// After the process touched key `id`: re-arms its timer, and drops the key when it holds
    /// nothing, waits for nothing and has no timer.
    fn settle(state: &mut OrderedState<P::KeyState>, process: &P, id: u32) {
        let OrderedState {
            timers,
            keys,
            recorded,
            ..
        } = state;
        let slot = keys.get_mut(id).expect("a live key");
        if let Some(recorded) = recorded.as_mut().filter(|_| !slot.changed) {
            slot.changed = true;
            recorded.keys.push(slot.key.clone());
        }
        let entry = &mut slot.entry;
        entry.timer = process.next_timer(&entry.state);
        match entry.timer {
            Some(t) => {
                if entry.registered.is_none_or(|r| t < r) {
                    timers.insert((t, id));
                    entry.registered = Some(t);
                }
            }
            // Entries left in the timer set for it are skipped when they come up (a reused
            // id registers its own time: equal entries are one set entry).
            None => {
                if entry.state.entries() == 0 && slot.pending == 0 {
                    keys.remove(id);
                }
            }
        }
    }

    /// Fires every timer before `until` (exclusive): the keys of one time in value order.
    fn fire_timers(&mut self, until: i64, out: &mut Vec<Event>) {
        while let Some(&(t, _)) = self.state.timers.first() {
            if t >= until {
                break;
            }
            self.due.clear();
            while let Some(&(at, id)) = self.state.timers.first() {
                if at != t {
                    break;
                }
                self.state.timers.pop_first();
                self.due.push(id);
            }
            let keys = &self.state.keys;
            self.due.retain(|&id| {
                // A dropped key, or one superseded by an earlier registration.
                keys.get(id).is_some_and(|s| s.entry.registered == Some(t))
            });
            if self.due.len() > 1 {
                self.due.sort_unstable_by(|&a, &b| {
                    let (a, b) = (keys.get(a).expect("live"), keys.get(b).expect("live"));
                    a.cmp_key(b)
                });
            }
            for i in 0..self.due.len() {
                let id = self.due[i];
                let slot = self.state.keys.get_mut(id).expect("live");
                let entry = &mut slot.entry;
                entry.registered = None;
                match entry.timer {
                    Some(due) if due > t => {
                        // Registered early: move it to when it is due.
                        entry.registered = Some(due);
                        self.state.timers.insert((due, id));
                        continue;
                    }
                    Some(due) => {
                        debug_assert_eq!(due, t, "a timer is never registered late");
                        self.process.on_timer(&slot.key, t, &mut entry.state, out);
                    }
                    None => {}
                }
                Self::settle(&mut self.state, &self.process, id);
            }
        }
    }
}

impl<P: KeyedProcess> TimedLogic for OrderedLogic<P> {
    type State = OrderedState<P::KeyState>;

    fn insert(&mut self, input: usize, event: Event, fired_wm: i64) -> Option<Event> {
        let bound = event.wm.max(fired_wm).saturating_sub(self.lateness);
        if event.ts < bound {
            self.stats.add_late(1);
            return Some(event);
        }
        let side = input as u8;
        match self.extractors.get_mut(input) {
            Some(extractor) => {
                let rank = self.process.side_rank(input) as u8;
                let key = extractor.key_bytes(&event.row);
                self.state
                    .enqueue(event.ts, side, rank, Some(key), event.row);
            }
            // The control input: no key.
            None => self.state.enqueue(event.ts, side, 0, None, event.row),
        }
        None
    }

    fn advance(&mut self, wm: i64, out: &mut Vec<Event>) {
        self.advance_in_batches(wm, out, &mut |_| {});
    }

    fn advance_in_batches(
        &mut self,
        wm: i64,
        out: &mut Vec<Event>,
        flush: &mut dyn FnMut(&mut Vec<Event>),
    ) {
        let until = if wm == WATERMARK_MIN {
            return;
        } else {
            wm.saturating_sub(self.lateness)
        };
        // Records before `until` move to a buffer that keeps its capacity (no fresh pages per
        // epoch); only they are sorted. Keys by value (like windows): output reads naturally.
        let mut pending = std::mem::take(&mut self.ready);
        pending.extend(self.state.pending.extract_if(.., |p| p.ts < until));
        let keys = &self.state.keys;
        pending.sort_unstable_by(|a, b| {
            (a.ts, !a.control, a.prefix)
                .cmp(&(b.ts, !b.control, b.prefix))
                .then_with(|| {
                    if a.key == b.key {
                        return std::cmp::Ordering::Equal;
                    }
                    match (keys.get(a.key), keys.get(b.key)) {
                        (Some(x), Some(y)) => x.key.cmp_values(&y.key),
                        _ => std::cmp::Ordering::Equal, // control records: no key
                    }
                })
                .then_with(|| (a.rank, a.row.as_bytes()).cmp(&(b.rank, b.row.as_bytes())))
        });
        let mut records = pending.drain(..);
        while let Some(first) = records.next() {
            // Keys' state is cold: fetch what the records a few places ahead will touch.
            let ahead = records.as_slice();
            if let Some(p) = ahead.get(PREFETCH_SLOT).filter(|p| !p.control) {
                self.state.keys.prefetch(p.key);
            }
            if let Some(p) = ahead.get(PREFETCH_STATE).filter(|p| !p.control) {
                if let Some(slot) = self.state.keys.get(p.key) {
                    slot.entry.state.prefetch();
                }
            }
            self.fire_timers(first.ts, out);
            if first.control {
                let ts = first.ts;
                self.group.clear();
                self.group.push(first.row);
                while let Some(next) = next_if(&mut records, |n| n.ts == ts && n.control) {
                    self.group.push(next.row);
                }
                self.process.on_control(ts, &self.group);
                if let Some((bytes, _)) = &mut self.state.control {
                    *bytes = self.process.control_state();
                }
                continue;
            }
            let (ts, side, id) = (first.ts, first.side, first.key);
            self.group.clear();
            self.group.push(first.row);
            while let Some(next) = next_if(&mut records, |n| {
                n.ts == ts && n.side == side && n.key == id
            }) {
                self.group.push(next.row);
            }
            let slot = self
                .state
                .keys
                .get_mut(id)
                .expect("a waiting record's key is live");
            slot.pending -= self.group.len() as u32;
            self.process.on_records(
                &slot.key,
                ts,
                side as usize,
                &self.group,
                &mut slot.entry.state,
                out,
            );
            Self::settle(&mut self.state, &self.process, id);
            if out.len() >= RESULTS_BATCH {
                flush(out);
            }
        }
        drop(records);
        self.ready = pending;
        self.fire_timers(until, out);
        flush(out);
    }

    fn state(&self) -> &Self::State {
        &self.state
    }

    fn state_mut(&mut self) -> &mut Self::State {
        &mut self.state
    }

    fn restored(&mut self) {
        if let Some((bytes, pending)) = self.state.restored_control.take() {
            self.process.restore_control(&bytes);
            if let Some((current, _)) = &mut self.state.control {
                *current = bytes;
            }
            for record in pending {
                self.state.push(record);
            }
        }
    }
}

/// The next record when it passes `test` (`Peekable::next_if` on a drain that can still look
/// further ahead).
fn next_if(
    records: &mut std::vec::Drain<'_, Pending>,
    test: impl FnOnce(&Pending) -> bool,
) -> Option<Pending> {
    if records.as_slice().first().is_some_and(test) {
        records.next()
    } else {
        None
    }
}

/// How an ordered step is set up.
pub struct OrderedConfig {
    /// The step name.
    pub name: String,
    /// Key columns, per input.
    pub key_columns: Vec<Vec<usize>>,
    /// How far behind the watermark records are still accepted, ms.
    pub allowed_lateness: i64,
    /// The job's key groups.
    pub key_groups: KeyGroups,
    /// The last input is a control input, broadcast to every worker (see
    /// [`KeyedProcess::on_control`]).
    pub control: bool,
}

/// Runs `process` over `inputs` (keyed by `config.key_columns`, then the control input when
/// `config.control`) in event-time order as the watermark passes.
pub fn ordered<'scope, P: KeyedProcess>(
    inputs: Vec<StreamVec<'scope, Epoch, Event>>,
    watermarks: StreamVec<'scope, Epoch, i64>,
    config: OrderedConfig,
    process: P,
    state: Option<StateContext>,
    stats: Arc<JobStats>,
) -> TimedOutputs<'scope> {
    assert_eq!(
        inputs.len(),
        config.key_columns.len() + config.control as usize,
        "one key per keyed input"
    );
    let mut logic = OrderedLogic::new(&config, process, stats.clone());
    let scope = watermarks.scope();
    logic.stats = stats.operator(&config.name, scope.index());
    if let Some((_, owned)) = &mut logic.state.control {
        *owned = config
            .key_groups
            .groups_of_worker(scope.index(), scope.peers());
    }
    let routes = config
        .key_columns
        .into_iter()
        .map(Routing::Key)
        .chain(std::iter::once(Routing::Local));
    let timed_inputs = inputs
        .into_iter()
        .zip(routes)
        .map(|(stream, routing)| TimedInput { stream, routing })
        .collect();
    timed_operator(
        &config.name,
        timed_inputs,
        watermarks,
        config.key_groups,
        logic,
        state,
    )
}
