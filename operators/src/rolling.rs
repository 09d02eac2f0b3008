//! Rolling aggregates (`rolling:` steps): for every record, aggregates over the same key's
//! records in the trailing event-time range `(ts - over, ts]`, emitted with the record.
//!
//! Records are processed in event-time order (the [ordered](crate::ordered) engine), so a
//! record's aggregates cover exactly the records at or before its event time — all records of
//! the same event time included (SQL's `RANGE` frame). Count, sum and average are updated
//! and retracted in O(1) (float sums exactly, see [`ExactSum`]); min and max keep monotonic
//! deques, O(1) amortised. A key's records are evicted as the watermark moves past their
//! range, and a key with none left is dropped.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weir_engine::data::{DataType, Row, RowBuilder, Value};
use weir_engine::event::Event;

use crate::aggregate::{Aggregates, ExactSum};
use crate::expr::AggregateFunction;
use crate::ordered::{cleanup_timer, KeyState, KeyedProcess};

/// A rolling aggregate step.
#[derive(Clone, Debug)]
pub struct Rolling {
    /// The trailing range, ms.
    pub over: i64,
    /// Columns of the input (copied to the output first).
    pub input_columns: usize,
    /// The aggregates, compiled against the input.
    pub aggregates: Arc<Aggregates>,
    output: RowBuilder,
}

impl Rolling {
    /// Rolling `aggregates` over `over` ms, on rows of `input_columns` columns.
    pub fn new(over: i64, input_columns: usize, aggregates: Arc<Aggregates>) -> Self {
        let n = aggregates.len();
        Rolling {
            over,
            input_columns,
            output: RowBuilder::new(input_columns + n),
            aggregates,
        }
    }

    fn fresh_columns(&self) -> Vec<RollColumn> {
        self.aggregates
            .list()
            .iter()
            .map(|a| {
                let values = match a.call.argument.as_ref().and_then(|e| e.dtype()) {
                    None => Values::Star,
                    Some(DataType::Float) => Values::Float(VecDeque::new()),
                    Some(DataType::String) => Values::Str(VecDeque::new()),
                    Some(_) => Values::Int(VecDeque::new()),
                };
                RollColumn {
                    values,
                    n: 0,
                    sum_int: 0,
                    sum_float: ExactSum::default(),
                    best: VecDeque::new(),
                }
            })
            .collect()
    }

    /// Removes the records that left `(now - over, now]`.
    fn evict(&self, state: &mut Trailing, now: i64) {
        let horizon = now.saturating_sub(self.over);
        while state.ts.front().is_some_and(|ts| *ts <= horizon) {
            state.ts.pop_front();
            let seq = state.front_seq;
            state.front_seq += 1;
            for column in &mut state.columns {
                column.pop_front(seq);
            }
        }
        if state.ts.is_empty() {
            state.columns.clear();
        }
    }

    fn add(&self, state: &mut Trailing, ts: i64, row: &Row) {
        if state.columns.is_empty() {
            state.columns = self.fresh_columns();
        }
        let seq = state.front_seq + state.ts.len() as u64;
        state.ts.push_back(ts);
        for (agg, column) in self.aggregates.list().iter().zip(&mut state.columns) {
            let value = agg.call.argument.as_ref().map(|arg| arg.eval(row));
            let extreme = match agg.call.function {
                AggregateFunction::Min => Some(false),
                AggregateFunction::Max => Some(true),
                _ => None,
            };
            column.push_back(value, seq, extreme, state.front_seq);
        }
    }

    /// `row` followed by the current aggregates.
    fn emit(&mut self, state: &Trailing, ts: i64, row: &Row) -> Event {
        for c in 0..self.input_columns {
            self.output.copy_from(c, row, c);
        }
        for (i, (agg, column)) in self
            .aggregates
            .list()
            .iter()
            .zip(&state.columns)
            .enumerate()
        {
            let col = self.input_columns + i;
            let out = &mut self.output;
            match (agg.call.function, &column.values) {
                (AggregateFunction::Count, Values::Star) => out.set_int(col, state.ts.len() as i64),
                (AggregateFunction::Count, _) => out.set_int(col, column.n),
                (_, _) if column.n == 0 => out.set_null(col),
                (AggregateFunction::Sum, Values::Float(_)) => {
                    out.set_float(col, column.sum_float.value())
                }
                (AggregateFunction::Sum, _) => out.set_int(
                    col,
                    column.sum_int.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
                ),
                (AggregateFunction::Avg, Values::Float(_)) => {
                    out.set_float(col, column.sum_float.value() / column.n as f64)
                }
                (AggregateFunction::Avg, _) => {
                    out.set_float(col, column.sum_int as f64 / column.n as f64)
                }
                (AggregateFunction::Min | AggregateFunction::Max, values) => {
                    let best = *column.best.front().expect("n > 0");
                    let at = (best - state.front_seq) as usize;
                    match values {
                        Values::Int(v) if agg.call.output == DataType::Timestamp => {
                            out.set_ts(col, v[at].expect("only non-null values are ranked"))
                        }
                        Values::Int(v) => out.set_int(col, v[at].expect("ranked")),
                        Values::Float(v) => out.set_float(col, v[at].expect("ranked")),
                        Values::Str(v) => out.set_str(col, v[at].as_deref().expect("ranked")),
                        Values::Star => out.set_null(col),
                    }
                }
            }
        }
        Event::new(ts, ts, self.output.finish())
    }
}

