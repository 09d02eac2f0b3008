//! The state of a window step on one worker: open windows and their accumulators per key.

use std::collections::{BTreeMap, BTreeSet};
use std::mem;
use std::sync::Arc;

use hashbrown::{HashMap, HashSet};
use serde::{Deserialize, Serialize};
use weir_engine::data::Row;
use weir_engine::keys::{key_hash, KeyGroup, KeyGroups};
use weir_engine::state::{
    decode_state, encode_state, include_once, Changes, KeyedState, StateError, StateStats,
};

use super::assign::WindowKind;
use crate::aggregate::{Acc, Aggregates};
use crate::keyed::KeyRef;

/// One session of one key: `[start, end)` with `end = last event + gap`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Session {
    start: i64,
    end: i64,
    accs: Vec<Acc>,
}

/// A window that closed, ready to be emitted.
#[derive(Debug)]
pub struct ClosedWindow {
    /// The key (a row of the key columns).
    pub key: Row,
    /// Window start (inclusive), ms.
    pub start: i64,
    /// Window end (exclusive), ms.
    pub end: i64,
    /// Final accumulators.
    pub accs: Vec<Acc>,
}

/// What a snapshot of one key group holds.
#[derive(Serialize, Deserialize)]
enum GroupSnapshot {
    Fixed(Vec<(i64, Row, Vec<Acc>)>),
    Sessions(Vec<(Row, Vec<Session>)>),
}

/// [`GroupSnapshot`] borrowed from the state: the same bytes, without copying it first.
#[derive(Serialize)]
enum GroupSnapshotRef<'a> {
    Fixed(Vec<(i64, SortedKey<'a>, &'a [Acc])>),
    Sessions(Vec<(&'a Row, &'a [Session])>),
}

/// A key that sorts by its hash first (then by its bytes): a deterministic order that rarely
/// compares bytes. Serialises as the key.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct SortedKey<'a>(u64, &'a Row);

impl Serialize for SortedKey<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.1.serialize(serializer)
    }
}

/// One key group's changes since the previous checkpoint; windows closed meanwhile are not
/// listed (the changes common to every group say up to where windows closed).
#[derive(Default, Serialize, Deserialize)]
struct GroupChanges {
    /// Open fixed windows updated or opened: end, key, accumulators now.
    fixed: Vec<(i64, Row, Vec<Acc>)>,
    /// Keys whose sessions changed: their sessions now (none left: `None`).
    sessions: Vec<(Row, Option<Vec<Session>>)>,
}

/// One key's accumulators in one fixed window.
#[derive(Clone, Debug)]
struct Slot {
    accs: Vec<Acc>,
    /// Its key group.
    group: KeyGroup,
    /// Changed since the last checkpoint (its window is listed in [`Recorded::fixed`]).
    changed: bool,
}

/// Changes recorded since the last checkpoint (when checkpoints are incremental).
#[derive(Default)]
struct Recorded {
    /// Ends of the fixed windows with changed slots (each flagged in its slot). Recording a
    /// change costs a flag, no key copy: the changed slots are found when a checkpoint
    /// takes them.
    fixed: BTreeSet<i64>,
    /// Keys whose sessions changed.
    sessions: HashSet<Row>,
}

/// Open windows of one window step.
pub struct WindowState {
    name: String,
    kind: WindowKind,
    aggregates: Arc<Aggregates>,
    key_groups: KeyGroups,
    /// Tumbling and sliding: window end → key → accumulators.
    fixed: BTreeMap<i64, HashMap<Row, Slot>>,
    /// Sessions: key → its sessions, sorted and disjoint.
    sessions: HashMap<Row, Vec<Session>>,
    /// Sessions by end, to close them in order.
    timers: BTreeSet<(i64, Row)>,
    /// Emptied key maps of closed windows, kept with their capacity: the next window reuses
    /// one instead of growing a new map through fresh memory.
    spare_maps: Vec<HashMap<Row, Slot>>,
    /// Reused buffer for sorting a closing window's keys.
    sorting: Vec<(u64, Row, Vec<Acc>)>,
    /// Windows ending at or before this have closed.
    closed_through: i64,
    /// Changes since the last checkpoint, when recording.
    recorded: Option<Recorded>,
}

