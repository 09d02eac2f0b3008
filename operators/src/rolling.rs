//! Rolling aggregates (`rolling:` steps): for every record, aggregates over the same key's
//! records in the trailing event-time range `(ts - over, ts]`, emitted with the record.
//!
//! Records are processed in event-time order (the [ordered](crate::ordered) engine), so a
//! record's aggregates cover exactly the records at or before its event time — all records of
//! the same event time included (SQL's `RANGE` frame). Count, sum and average are updated
//! and retracted in O(1) (float sums exactly, see [`ExactSum`]); min and max keep monotonic
//! deques, O(1) amortised. A key's records are evicted as the watermark moves past their
//! range, and a key with none left is dropped.
//!
//! Per key, the records in range live in one row-major ring: event time, null bits, then one
//! word per distinct numeric argument (`avg(t)` and `max(t)` share `t`). Evicting the oldest
//! record reads one place in memory instead of one deque per aggregate — with thousands of
//! keys their state is cold, and every extra deque was another cache miss.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weir_engine::data::{DataType, Row, RowBuilder, Value};
use weir_engine::event::Event;

use crate::aggregate::{Aggregates, ExactSum};
use crate::expr::{AggregateFunction, Expr};
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
    /// The distinct arguments of the aggregates, evaluated once per record.
    arguments: Vec<Argument>,
    /// Per aggregate: its argument (index into `arguments`), `None` for `count(*)`.
    argument_of: Vec<Option<usize>>,
    /// Words per record in the ring.
    stride: usize,
    string_arguments: usize,
    output: RowBuilder,
}

/// How an argument's values are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Integers and timestamps, as `i64` in the ring.
    Int,
    /// Any number, as `f64` bits in the ring.
    Float,
    /// Strings, in a deque of their own.
    Str,
}

#[derive(Clone, Debug)]
struct Argument {
    expr: Expr,
    kind: Kind,
    /// The word after the null bits (Int, Float), or the string deque (Str).
    slot: usize,
    /// Where the value sits within a record's words: after the event time and the null
    /// bits (Int, Float).
    word: usize,
}

impl Rolling {
    /// Rolling `aggregates` over `over` ms, on rows of `input_columns` columns.
    pub fn new(over: i64, input_columns: usize, aggregates: Arc<Aggregates>) -> Self {
        let n = aggregates.len();
        let mut arguments: Vec<Argument> = Vec::new();
        let mut argument_of = Vec::with_capacity(n);
        let (mut words, mut strings) = (0, 0);
        for a in aggregates.list() {
            let Some(expr) = a.call.argument.as_ref() else {
                argument_of.push(None);
                continue;
            };
            let kind = match expr.dtype() {
                Some(DataType::Float) => Kind::Float,
                Some(DataType::String) => Kind::Str,
                _ => Kind::Int,
            };
            let found = arguments
                .iter()
                .position(|g| g.expr.text() == expr.text() && g.kind == kind);
            let index = found.unwrap_or_else(|| {
                let slot = match kind {
                    Kind::Str => {
                        strings += 1;
                        strings - 1
                    }
                    _ => {
                        words += 1;
                        words - 1
                    }
                };
                arguments.push(Argument {
                    expr: expr.clone(),
                    kind,
                    slot,
                    word: 0,
                });
                arguments.len() - 1
            });
            argument_of.push(Some(index));
        }
        let mask_words = arguments.len().div_ceil(64);
        for arg in &mut arguments {
            arg.word = 1 + mask_words + arg.slot;
        }
        Rolling {
            over,
            input_columns,
            output: RowBuilder::new(n),
            aggregates,
            stride: 1 + mask_words + words,
            string_arguments: strings,
            arguments,
            argument_of,
        }
    }

    /// Word `w` of the record `at` places from the oldest.
    #[inline]
    fn word(&self, state: &Trailing, at: usize, w: usize) -> u64 {
        state.ring[at * self.stride + w]
    }

    #[inline]
    fn present(&self, state: &Trailing, at: usize, argument: usize) -> bool {
        self.word(state, at, 1 + argument / 64) & (1 << (argument % 64)) == 0
    }

