//! The threshold rule: too many (or too much) per key in a trailing event-time window.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weir_engine::data::{DataType, Row, SchemaRef, Value};
use weir_engine::event::Event;

use super::{event_id, Alert, AlertBuilder, EventId};
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
    /// False while a rule update has switched the rule off: events are still counted, no
    /// alert fires.
    pub enabled: bool,
    /// Where rule updates come from, if anywhere.
    pub updates: Option<Arc<RuleUpdates>>,
    alerts: AlertBuilder,
}

/// Rule updates as data: rows of a control stream, each changing the parameters of the rule
/// it names from its event time on. Null columns leave a parameter as it is.
#[derive(Debug)]
pub struct RuleUpdates {
    /// The rule's name in the `rule` column.
    pub name: String,
    /// Column of the rule name.
    pub rule: usize,
    /// Column of a new `threshold` (int).
    pub threshold: Option<usize>,
    /// Column of a new `sum_threshold` (float).
    pub sum_threshold: Option<usize>,
    /// Column of a new `where` condition (SQL text; empty for none).
    pub condition: Option<usize>,
    /// Column of `enabled` (bool).
    pub enabled: Option<usize>,
    /// The schema the rule's events have, to compile conditions against.
    pub input: SchemaRef,
}

/// The parameters a rule update can change, as checkpointed.
#[derive(Serialize, Deserialize)]
struct Parameters {
    count_above: Option<i64>,
    sum_above: Option<f64>,
    condition: Option<String>,
    enabled: bool,
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
            enabled: true,
            updates: None,
            alerts,
        }
    }

    /// The same rule, its parameters changed by `updates` while it runs.
    pub fn with_updates(mut self, updates: RuleUpdates) -> Self {
        self.updates = Some(Arc::new(updates));
        self
    }

    fn apply(&mut self, row: &Row, updates: &RuleUpdates) {
        if row.get_str(updates.rule) != Some(updates.name.as_str()) {
            return;
        }
        if let Some(t) = updates.threshold.and_then(|c| row.get_i64(c)) {
            self.count_above = Some(t);
        }
        if let Some(limit) = updates.sum_threshold.and_then(|c| row.get_f64(c)) {
            if let Some((_, l)) = &mut self.sum {
                *l = limit;
            }
        }
        if let Some(text) = updates.condition.and_then(|c| row.get_str(c)) {
            if text.trim().is_empty() {
                self.condition = None;
            } else {
                match Expr::compile(text, &updates.input) {
                    Ok(e) if matches!(e.dtype(), Some(DataType::Bool) | None) => {
                        self.condition = Some(e)
                    }
                    Ok(_) => {
                        tracing::warn!(rule = %updates.name, "rule update ignored: `{text}` is not a condition")
                    }
                    Err(e) => {
                        tracing::warn!(rule = %updates.name, "rule update ignored: `{text}`: {e}")
                    }
                }
            }
        }
        if let Some(enabled) = updates.enabled.and_then(|c| match row.get(c) {
            Value::Bool(b) => Some(b),
            _ => None,
        }) {
            self.enabled = enabled;
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
    id: EventId,
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

    fn prefetch(&self) {
        // The oldest event (evicted next) and the newest (appended after).
        if let Some(oldest) = self.events.front() {
            weir_engine::prefetch::prefetch(oldest);
        }
        if let Some(newest) = self.events.back() {
            weir_engine::prefetch::prefetch(newest);
        }
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
            if self.exceeded(state) && !state.fired && self.enabled {
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

    fn on_control(&mut self, _ts: i64, rows: &[Row]) {
        let Some(updates) = self.updates.clone() else {
            return;
        };
        for row in rows {
            self.apply(row, &updates);
        }
    }

    fn control_state(&self) -> Vec<u8> {
        let parameters = Parameters {
            count_above: self.count_above,
            sum_above: self.sum.as_ref().map(|(_, l)| *l),
            condition: self.condition.as_ref().map(|e| e.text().to_string()),
            enabled: self.enabled,
        };
        bincode::serialize(&parameters).expect("plain data serialises")
    }

    fn restore_control(&mut self, bytes: &[u8]) {
        let Ok(p) = bincode::deserialize::<Parameters>(bytes) else {
            tracing::warn!("rule parameters in the checkpoint are damaged: keeping the spec's");
            return;
        };
        self.count_above = p.count_above;
        if let (Some((_, l)), Some(limit)) = (&mut self.sum, p.sum_above) {
            *l = limit;
        }
        if let Some(updates) = &self.updates {
            self.condition = p
                .condition
                .and_then(|text| Expr::compile(&text, &updates.input).ok());
        }
        self.enabled = p.enabled;
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
