//! Sequence and absence rules: `first` followed (or not) by `then` within a duration, per key.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use weir_engine::data::Row;
use weir_engine::event::Event;

use super::{event_id, Alert, AlertBuilder, EventId};
use crate::expr::Expr;
use crate::ordered::{KeyState, KeyedProcess};

/// Which pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatternKind {
    /// Alert when `then` follows `first` within the duration.
    Sequence,
    /// Alert when `then` does not follow `first` within the duration.
    Absence,
}

/// A two-event pattern per key. An event matching `then` at `ts` follows every pending event
/// matching `first` at `ts - within ..= ts` (the same event time included; an event matching
/// both conditions does not follow itself). A sequence alert consumes the events it
/// completes; an absence is cancelled by any following `then`.
#[derive(Clone, Debug)]
pub struct Pattern {
    /// Sequence or absence.
    pub kind: PatternKind,
    /// Number of key columns.
    pub keys: usize,
    /// The opening event.
    pub first: Expr,
    /// The following event.
    pub then: Expr,
    /// How long after `first` a `then` counts, ms.
    pub within: i64,
    /// The id column of the events.
    pub id_column: Option<usize>,
    alerts: AlertBuilder,
}

impl Pattern {
    /// A pattern rule over `keys` key columns.
    pub fn new(
        kind: PatternKind,
        keys: usize,
        first: Expr,
        then: Expr,
        within: i64,
        id_column: Option<usize>,
    ) -> Self {
        Pattern {
            kind,
            keys,
            first,
            then,
            within,
            id_column,
            alerts: AlertBuilder::new(keys, false),
        }
    }
}

/// One event waiting for its follower.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Opened {
    ts: i64,
    id: EventId,
}

/// Per key: the `first` events still waiting, oldest first.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Waiting {
    opened: VecDeque<Opened>,
}

impl KeyState for Waiting {
    fn entries(&self) -> usize {
        self.opened.len()
    }
}

impl KeyedProcess for Pattern {
    type KeyState = Waiting;

    fn on_records(
        &mut self,
        key: &Row,
        ts: i64,
        _side: usize,
        rows: &[Row],
        state: &mut Waiting,
        out: &mut Vec<Event>,
    ) {
        // Openers whose deadline passed before `ts` (their timers fire first; this keeps the
        // invariant when a cleanup timer stands in for them).
        while state
            .opened
            .front()
            .is_some_and(|o| o.ts.saturating_add(self.within) < ts)
        {
            let opened = state.opened.pop_front().expect("non-empty");
            debug_assert!(
                self.kind == PatternKind::Sequence,
                "absences fire at deadlines: {}",
                opened.ts
            );
        }
        // Openers of this event time, by row: they count for followers at the same time.
        let mut fresh: Vec<(usize, Opened)> = rows
            .iter()
            .enumerate()
            .filter(|(_, row)| self.first.matches(row))
            .map(|(i, row)| {
                let id = event_id(row, self.id_column);
                (i, Opened { ts, id })
            })
            .collect();
        for (i, row) in rows.iter().enumerate() {
            if !self.then.matches(row) {
                continue;
            }
            let others = fresh.iter().filter(|(j, _)| *j != i).count();
            if state.opened.is_empty() && others == 0 {
                continue;
            }
            if self.kind == PatternKind::Sequence {
                let follower = event_id(row, self.id_column);
                let mut ids = state
                    .opened
                    .iter()
                    .map(|o| o.id.as_str())
                    .chain(
                        fresh
                            .iter()
                            .filter(|(j, _)| *j != i)
                            .map(|(_, o)| o.id.as_str()),
                    )
                    .chain(std::iter::once(follower.as_str()));
                let first_ts = state.opened.front().map_or(ts, |o| o.ts);
                let alert = Alert {
                    ts,
                    count: (state.opened.len() + others + 1) as i64,
                    sum: None,
                    first_ts,
                    last_ts: ts,
                    ids: &mut ids,
                };
                out.push(self.alerts.alert(key, alert));
            }
            state.opened.clear();
            fresh.retain(|(j, _)| *j == i);
        }
        state.opened.extend(fresh.into_iter().map(|(_, o)| o));
    }

    fn on_timer(&mut self, key: &Row, t: i64, state: &mut Waiting, out: &mut Vec<Event>) {
        while let Some(front) = state.opened.front() {
            let deadline = front.ts.saturating_add(self.within);
            if deadline > t {
                break;
            }
            let opened = state.opened.pop_front().expect("non-empty");
            if self.kind == PatternKind::Absence {
                let alert = Alert {
                    ts: deadline,
                    count: 1,
                    sum: None,
                    first_ts: opened.ts,
                    last_ts: opened.ts,
                    ids: &mut std::iter::once(opened.id.as_str()),
                };
                out.push(self.alerts.alert(key, alert));
            }
        }
    }

    fn next_timer(&self, state: &Waiting) -> Option<i64> {
        // The deadline of the oldest opener: after it, no follower can match it.
        state
            .opened
            .front()
            .map(|o| o.ts.saturating_add(self.within))
    }
}