    /// Orders the values of string argument `argument` of records `a` and `b`.
    fn compare_strings(&self, state: &Trailing, argument: usize, a: usize, b: usize) -> Ordering {
        let strings = &state.strings[self.arguments[argument].slot];
        strings[a].cmp(&strings[b])
    }

    /// Removes the records that left `(now - over, now]`.
    fn evict(&self, state: &mut Trailing, now: i64) {
        let horizon = now.saturating_sub(self.over);
        while state.len > 0 && (state.ring[0] as i64) <= horizon {
            let seq = state.front_seq;
            for (j, argument) in self.argument_of.iter().enumerate() {
                let Some(a) = *argument else { continue };
                if self.present(state, 0, a) {
                    let arg = &self.arguments[a];
                    let agg = &mut state.aggs[j];
                    agg.n -= 1;
                    match arg.kind {
                        Kind::Int => agg.sum_int -= state.ring[arg.word] as i64 as i128,
                        Kind::Float => agg.sum_float.add(-f64::from_bits(state.ring[arg.word])),
                        Kind::Str => {}
                    }
                }
                let agg = &mut state.aggs[j];
                if agg.best.front().map(|b| b.0) == Some(seq) {
                    agg.best.pop_front();
                }
            }
            for _ in 0..self.stride {
                state.ring.pop_front();
            }
            for strings in &mut state.strings {
                strings.pop_front();
            }
            state.front_seq += 1;
            state.len -= 1;
        }
        if state.len == 0 {
            state.aggs.clear();
            state.strings.clear();
        }
    }

    fn add(&self, state: &mut Trailing, ts: i64, row: &Row) {
        if state.aggs.is_empty() {
            state.aggs = vec![AggState::default(); self.argument_of.len()];
            state.strings = vec![VecDeque::new(); self.string_arguments];
        }
        let at = state.len;
        let base = state.ring.len();
        state.ring.push_back(ts as u64);
        state.ring.extend(std::iter::repeat_n(0, self.stride - 1));
        for (i, arg) in self.arguments.iter().enumerate() {
            let value = arg.expr.eval(row);
            let word = match (arg.kind, &value) {
                (Kind::Int, Value::Int(x) | Value::Ts(x)) => Some(*x as u64),
                (Kind::Float, x) => x.as_f64().map(f64::to_bits),
                (Kind::Str, Value::Str(x)) => {
                    state.strings[arg.slot].push_back(Some(x.to_string()));
                    continue;
                }
                (Kind::Str, _) => {
                    state.strings[arg.slot].push_back(None);
                    None
                }
                _ => None,
            };
            match word {
                Some(w) => state.ring[base + arg.word] = w,
                None => state.ring[base + 1 + i / 64] |= 1 << (i % 64),
            }
        }
        state.len += 1;
        let seq = state.front_seq + at as u64;
        for (j, (agg, argument)) in self
            .aggregates
            .list()
            .iter()
            .zip(&self.argument_of)
            .enumerate()
        {
            let Some(a) = *argument else { continue };
            if !self.present(state, at, a) {
                continue;
            }
            let arg = &self.arguments[a];
            // Strings live in their own deques, not in the ring.
            let word = match arg.kind {
                Kind::Str => 0,
                _ => state.ring[base + arg.word],
            };
            {
                let s = &mut state.aggs[j];
                s.n += 1;
                match arg.kind {
                    Kind::Int => s.sum_int += word as i64 as i128,
                    Kind::Float => s.sum_float.add(f64::from_bits(word)),
                    Kind::Str => {}
                }
            }
            let is_max = match agg.call.function {
                AggregateFunction::Min => false,
                AggregateFunction::Max => true,
                _ => continue,
            };
            // Drop the candidates the new value beats for as long as it stays in range.
            while let Some(&(back, back_word)) = state.aggs[j].best.back() {
                let order = match arg.kind {
                    Kind::Int => (back_word as i64).cmp(&(word as i64)),
                    Kind::Float => f64::from_bits(back_word).total_cmp(&f64::from_bits(word)),
                    Kind::Str => {
                        self.compare_strings(state, a, (back - state.front_seq) as usize, at)
                    }
                };
                let beaten = match order {
                    Ordering::Less => is_max,
                    Ordering::Greater => !is_max,
                    Ordering::Equal => true,
                };
                if !beaten {
                    break;
                }
                state.aggs[j].best.pop_back();
            }
            state.aggs[j].best.push_back((seq, word));
        }
    }