impl WindowState {
    /// Empty state for the step `name`.
    pub fn new(
        name: impl Into<String>,
        kind: WindowKind,
        aggregates: Arc<Aggregates>,
        key_groups: KeyGroups,
    ) -> Self {
        WindowState {
            name: name.into(),
            kind,
            aggregates,
            key_groups,
            fixed: BTreeMap::new(),
            sessions: HashMap::new(),
            timers: BTreeSet::new(),
            spare_maps: Vec::new(),
            sorting: Vec::new(),
            closed_through: i64::MIN,
            recorded: None,
        }
    }

    /// Adds `row` at event time `ts` under `key` to every fixed window for which `accept(end)`
    /// holds; returns whether any window took it.
    #[inline]
    pub fn insert_fixed(
        &mut self,
        key: &[u8],
        ts: i64,
        row: &Row,
        mut accept: impl FnMut(i64) -> bool,
    ) -> bool {
        let mut accepted = false;
        let (fixed, aggregates, spare) = (&mut self.fixed, &self.aggregates, &mut self.spare_maps);
        let (recorded, key_groups) = (&mut self.recorded, self.key_groups);
        self.kind.for_each_window(ts, |_start, end| {
            if !accept(end) {
                return;
            }
            accepted = true;
            let keys = fixed
                .entry(end)
                .or_insert_with(|| spare.pop().unwrap_or_default());
            match keys.get_mut(&KeyRef(key)) {
                Some(slot) => {
                    aggregates.update(&mut slot.accs, row);
                    if let Some(recorded) = recorded.as_mut().filter(|_| !slot.changed) {
                        slot.changed = true;
                        recorded.fixed.insert(end);
                    }
                }
                None => {
                    let mut accs = aggregates.init();
                    aggregates.update(&mut accs, row);
                    let key =
                        Row::from_bytes(key.to_vec()).expect("key bytes come from a RowBuilder");
                    let slot = Slot {
                        accs,
                        group: key_groups.group_of(key.as_bytes()),
                        changed: recorded.is_some(),
                    };
                    if let Some(recorded) = recorded.as_mut() {
                        recorded.fixed.insert(end);
                    }
                    keys.insert(key, slot);
                }
            }
        });
        accepted
    }

    /// Adds `row` at `ts` to the sessions of `key`, merging every session it touches.
    pub fn insert_session(&mut self, key: &[u8], ts: i64, row: &Row) {
        let WindowKind::Session { gap } = self.kind else {
            unreachable!("insert_session on a {:?} window", self.kind)
        };
        let mut merged = Session {
            start: ts,
            end: ts + gap,
            accs: self.aggregates.init(),
        };
        self.aggregates.update(&mut merged.accs, row);
        let key_row = match self.sessions.get_key_value(key) {
            Some((k, _)) => k.clone(),
            None => Row::from_bytes(key.to_vec()).expect("key bytes come from a RowBuilder"),
        };
        let sessions = self.sessions.entry(key_row.clone()).or_default();
        // Sessions are disjoint and sorted, so the ones overlapping [ts, ts + gap) are adjacent.
        let first = sessions.partition_point(|s| s.end <= merged.start);
        let mut last = first;
        while last < sessions.len() && sessions[last].start < merged.end {
            last += 1;
        }
        for old in sessions.drain(first..last) {
            self.timers.remove(&(old.end, key_row.clone()));
            merged.start = merged.start.min(old.start);
            merged.end = merged.end.max(old.end);
            self.aggregates.merge(&mut merged.accs, &old.accs);
        }
        self.timers.insert((merged.end, key_row.clone()));
        sessions.insert(first, merged);
        if let Some(recorded) = &mut self.recorded {
            recorded.sessions.insert(key_row);
        }
    }

