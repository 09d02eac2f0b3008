//! The threshold rule: too many (or too much) per key in a trailing event-time window.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use weir_engine::data::Row;
use weir_engine::event::Event;

use super::{event_id, Alert, AlertBuilder};
use crate::aggregate::ExactSum;
use crate::expr::Expr;
use crate::ordered::{cleanup_timer, KeyState, KeyedProcess};

/// A threshold rule: per key, an alert when an event makes the matching events in
/// `(ts - over, ts]` number more than `count_above` and/or sum (of `sum_of`) to more than
/// `sum_above` — both when both are given.
#[derive(Clone, Debug)]
pub struct Threshold {
    /// Number of key columns (the alert's first columns).
    pub keys: usize,
    /// Window length, ms.
    pub over: i64,
    /// Alert when the count exceeds this.
    pub count_above: Option<i64>,
    /// What is summed, and the sum to exceed.
    pub sum: Option<(Expr, f64)>,
    /// Only events for which this holds are counted.
    pub condition: Option<Expr>,
    /// The id column of the events.
    pub id_column: Option<usize>,
    alerts: AlertBuilder,
}

impl Threshold {
    /// A rule over `keys` key columns.
    pub fn new(
        keys: usize,
        over: i64,
        count_above: Option<i64>,
        sum: Option<(Expr, f64)>,
        condition: Option<Expr>,
        id_column: Option<usize>,
    ) -> Self {
        let alerts = AlertBuilder::new(keys, sum.is_some());
        Threshold {
            keys,
            over,
            count_above,
            sum,
            condition,
            id_column,
            alerts,
        }
    }

    fn exceeded(&self, state: &WindowCount) -> bool {
        self.count_above
            .is_none_or(|t| state.events.len() as i64 > t)
            && self
                .sum
                .as_ref()
                .is_none_or(|(_, limit)| state.sum.value() > *limit)
    }

    /// Drops events that left the window `(now - over, now]`; re-arms when the condition
    /// no longer holds.
    fn evict(&self, state: &mut WindowCount, now: i64) {
        while let Some(front) = state.events.front() {
            if front.ts > now.saturating_sub(self.over) {
                break;
            }
            if self.sum.is_some() {
                state.sum.add(-front.value);
            }
            state.events.pop_front();
        }
        if !self.exceeded(state) {
            state.fired = false;
        }
    }
}

/// One counted event.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Counted {
    ts: i64,
    id: String,
    value: f64,
}

/// Per key: the events in the window, their sum, and whether the rule has fired since the
/// condition last failed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WindowCount {
    events: VecDeque<Counted>,
    sum: ExactSum,
    fired: bool,
}

impl KeyState for WindowCount {
    fn entries(&self) -> usize {
        self.events.len()
    }
}

impl KeyedProcess for Threshold {
    type KeyState = WindowCount;

    fn on_records(
        &mut self,
        key: &Row,
        ts: i64,
        _side: usize,
        rows: &[Row],
        state: &mut WindowCount,
        out: &mut Vec<Event>,
    ) {
        for row in rows {
            if self.condition.as_ref().is_some_and(|c| !c.matches(row)) {
                continue;
            }
            self.evict(state, ts);
            let value = match &self.sum {
                Some((expr, _)) => expr.eval(row).as_f64().unwrap_or(0.0),
                None => 0.0,
            };
            if self.sum.is_some() {
                state.sum.add(value);
            }
            state.events.push_back(Counted {
                ts,
                id: event_id(row, self.id_column),
                value,
            });
            if self.exceeded(state) && !state.fired {
                state.fired = true;
                let alert = Alert {
                    ts,
                    count: state.events.len() as i64,
                    sum: self.sum.as_ref().map(|_| state.sum.value()),
                    first_ts: state.events.front().map_or(ts, |e| e.ts),
                    last_ts: ts,
                    ids: &mut state.events.iter().map(|e| e.id.as_str()),
                };
                out.push(self.alerts.alert(key, alert));
            }
        }
    }

    fn on_timer(&mut self, _key: &Row, t: i64, state: &mut WindowCount, _out: &mut Vec<Event>) {
        self.evict(state, t);
    }

    fn next_timer(&self, state: &WindowCount) -> Option<i64> {
        if state.fired {
            // Fired: the rule re-arms at the exact moment the count falls back, which can
            // only happen as the oldest event leaves the window.
            state.events.front().map(|e| e.ts.saturating_add(self.over))
        } else {
            // Armed: evicting late changes nothing (events evict on arrival); drop the state
            // once every event has left the window.
            let last = state.events.back()?.ts;
            Some(cleanup_timer(last.saturating_add(self.over), self.over))
        }
    }
}