    /// `row` followed by the current aggregates.
    fn emit(&mut self, state: &Trailing, ts: i64, row: &Row) -> Event {
        debug_assert_eq!(row.len(), self.input_columns);
        for (i, (agg, argument)) in self
            .aggregates
            .list()
            .iter()
            .zip(&self.argument_of)
            .enumerate()
        {
            let col = i;
            let out = &mut self.output;
            let Some(a) = *argument else {
                out.set_int(col, state.len as i64);
                continue;
            };
            let s = &state.aggs[i];
            let arg = &self.arguments[a];
            match (agg.call.function, arg.kind) {
                (AggregateFunction::Count, _) => out.set_int(col, s.n),
                _ if s.n == 0 => out.set_null(col),
                (AggregateFunction::Sum, Kind::Float) => out.set_float(col, s.sum_float.value()),
                (AggregateFunction::Sum, _) => out.set_int(
                    col,
                    s.sum_int.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
                ),
                (AggregateFunction::Avg, Kind::Float) => {
                    out.set_float(col, s.sum_float.value() / s.n as f64)
                }
                (AggregateFunction::Avg, _) => out.set_float(col, s.sum_int as f64 / s.n as f64),
                (AggregateFunction::Min | AggregateFunction::Max, kind) => {
                    let (best, word) = *s.best.front().expect("n > 0");
                    let at = (best - state.front_seq) as usize;
                    match kind {
                        Kind::Int if agg.call.output == DataType::Timestamp => {
                            out.set_ts(col, word as i64)
                        }
                        Kind::Int => out.set_int(col, word as i64),
                        Kind::Float => out.set_float(col, f64::from_bits(word)),
                        Kind::Str => out
                            .set_str(col, state.strings[arg.slot][at].as_deref().expect("ranked")),
                    }
                }
            }
        }
        Event::new(ts, ts, self.output.finish_after(row))
    }
}

/// One aggregate's running state over the records in range.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct AggState {
    /// Non-null values in range.
    n: i64,
    sum_int: i128,
    sum_float: ExactSum,
    /// min/max: the records that can still become the extreme, best first: sequence number
    /// and value word (kept here, so that comparing and reading the best touch no ring).
    best: VecDeque<(u64, u64)>,
}

/// Per key: the records in range (see the module documentation) and each aggregate's state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Trailing {
    /// Event time, null bits and numeric argument values of each record in range, oldest
    /// first, a fixed number of words per record.
    ring: VecDeque<u64>,
    /// Records in range.
    len: usize,
    /// Sequence number of the oldest record in range.
    front_seq: u64,
    /// Values of each string argument, oldest first.
    strings: Vec<VecDeque<Option<String>>>,
    aggs: Vec<AggState>,
}

impl KeyState for Trailing {
    fn entries(&self) -> usize {
        self.len
    }

    fn prefetch(&self) {
        use weir_engine::prefetch::prefetch;
        // The oldest record (evicted next), the newest (appended after), the aggregates.
        if let Some(oldest) = self.ring.front() {
            prefetch(oldest);
        }
        if let Some(newest) = self.ring.back() {
            prefetch(newest);
        }
        for agg in &self.aggs {
            prefetch(agg);
        }
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
        let newest = state.ring.len().checked_sub(self.stride)?;
        let last = state.ring[newest] as i64;
        Some(cleanup_timer(last.saturating_add(self.over), self.over))
    }
}

#[cfg(test)]
mod tests {
    use weir_engine::data::{Field, Schema};

    use super::*;

