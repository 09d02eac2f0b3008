//! The state of a window step on one worker: open windows and their accumulators per key.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use hashbrown::HashMap;
use serde::{Deserialize, Serialize};
use weir_engine::data::Row;
use weir_engine::keys::{KeyGroup, KeyGroups};
use weir_engine::state::{decode_state, encode_state, KeyedState, StateError, StateStats};

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

/// Open windows of one window step.
pub struct WindowState {
    name: String,
    kind: WindowKind,
    aggregates: Arc<Aggregates>,
    key_groups: KeyGroups,
    /// Tumbling and sliding: window end → key → accumulators.
    fixed: BTreeMap<i64, HashMap<Row, Vec<Acc>>>,
    /// Sessions: key → its sessions, sorted and disjoint.
    sessions: HashMap<Row, Vec<Session>>,
    /// Sessions by end, to close them in order.
    timers: BTreeSet<(i64, Row)>,
    /// Emptied key maps of closed windows, kept with their capacity: the next window reuses
    /// one instead of growing a new map through fresh memory.
    spare_maps: Vec<HashMap<Row, Vec<Acc>>>,
    /// Reused buffer for sorting a closing window's keys.
    sorting: Vec<(u64, Row, Vec<Acc>)>,
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
        self.kind.for_each_window(ts, |_start, end| {
            if !accept(end) {
                return;
            }
            accepted = true;
            let keys = fixed
                .entry(end)
                .or_insert_with(|| spare.pop().unwrap_or_default());
            match keys.get_mut(&KeyRef(key)) {
                Some(accs) => aggregates.update(accs, row),
                None => {
                    let mut accs = aggregates.init();
                    aggregates.update(&mut accs, row);
                    let key =
                        Row::from_bytes(key.to_vec()).expect("key bytes come from a RowBuilder");
                    keys.insert(key, accs);
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
        self.timers.insert((merged.end, key_row));
        sessions.insert(first, merged);
    }

    /// Removes every window whose end is at most `until` and appends it to `out`, in (end,
    /// key) order.
    pub fn close_until(&mut self, until: i64, out: &mut Vec<ClosedWindow>) {
        let size = self.kind.size().unwrap_or(0);
        while let Some(entry) = self.fixed.first_entry() {
            if *entry.key() > until {
                break;
            }
            let end = *entry.key();
            let mut keys = entry.remove();
            self.sorting
                .extend(keys.drain().map(|(k, a)| (k.sort_prefix(), k, a)));
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
}

impl KeyedState for WindowState {
    fn snapshot_groups(&self) -> Result<Vec<(KeyGroup, Vec<u8>)>, StateError> {
        let mut groups: BTreeMap<KeyGroup, GroupSnapshot> = BTreeMap::new();
        for (end, keys) in &self.fixed {
            for (key, accs) in keys {
                let entry = groups
                    .entry(self.group_of(key))
                    .or_insert_with(|| GroupSnapshot::Fixed(Vec::new()));
                if let GroupSnapshot::Fixed(list) = entry {
                    list.push((*end, key.clone(), accs.clone()));
                }
            }
        }
        for (key, sessions) in &self.sessions {
            let entry = groups
                .entry(self.group_of(key))
                .or_insert_with(|| GroupSnapshot::Sessions(Vec::new()));
            if let GroupSnapshot::Sessions(list) = entry {
                list.push((key.clone(), sessions.clone()));
            }
        }
        groups
            .into_iter()
            .map(|(group, mut snapshot)| {
                // Hash-map order must not leak into the bytes: same state, same snapshot.
                match &mut snapshot {
                    GroupSnapshot::Fixed(list) => {
                        list.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)))
                    }
                    GroupSnapshot::Sessions(list) => list.sort_unstable_by(|a, b| a.0.cmp(&b.0)),
                }
                Ok((group, encode_state(&self.name, group, &snapshot)?))
            })
            .collect()
    }

    fn restore_group(&mut self, group: KeyGroup, bytes: &[u8]) -> Result<(), StateError> {
        match decode_state::<GroupSnapshot>(&self.name, group, bytes)? {
            GroupSnapshot::Fixed(list) => {
                for (end, key, accs) in list {
                    self.fixed.entry(end).or_default().insert(key, accs);
                }
            }
            GroupSnapshot::Sessions(list) => {
                for (key, sessions) in list {
                    for s in &sessions {
                        self.timers.insert((s.end, key.clone()));
                    }
                    self.sessions.insert(key, sessions);
                }
            }
        }
        Ok(())
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
}