    /// Removes every window whose end is at most `until` and appends it to `out`, in (end,
    /// key) order.
    pub fn close_until(&mut self, until: i64, out: &mut Vec<ClosedWindow>) {
        let size = self.kind.size().unwrap_or(0);
        self.closed_through = self.closed_through.max(until);
        while let Some(entry) = self.fixed.first_entry() {
            if *entry.key() > until {
                break;
            }
            let end = *entry.key();
            let mut keys = entry.remove();
            self.sorting
                .extend(keys.drain().map(|(k, s)| (k.sort_prefix(), k, s.accs)));
            self.spare_maps.push(keys);
            self.sorting
                .sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp_values(&b.1)));
            out.extend(self.sorting.drain(..).map(|(_, key, accs)| ClosedWindow {
                key,
                start: end - size,
                end,
                accs,
            }));
        }
        // Keep a few maps: as many windows as are usually open at once.
        self.spare_maps.truncate(4);
        let first_session = out.len();
        while let Some((end, _)) = self.timers.first() {
            if *end > until {
                break;
            }
            let (end, key) = self.timers.pop_first().expect("non-empty");
            let sessions = self
                .sessions
                .get_mut(&key)
                .expect("a timer has its session");
            let at = sessions
                .iter()
                .position(|s| s.end == end)
                .expect("a timer has its session");
            let session = sessions.remove(at);
            if sessions.is_empty() {
                self.sessions.remove(&key);
            }
            if let Some(recorded) = &mut self.recorded {
                recorded.sessions.insert(key.clone());
            }
            out.push(ClosedWindow {
                key,
                start: session.start,
                end,
                accs: session.accs,
            });
        }
        // Timers order sessions by (end, key bytes); emit them by key value like fixed windows.
        out[first_session..]
            .sort_by(|a, b| a.end.cmp(&b.end).then_with(|| a.key.cmp_values(&b.key)));
    }

    fn group_of(&self, key: &Row) -> KeyGroup {
        self.key_groups.group_of(key.as_bytes())
    }

    /// Sets the accumulators of `key` in the fixed window ending at `end` (restores).
    fn put_fixed(&mut self, end: i64, key: Row, accs: Vec<Acc>) {
        let group = self.group_of(&key);
        let slot = Slot {
            accs,
            group,
            changed: false,
        };
        self.fixed.entry(end).or_default().insert(key, slot);
    }

    /// Replaces the sessions of `key` (restores): none left with `None`.
    fn put_sessions(&mut self, key: Row, sessions: Option<Vec<Session>>) {
        if let Some(old) = self.sessions.remove(&key) {
            for s in &old {
                self.timers.remove(&(s.end, key.clone()));
            }
        }
        if let Some(sessions) = sessions.filter(|s| !s.is_empty()) {
            for s in &sessions {
                self.timers.insert((s.end, key.clone()));
            }
            self.sessions.insert(key, sessions);
        }
    }
}

