//! Interval joins: `right.ts` within `[left.ts - within, left.ts + within]`.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use weir_engine::data::Row;
use weir_engine::event::Event;

use super::{JoinType, Joined};
use crate::ordered::{cleanup_timer, KeyState, KeyedProcess};

/// An interval join. Each pair is emitted once, when the later of its two records is
/// processed, at that record's event time; an unmatched left record of a left outer join is
/// emitted with NULLs at `left.ts + within`, when no right record can match it any more.
#[derive(Clone, Debug)]
pub struct IntervalJoin {
    /// Inner or left outer.
    pub join_type: JoinType,
    /// The interval half-width, ms.
    pub within: i64,
    joined: Joined,
}

impl IntervalJoin {
    /// A join of rows with `left` and `right` columns.
    pub fn new(join_type: JoinType, within: i64, left: usize, right: usize) -> Self {
        IntervalJoin {
            join_type,
            within,
            joined: Joined::new(0, left, right),
        }
    }
}

/// Per key: the records of both sides that can still match.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Buffers {
    /// Left records with whether they matched.
    left: VecDeque<(i64, Row, bool)>,
    right: VecDeque<(i64, Row)>,
}

impl KeyState for Buffers {
    fn entries(&self) -> usize {
        self.left.len() + self.right.len()
    }

    fn prefetch(&self) {
        // Both sides' oldest records (evicted or matched first) and newest.
        let ends = [
            self.left.front().map(|r| &r.1),
            self.left.back().map(|r| &r.1),
        ];
        for row in ends.into_iter().flatten() {
            weir_engine::prefetch::prefetch(row);
        }
        let ends = [
            self.right.front().map(|r| &r.1),
            self.right.back().map(|r| &r.1),
        ];
        for row in ends.into_iter().flatten() {
            weir_engine::prefetch::prefetch(row);
        }
    }
}

impl KeyedProcess for IntervalJoin {
    type KeyState = Buffers;

    fn on_records(
        &mut self,
        _key: &Row,
        ts: i64,
        side: usize,
        rows: &[Row],
        state: &mut Buffers,
        out: &mut Vec<Event>,
    ) {
        // Drop what can no longer match (left outer joins emitted theirs at their timers).
        self.evict(state, ts.saturating_sub(1), out);
        if side == 0 {
            for row in rows {
                let mut matched = false;
                for (_, right) in &state.right {
                    out.push(Event::new(ts, ts, self.joined.row(row, Some(right))));
                    matched = true;
                }
                state.left.push_back((ts, row.clone(), matched));
            }
        } else {
            for row in rows {
                for (_, left, matched) in state.left.iter_mut() {
                    out.push(Event::new(ts, ts, self.joined.row(left, Some(row))));
                    *matched = true;
                }
                state.right.push_back((ts, row.clone()));
            }
        }
    }

    fn on_timer(&mut self, _key: &Row, t: i64, state: &mut Buffers, out: &mut Vec<Event>) {
        self.evict(state, t, out);
    }

    fn next_timer(&self, state: &Buffers) -> Option<i64> {
        if let (JoinType::LeftOuter, Some((ts, _, _))) = (self.join_type, state.left.front()) {
            // An unmatched left record is emitted the moment nothing can match it.
            return Some(ts.saturating_add(self.within));
        }
        let left = state.left.back().map(|(ts, _, _)| *ts);
        let right = state.right.back().map(|(ts, _)| *ts);
        let newest = left.max(right)?;
        Some(cleanup_timer(
            newest.saturating_add(self.within),
            self.within,
        ))
    }
}

impl IntervalJoin {
    /// Drops the records no record after `t` can match; emits unmatched left records of a left
    /// outer join.
    fn evict(&mut self, state: &mut Buffers, t: i64, out: &mut Vec<Event>) {
        let horizon = t.saturating_sub(self.within);
        while state.left.front().is_some_and(|(ts, _, _)| *ts <= horizon) {
            let (ts, row, matched) = state.left.pop_front().expect("non-empty");
            if !matched && self.join_type == JoinType::LeftOuter {
                let at = ts.saturating_add(self.within);
                out.push(Event::new(at, at, self.joined.row(&row, None)));
            }
        }
        while state.right.front().is_some_and(|(ts, _)| *ts <= horizon) {
            state.right.pop_front();
        }
    }
}