/// The argument values of one aggregate over the records in range, oldest first: contiguous
/// per aggregate, so that evicting the oldest record reads memory the cache has seen.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Values {
    /// `count(*)`: no argument.
    Star,
    Int(VecDeque<Option<i64>>),
    Float(VecDeque<Option<f64>>),
    Str(VecDeque<Option<String>>),
}

/// One rolling aggregate: its values in range and running state.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RollColumn {
    values: Values,
    /// Non-null values in range.
    n: i64,
    sum_int: i128,
    sum_float: ExactSum,
    /// min/max: sequence numbers of the records that can still become the extreme, best first.
    best: VecDeque<u64>,
}

impl RollColumn {
    fn push_back(&mut self, value: Option<Value<'_>>, seq: u64, extreme: Option<bool>, front: u64) {
        let present = match (&mut self.values, value) {
            (Values::Star, _) => return,
            (Values::Int(v), Some(Value::Int(x) | Value::Ts(x))) => {
                v.push_back(Some(x));
                self.sum_int += x as i128;
                true
            }
            (Values::Float(v), Some(x)) if x.as_f64().is_some() => {
                let x = x.as_f64().expect("checked");
                v.push_back(Some(x));
                self.sum_float.add(x);
                true
            }
            (Values::Str(v), Some(Value::Str(x))) => {
                v.push_back(Some(x.into_owned()));
                true
            }
            (Values::Int(v), _) => {
                v.push_back(None);
                false
            }
            (Values::Float(v), _) => {
                v.push_back(None);
                false
            }
            (Values::Str(v), _) => {
                v.push_back(None);
                false
            }
        };
        if !present {
            return;
        }
        self.n += 1;
        let Some(is_max) = extreme else { return };
        // Drop the candidates the new value beats for as long as it stays in range.
        while let Some(&back) = self.best.back() {
            let at = (back - front) as usize;
            let new = self.len() - 1;
            let ord = match &self.values {
                Values::Int(v) => v[at].cmp(&v[new]),
                Values::Float(v) => v[at]
                    .unwrap_or(f64::NAN)
                    .total_cmp(&v[new].unwrap_or(f64::NAN)),
                Values::Str(v) => v[at].cmp(&v[new]),
                Values::Star => Ordering::Equal,
            };
            let beaten = match ord {
                Ordering::Less => is_max,
                Ordering::Greater => !is_max,
                Ordering::Equal => true,
            };
            if !beaten {
                break;
            }
            self.best.pop_back();
        }
        self.best.push_back(seq);
    }

    fn len(&self) -> usize {
        match &self.values {
            Values::Star => 0,
            Values::Int(v) => v.len(),
            Values::Float(v) => v.len(),
            Values::Str(v) => v.len(),
        }
    }

    /// Removes the oldest record, sequence number `seq`.
    fn pop_front(&mut self, seq: u64) {
        let present = match &mut self.values {
            Values::Star => return,
            Values::Int(v) => match v.pop_front().flatten() {
                Some(x) => {
                    self.sum_int -= x as i128;
                    true
                }
                None => false,
            },
            Values::Float(v) => match v.pop_front().flatten() {
                Some(x) => {
                    self.sum_float.add(-x);
                    true
                }
                None => false,
            },
            Values::Str(v) => v.pop_front().flatten().is_some(),
        };
        if present {
            self.n -= 1;
        }
        if self.best.front() == Some(&seq) {
            self.best.pop_front();
        }
    }
}

/// Per key: the event times of the records in range and each aggregate's values.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Trailing {
    ts: VecDeque<i64>,
    /// Sequence number of the oldest record in range.
    front_seq: u64,
    columns: Vec<RollColumn>,
}

impl KeyState for Trailing {
    fn entries(&self) -> usize {
        self.ts.len()
    }
}

impl KeyedProcess for Rolling {
    type KeyState = Trailing;

    fn on_records(
        &mut self,
        _key: &Row,
        ts: i64,
        _side: usize,
        rows: &[Row],
        state: &mut Trailing,
        out: &mut Vec<Event>,
    ) {
        self.evict(state, ts);
        for row in rows {
            self.add(state, ts, row);
        }
        for row in rows {
            let event = self.emit(state, ts, row);
            out.push(event);
        }
    }

    fn on_timer(&mut self, _key: &Row, t: i64, state: &mut Trailing, _out: &mut Vec<Event>) {
        self.evict(state, t);
    }

    fn next_timer(&self, state: &Trailing) -> Option<i64> {
        // Records evict on arrival; the timer only drops a key every record has left.
        let last = state.ts.back()?;
        Some(cleanup_timer(last.saturating_add(self.over), self.over))
    }
}