impl KeyedState for WindowState {
    fn snapshot_groups(
        &self,
        include: &dyn Fn(KeyGroup) -> bool,
    ) -> Result<Vec<(KeyGroup, Vec<u8>)>, StateError> {
        let mut groups: BTreeMap<KeyGroup, GroupSnapshotRef<'_>> = BTreeMap::new();
        let mut include = include_once(self.key_groups, include);
        for (end, keys) in &self.fixed {
            for (key, slot) in keys {
                if !include(slot.group) {
                    continue;
                }
                let entry = groups
                    .entry(slot.group)
                    .or_insert_with(|| GroupSnapshotRef::Fixed(Vec::new()));
                if let GroupSnapshotRef::Fixed(list) = entry {
                    let sorted = SortedKey(key_hash(key.as_bytes()), key);
                    list.push((*end, sorted, &slot.accs));
                }
            }
        }
        for (key, sessions) in &self.sessions {
            let group = self.group_of(key);
            if !include(group) {
                continue;
            }
            let entry = groups
                .entry(group)
                .or_insert_with(|| GroupSnapshotRef::Sessions(Vec::new()));
            if let GroupSnapshotRef::Sessions(list) = entry {
                list.push((key, sessions));
            }
        }
        groups
            .into_iter()
            .map(|(group, mut snapshot)| {
                // Hash-map order must not leak into the bytes: same state, same snapshot.
                match &mut snapshot {
                    GroupSnapshotRef::Fixed(list) => {
                        list.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)))
                    }
                    GroupSnapshotRef::Sessions(list) => list.sort_unstable_by(|a, b| a.0.cmp(b.0)),
                }
                Ok((group, encode_state(&self.name, group, &snapshot)?))
            })
            .collect()
    }

    fn restore_group(&mut self, group: KeyGroup, bytes: &[u8]) -> Result<(), StateError> {
        match decode_state::<GroupSnapshot>(&self.name, group, bytes)? {
            GroupSnapshot::Fixed(list) => {
                for (end, key, accs) in list {
                    self.put_fixed(end, key, accs);
                }
            }
            GroupSnapshot::Sessions(list) => {
                for (key, sessions) in list {
                    self.put_sessions(key, Some(sessions));
                }
            }
        }
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
        let recorded = mem::take(recorded);
        let mut groups: BTreeMap<KeyGroup, GroupChanges> = BTreeMap::new();
        for end in recorded.fixed {
            // Windows that closed since are left out: the common part covers them.
            let Some(keys) = self.fixed.get_mut(&end) else {
                continue;
            };
            for (key, slot) in keys.iter_mut().filter(|(_, slot)| slot.changed) {
                slot.changed = false;
                groups.entry(slot.group).or_default().fixed.push((
                    end,
                    key.clone(),
                    slot.accs.clone(),
                ));
            }
        }
        for key in recorded.sessions {
            let now = self.sessions.get(&key).cloned();
            groups
                .entry(self.group_of(&key))
                .or_default()
                .sessions
                .push((key, now));
        }
        let common = encode_state(&self.name, KeyGroup(0), &self.closed_through)?;
        let groups = groups
            .into_iter()
            .map(|(group, mut changes)| {
                // Same changes, same bytes.
                changes
                    .fixed
                    .sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
                changes.sessions.sort_unstable_by(|a, b| a.0.cmp(&b.0));
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
        let closed: i64 = decode_state(&self.name, group, common)?;
        self.closed_through = self.closed_through.max(closed);
        if own.is_empty() {
            return Ok(());
        }
        let changes: GroupChanges = decode_state(&self.name, group, own)?;
        for (end, key, accs) in changes.fixed {
            self.put_fixed(end, key, accs);
        }
        for (key, sessions) in changes.sessions {
            self.put_sessions(key, sessions);
        }
        Ok(())
    }

    fn finish_restore(&mut self) {
        // Windows that closed after their group's last change: gone (sessions were listed as
        // changes when they closed).
        let open = self.fixed.split_off(&self.closed_through.saturating_add(1));
        self.fixed = open;
    }

    fn stats(&self) -> StateStats {
        let fixed: usize = self.fixed.values().map(HashMap::len).sum();
        let sessions: usize = self.sessions.values().map(Vec::len).sum();
        StateStats {
            keys: fixed + self.sessions.len(),
            entries: fixed + sessions,
        }
    }
}

#[cfg(test)]
mod tests {
    use weir_engine::data::{DataType, Field, Schema, Value};

    use super::*;

    fn state(kind: WindowKind) -> WindowState {
        let schema = Schema::new(vec![Field::new("k", DataType::String)]).unwrap();
        let aggs = Aggregates::compile([("n", "count(*)")], &schema).unwrap();
        WindowState::new("w", kind, Arc::new(aggs), KeyGroups::new(4))
    }

    fn key(s: &str) -> Row {
        Row::from_values(&[Value::Str(s.into())])
    }

    #[test]
    fn windows_close_in_end_then_key_value_order() {
        for kind in [
            WindowKind::Tumbling { size: 10 },
            WindowKind::Session { gap: 5 },
        ] {
            let mut st = state(kind);
            for (k, ts) in [
                ("b", 12),
                ("a10", 3),
                ("a9", 14),
                ("a9", 1),
                ("c", 0),
                ("", 11),
            ] {
                let row = key(k);
                match kind {
                    WindowKind::Session { .. } => st.insert_session(row.as_bytes(), ts, &row),
                    _ => {
                        st.insert_fixed(row.as_bytes(), ts, &row, |_| true);
                    }
                }
            }
            let mut out = Vec::new();
            st.close_until(i64::MAX, &mut out);
            let order: Vec<(i64, String)> = out
                .iter()
                .map(|w| (w.end, w.key.get_str(0).unwrap().to_string()))
                .collect();
            let mut expected = order.clone();
            expected.sort();
            assert_eq!(order, expected, "{kind:?}");
            assert_eq!(
                st.stats().entries,
                0,
                "{kind:?}: nothing left after closing everything"
            );
        }
    }

    #[test]
    fn sessions_merge_when_a_record_bridges_them() {
        let mut st = state(WindowKind::Session { gap: 10 });
        let k = key("k");
        for ts in [0, 30, 15] {
            st.insert_session(k.as_bytes(), ts, &k);
        }
        assert_eq!(st.stats().entries, 3, "[0,10), [15,25), [30,40)");
        st.insert_session(k.as_bytes(), 8, &k);
        assert_eq!(st.stats().entries, 2, "8 bridges [0,10) and [15,25)");
        st.insert_session(k.as_bytes(), 22, &k);
        assert_eq!(st.stats().entries, 1, "22 bridges [0,25) and [30,40)");
        let mut out = Vec::new();
        st.close_until(39, &mut out);
        assert!(out.is_empty(), "the merged session ends at 40");
        st.close_until(40, &mut out);
        assert_eq!((out[0].start, out[0].end), (0, 40));
        assert_eq!(out[0].accs, vec![crate::aggregate::Acc::Count(5)]);
    }

    /// Every group's full snapshot, for comparing states.
    fn full(st: &WindowState) -> Vec<(KeyGroup, Vec<u8>)> {
        st.snapshot_groups(&|_| true).unwrap()
    }

    #[test]
    fn incremental_checkpoints_restore_the_same_windows_at_any_worker_count() {
        use weir_engine::state::{CheckpointSchedule, MemoryBackend, StateContext};
        for kind in [
            WindowKind::Tumbling { size: 10 },
            WindowKind::Sliding { size: 20, slide: 5 },
            WindowKind::Session { gap: 7 },
        ] {
            let groups = KeyGroups::new(16);
            let backend = MemoryBackend::new();
            let mut ctx = StateContext::new(
                "w",
                backend.clone(),
                CheckpointSchedule::Every(1),
                groups,
                0,
                1,
            );
            let mut st = state(kind);
            st.key_groups = groups;
            ctx.restore(&mut st).unwrap();
            let mut seed = 7u64;
            let mut next = move || {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                seed >> 33
            };
            let mut expected = Vec::new();
            let mut closed = Vec::new();
            for epoch in 0..30u64 {
                let now = epoch as i64 * 4;
                for _ in 0..next() % 12 {
                    let k = key(&format!("k{}", next() % 40));
                    let ts = now + (next() % 6) as i64;
                    match kind {
                        WindowKind::Session { .. } => st.insert_session(k.as_bytes(), ts, &k),
                        _ => {
                            st.insert_fixed(k.as_bytes(), ts, &k, |end| end > now - 4);
                        }
                    }
                }
                st.close_until(now - 4, &mut closed);
                ctx.snapshot(epoch, &mut st).unwrap();
                expected.push(full(&st));
            }
            assert!(!closed.is_empty() && st.stats().entries > 0, "{kind:?}");
            for (epoch, want) in expected.iter().enumerate() {
                backend.restore_from(epoch as u64);
                for workers in [1, 2, 3] {
                    let mut got = Vec::new();
                    for worker in 0..workers {
                        let mut ctx = StateContext::new(
                            "w",
                            backend.clone(),
                            Default::default(),
                            groups,
                            worker,
                            workers,
                        );
                        let mut part = state(kind);
                        part.key_groups = groups;
                        ctx.restore(&mut part).unwrap();
                        got.extend(full(&part));
                    }
                    got.sort();
                    assert_eq!(&got, want, "{kind:?}: epoch {epoch} at {workers} workers");
                }
            }
        }
    }
}