    /// Feeds `(ts, t, s, at)` records of one key and returns each output's aggregates.
    fn run(records: &[(i64, Option<f64>, Option<&str>, i64)], over: i64) -> Vec<Vec<String>> {
        let schema = Schema::new(vec![
            Field::new("t", DataType::Float),
            Field::new("s", DataType::String),
            Field::new("at", DataType::Timestamp),
        ])
        .unwrap();
        let aggs = Aggregates::compile(
            [
                ("n", "count(*)"),
                ("avg_t", "avg(t)"),
                ("max_t", "max(t)"),
                ("min_t", "min(t)"),
                ("sum_t", "sum(t)"),
                ("n_t", "count(t)"),
                ("min_s", "min(s)"),
                ("max_s", "max(s)"),
                ("last", "max(at)"),
            ],
            &schema,
        )
        .unwrap();
        let mut rolling = Rolling::new(over, 3, Arc::new(aggs));
        // t is shared by five aggregates, s by two: two numeric words, one string deque.
        assert_eq!((rolling.arguments.len(), rolling.stride), (3, 4));
        let mut state = Trailing::default();
        let mut out = Vec::new();
        let key = Row::from_values(&[Value::Str("k".into())]);
        for &(ts, t, s, at) in records {
            let row = Row::from_values(&[
                t.map_or(Value::Null, Value::Float),
                s.map_or(Value::Null, |s| Value::Str(s.into())),
                Value::Ts(at),
            ]);
            rolling.on_records(&key, ts, 0, &[row], &mut state, &mut out);
        }
        assert_eq!(state.entries(), state.ring.len() / rolling.stride);
        out.iter()
            .map(|e| (3..12).map(|c| format!("{:?}", e.row.get(c))).collect())
            .collect()
    }

    #[test]
    fn floats_strings_nulls_and_timestamps_roll_and_retract() {
        let out = run(
            &[
                (10, Some(2.0), Some("m"), 100),
                (20, None, Some("z"), 300),
                (30, Some(5.0), None, 200),
                // 10 leaves the range (ts - 25, ts]: 2.0 and "m" go.
                (35, Some(1.0), Some("a"), 50),
                // Only this one is left.
                (100, None, None, 7),
            ],
            25,
        );
        let row = |i: usize| out[i].join(" ");
        assert_eq!(
            row(0),
            "Int(1) Float(2.0) Float(2.0) Float(2.0) Float(2.0) Int(1) Str(\"m\") Str(\"m\") Ts(100)"
        );
        assert_eq!(
            row(1),
            "Int(2) Float(2.0) Float(2.0) Float(2.0) Float(2.0) Int(1) Str(\"m\") Str(\"z\") Ts(300)"
        );
        assert_eq!(
            row(2),
            "Int(3) Float(3.5) Float(5.0) Float(2.0) Float(7.0) Int(2) Str(\"m\") Str(\"z\") Ts(300)"
        );
        assert_eq!(
            row(3),
            "Int(3) Float(3.0) Float(5.0) Float(1.0) Float(6.0) Int(2) Str(\"a\") Str(\"z\") Ts(300)"
        );
        assert_eq!(row(4), "Int(1) Null Null Null Null Int(0) Null Null Ts(7)");
    }

    #[test]
    fn string_aggregates_alone_keep_no_numeric_words() {
        // A ring of event time and null bits only: reading a word for a string argument
        // indexed past the record.
        let schema = Schema::new(vec![Field::new("s", DataType::String)]).unwrap();
        let aggs = Aggregates::compile(
            [("lo", "min(s)"), ("hi", "max(s)"), ("n", "count(s)")],
            &schema,
        )
        .unwrap();
        let mut rolling = Rolling::new(10, 1, Arc::new(aggs));
        assert_eq!(rolling.stride, 2);
        let (mut state, mut out) = (Trailing::default(), Vec::new());
        let key = Row::from_values(&[]);
        for (ts, s) in [(1, Some("b")), (2, None), (5, Some("a")), (12, Some("c"))] {
            let row = Row::from_values(&[s.map_or(Value::Null, |s| Value::Str(s.into()))]);
            rolling.on_records(&key, ts, 0, &[row], &mut state, &mut out);
        }
        let got: Vec<String> = out
            .iter()
            .map(|e| format!("{:?} {:?} {:?}", e.row.get(1), e.row.get(2), e.row.get(3)))
            .collect();
        assert_eq!(
            got,
            [
                "Str(\"b\") Str(\"b\") Int(1)",
                "Str(\"b\") Str(\"b\") Int(1)",
                "Str(\"a\") Str(\"b\") Int(2)",
                // (2, 12]: "b" at 1 left.
                "Str(\"a\") Str(\"c\") Int(2)",
            ]
        );
    }
}
