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
    args: RowBuilder,
    output: RowBuilder,
}

impl Rolling {
    /// Rolling `aggregates` over `over` ms, on rows of `input_columns` columns.
    pub fn new(over: i64, input_columns: usize, aggregates: Arc<Aggregates>) -> Self {
        let n = aggregates.len();
        Rolling {
            over,
            input_columns,
            args: RowBuilder::new(n),
            output: RowBuilder::new(input_columns + n),
            aggregates,
        }
    }

    fn fresh_accs(&self) -> Vec<RollAcc> {
        self.aggregates
            .list()
            .iter()
            .map(|a| match a.call.function {
                AggregateFunction::Count => RollAcc::Count(0),
                AggregateFunction::Sum | AggregateFunction::Avg => {
                    match a.call.argument.as_ref().and_then(|e| e.dtype()) {
                        Some(DataType::Float) => RollAcc::SumFloat(ExactSum::default(), 0),
                        _ => RollAcc::SumInt(0, 0),
                    }
                }
                AggregateFunction::Min | AggregateFunction::Max => {
                    RollAcc::Extreme(VecDeque::new())
                }
            })
            .collect()
    }

    /// Removes the records that left `(now - over, now]`.
    fn evict(&self, state: &mut Trailing, now: i64) {
        let horizon = now.saturating_sub(self.over);
        while state.records.front().is_some_and(|(ts, _)| *ts <= horizon) {
            let (_, args) = state.records.pop_front().expect("non-empty");
            let seq = state.front_seq;
            state.front_seq += 1;
            for (i, acc) in state.accs.iter_mut().enumerate() {
                let v = args.get(i);
                match acc {
                    RollAcc::Count(n) => {
                        if self.counts(i, &v) {
                            *n -= 1
                        }
                    }
                    RollAcc::SumInt(sum, n) => {
                        if let Value::Int(x) | Value::Ts(x) = v {
                            *sum -= x as i128;
                            *n -= 1;
                        }
                    }
                    RollAcc::SumFloat(sum, n) => {
                        if let Some(x) = v.as_f64() {
                            sum.add(-x);
                            *n -= 1;
                        }
                    }
                    RollAcc::Extreme(deque) => {
                        if deque.front() == Some(&seq) {
                            deque.pop_front();
                        }
                    }
                }
            }
        }
        if state.records.is_empty() {
            state.accs.clear();
        }
    }

    /// `count(*)` counts every record, `count(x)` the non-null values.
    fn counts(&self, i: usize, v: &Value<'_>) -> bool {
        self.aggregates.list()[i].call.argument.is_none() || !v.is_null()
    }

    fn add(&mut self, state: &mut Trailing, ts: i64, row: &Row) {
        if state.accs.is_empty() {
            state.accs = self.fresh_accs();
        }
        for (i, agg) in self.aggregates.list().iter().enumerate() {
            match &agg.call.argument {
                Some(arg) => self.args.set(i, &arg.eval(row)),
                None => self.args.set_null(i),
            }
        }
        let args = self.args.finish();
        let seq = state.front_seq + state.records.len() as u64;
        for (i, acc) in state.accs.iter_mut().enumerate() {
            let v = args.get(i);
            match acc {
                RollAcc::Count(n) => {
                    if self.aggregates.list()[i].call.argument.is_none() || !v.is_null() {
                        *n += 1
                    }
                }
                RollAcc::SumInt(sum, n) => {
                    if let Value::Int(x) | Value::Ts(x) = v {
                        *sum += x as i128;
                        *n += 1;
                    }
                }
                RollAcc::SumFloat(sum, n) => {
                    if let Some(x) = v.as_f64() {
                        sum.add(x);
                        *n += 1;
                    }
                }
                RollAcc::Extreme(deque) => {
                    if v.is_null() {
                        continue;
                    }
                    let is_max = self.aggregates.list()[i].call.function == AggregateFunction::Max;
                    // Drop values the new one beats for as long as it stays in range.
                    while let Some(&back) = deque.back() {
                        let old = state.records[(back - state.front_seq) as usize].1.get(i);
                        let beaten = match compare(&old, &v) {
                            Ordering::Less => is_max,
                            Ordering::Greater => !is_max,
                            Ordering::Equal => true,
                        };
                        if !beaten {
                            break;
                        }
                        deque.pop_back();
                    }
                    deque.push_back(seq);
                }
            }
        }
        state.records.push_back((ts, args));
    }

    /// `row` followed by the current aggregates.
    fn emit(&mut self, state: &Trailing, ts: i64, row: &Row) -> Event {
        for c in 0..self.input_columns {
            self.output.copy_from(c, row, c);
        }
        for (i, (agg, acc)) in self.aggregates.list().iter().zip(&state.accs).enumerate() {
            let col = self.input_columns + i;
            let is_avg = agg.call.function == AggregateFunction::Avg;
            match acc {
                RollAcc::Count(n) => self.output.set_int(col, *n),
                RollAcc::SumInt(_, 0) | RollAcc::SumFloat(_, 0) => self.output.set_null(col),
                RollAcc::SumInt(sum, n) if is_avg => {
                    self.output.set_float(col, *sum as f64 / *n as f64)
                }
                RollAcc::SumInt(sum, _) => self
                    .output
                    .set_int(col, (*sum).clamp(i64::MIN as i128, i64::MAX as i128) as i64),
                RollAcc::SumFloat(sum, n) if is_avg => {
                    self.output.set_float(col, sum.value() / *n as f64)
                }
                RollAcc::SumFloat(sum, _) => self.output.set_float(col, sum.value()),
                RollAcc::Extreme(deque) => match deque.front() {
                    None => self.output.set_null(col),
                    Some(&seq) => {
                        let v = state.records[(seq - state.front_seq) as usize].1.get(i);
                        self.output.set(col, &v);
                    }
                },
            }
        }
        Event::new(ts, ts, self.output.finish())
    }
}

/// Orders two non-null values of one aggregate's argument type.
fn compare(a: &Value<'_>, b: &Value<'_>) -> Ordering {
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => x.cmp(y),
        (Value::Int(x) | Value::Ts(x), Value::Int(y) | Value::Ts(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => a
            .as_f64()
            .unwrap_or(f64::NAN)
            .total_cmp(&b.as_f64().unwrap_or(f64::NAN)),
    }
}

/// The running state of one rolling aggregate.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum RollAcc {
    /// Records or non-null values in range.
    Count(i64),
    /// Integer sum (and average) with the number of values.
    SumInt(i128, u64),
    /// Float sum (and average) with the number of values.
    SumFloat(ExactSum, u64),
    /// Sequence numbers of the records that can still become the min (max), best first.
    Extreme(VecDeque<u64>),
}

/// Per key: the records in range with their argument values, and the running aggregates.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Trailing {
    records: VecDeque<(i64, Row)>,
    /// Sequence number of `records[0]`.
    front_seq: u64,
    accs: Vec<RollAcc>,
}

impl KeyState for Trailing {
    fn entries(&self) -> usize {
        self.records.len()
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
        let (last, _) = state.records.back()?;
        Some(cleanup_timer(last.saturating_add(self.over), self.over))
    }
}
