//! Aggregate accumulators: count, sum, avg, min, max — mergeable and order-independent.
//!
//! Records reach a window in a different order at different worker counts, and float addition
//! is not associative: `0.1 + 0.2 + 0.3` and `0.3 + 0.2 + 0.1` differ in the last bit. Float
//! sums are therefore accumulated as exact fixed-point integers (`i128` in units of 2⁻⁶⁰), so
//! every order of the same inputs gives bit-identical results. Every float of magnitude 2⁻⁸ or
//! more is a whole number of units, so such sums are exact and their value is the exact sum
//! rounded once to a float (cents print as cents). Values beyond ±2⁶² and sums beyond ±2⁶⁶ (far
//! outside any amount or reading) go to an ordinary float side sum.

use serde::{Deserialize, Serialize};
use weir_engine::data::{DataType, Row, RowBuilder, Schema, Value};

use crate::expr::{parse_aggregate, AggregateCall, AggregateFunction, ExprError};

const FIXED_BITS: u32 = 60;
const FIXED_SCALE: f64 = (1u64 << FIXED_BITS) as f64;
const FIXED_LIMIT: f64 = 4.611_686_018_427_388e18; // 2^62

/// An order-independent float sum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExactSum {
    fixed: i128,
    overflow: f64,
}

impl ExactSum {
    /// Adds a value.
    #[inline]
    pub fn add(&mut self, x: f64) {
        if x.is_finite() && x.abs() < FIXED_LIMIT {
            // Integer part and fraction separately: both convert through i64 (f64 → i128 is a
            // slow library call), and both are exact.
            let whole = x.trunc();
            let fraction = ((x - whole) * FIXED_SCALE).round() as i64;
            let units = ((whole as i64 as i128) << FIXED_BITS) + fraction as i128;
            match self.fixed.checked_add(units) {
                Some(v) => self.fixed = v,
                None => self.overflow += x,
            }
        } else {
            self.overflow += x;
        }
    }

    /// Adds another sum.
    pub fn merge(&mut self, other: &ExactSum) {
        match self.fixed.checked_add(other.fixed) {
            Some(v) => self.fixed = v,
            None => self.overflow += other.fixed as f64 / FIXED_SCALE,
        }
        self.overflow += other.overflow;
    }

    /// The sum as a float.
    pub fn value(&self) -> f64 {
        self.fixed as f64 / FIXED_SCALE + self.overflow
    }
}

/// The running state of one aggregate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Acc {
    /// Rows (or non-null values) counted.
    Count(i64),
    /// Integer sum; `n` non-null values (sum of nothing is NULL).
    SumInt {
        /// Running sum.
        sum: i128,
        /// Non-null values added.
        n: u64,
    },
    /// Float sum.
    SumFloat {
        /// Running sum.
        sum: ExactSum,
        /// Non-null values added.
        n: u64,
    },
    /// Integer average.
    AvgInt {
        /// Running sum.
        sum: i128,
        /// Non-null values added.
        n: u64,
    },
    /// Float average.
    AvgFloat {
        /// Running sum.
        sum: ExactSum,
        /// Non-null values added.
        n: u64,
    },
    /// Minimum or maximum of ints / timestamps.
    ExtremeInt(Option<i64>),
    /// Minimum or maximum of floats.
    ExtremeFloat(Option<f64>),
    /// Minimum or maximum of strings.
    ExtremeStr(Option<String>),
}

/// One aggregate of a step: its output name, call and accumulator kind.
#[derive(Clone, Debug)]
pub struct Aggregate {
    /// Output column name.
    pub name: String,
    /// The parsed call.
    pub call: AggregateCall,
}

/// The aggregates of one step, compiled against the step's input schema.
#[derive(Clone, Debug, Default)]
pub struct Aggregates {
    list: Vec<Aggregate>,
}

impl Aggregates {
    /// Compiles `(name, "sum(amount)")` pairs; errors name the aggregate.
    pub fn compile<'a>(
        specs: impl IntoIterator<Item = (&'a str, &'a str)>,
        input: &Schema,
    ) -> Result<Aggregates, (String, ExprError)> {
        let mut list = Vec::new();
        for (name, text) in specs {
            let call = parse_aggregate(text, input).map_err(|e| (name.to_string(), e))?;
            list.push(Aggregate {
                name: name.to_string(),
                call,
            });
        }
        Ok(Aggregates { list })
    }

    /// The aggregates, in output order.
    pub fn list(&self) -> &[Aggregate] {
        &self.list
    }

    /// Number of aggregates.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Fresh accumulators.
    pub fn init(&self) -> Vec<Acc> {
        self.list
            .iter()
            .map(|a| {
                let arg_float =
                    a.call.argument.as_ref().and_then(|e| e.dtype()) == Some(DataType::Float);
                match a.call.function {
                    AggregateFunction::Count => Acc::Count(0),
                    AggregateFunction::Sum if arg_float => Acc::SumFloat {
                        sum: ExactSum::default(),
                        n: 0,
                    },
                    AggregateFunction::Sum => Acc::SumInt { sum: 0, n: 0 },
                    AggregateFunction::Avg if arg_float => Acc::AvgFloat {
                        sum: ExactSum::default(),
                        n: 0,
                    },
                    AggregateFunction::Avg => Acc::AvgInt { sum: 0, n: 0 },
                    AggregateFunction::Min | AggregateFunction::Max => match a.call.output {
                        DataType::Float => Acc::ExtremeFloat(None),
                        DataType::String => Acc::ExtremeStr(None),
                        _ => Acc::ExtremeInt(None),
                    },
                }
            })
            .collect()
    }

    /// Folds one row into the accumulators.
    #[inline]
    pub fn update(&self, accs: &mut [Acc], row: &Row) {
        for (agg, acc) in self.list.iter().zip(accs.iter_mut()) {
            let is_max = agg.call.function == AggregateFunction::Max;
            let arg = match &agg.call.argument {
                None => {
                    if let Acc::Count(c) = acc {
                        *c += 1;
                    }
                    continue;
                }
                Some(arg) => arg,
            };
            // Sums and averages of a plain column read the slot directly.
            if let (Some(col), Acc::SumFloat { sum, n } | Acc::AvgFloat { sum, n }) =
                (arg.as_column(), &mut *acc)
            {
                if let Some(v) = row.get_f64(col) {
                    sum.add(v);
                    *n += 1;
                }
                continue;
            }
            let value = arg.eval(row);
            if value.is_null() {
                continue;
            }
            match acc {
                Acc::Count(c) => *c += 1,
                Acc::SumInt { sum, n } | Acc::AvgInt { sum, n } => {
                    if let Value::Int(v) | Value::Ts(v) = value {
                        *sum += v as i128;
                        *n += 1;
                    }
                }
                Acc::SumFloat { sum, n } | Acc::AvgFloat { sum, n } => {
                    if let Some(v) = value.as_f64() {
                        sum.add(v);
                        *n += 1;
                    }
                }
                Acc::ExtremeInt(best) => {
                    if let Value::Int(v) | Value::Ts(v) = value {
                        *best = Some(match *best {
                            Some(b) if (v > b) != is_max => b,
                            _ => v,
                        });
                    }
                }
                Acc::ExtremeFloat(best) => {
                    if let Some(v) = value.as_f64() {
                        *best = Some(match *best {
                            Some(b) if (v > b) != is_max || v == b => b,
                            _ => v,
                        });
                    }
                }
                Acc::ExtremeStr(best) => {
                    if let Value::Str(v) = value {
                        let replace = match best {
                            Some(b) => {
                                (v.as_ref() > b.as_str()) == is_max && v.as_ref() != b.as_str()
                            }
                            None => true,
                        };
                        if replace {
                            *best = Some(v.into_owned());
                        }
                    }
                }
            }
        }
    }

    /// Merges `other` into `accs` (session windows merging).
    pub fn merge(&self, accs: &mut [Acc], other: &[Acc]) {
        for ((agg, acc), o) in self.list.iter().zip(accs.iter_mut()).zip(other) {
            let is_max = agg.call.function == AggregateFunction::Max;
            match (acc, o) {
                (Acc::Count(a), Acc::Count(b)) => *a += b,
                (Acc::SumInt { sum, n }, Acc::SumInt { sum: s2, n: n2 })
                | (Acc::AvgInt { sum, n }, Acc::AvgInt { sum: s2, n: n2 }) => {
                    *sum += s2;
                    *n += n2;
                }
                (Acc::SumFloat { sum, n }, Acc::SumFloat { sum: s2, n: n2 })
                | (Acc::AvgFloat { sum, n }, Acc::AvgFloat { sum: s2, n: n2 }) => {
                    sum.merge(s2);
                    *n += n2;
                }
                (Acc::ExtremeInt(a), Acc::ExtremeInt(b)) => {
                    *a = match (*a, *b) {
                        (Some(x), Some(y)) => Some(if is_max { x.max(y) } else { x.min(y) }),
                        (x, y) => x.or(y),
                    }
                }
                (Acc::ExtremeFloat(a), Acc::ExtremeFloat(b)) => {
                    *a = match (*a, *b) {
                        (Some(x), Some(y)) => Some(if is_max { x.max(y) } else { x.min(y) }),
                        (x, y) => x.or(y),
                    }
                }
                (Acc::ExtremeStr(a), Acc::ExtremeStr(b)) => {
                    if let Some(y) = b {
                        let replace = match a {
                            Some(x) => (y > x) == is_max && y != x,
                            None => true,
                        };
                        if replace {
                            *a = Some(y.clone());
                        }
                    }
                }
                (a, b) => unreachable!("accumulators of one aggregate differ: {a:?} vs {b:?}"),
            }
        }
    }

    /// Writes the results into `builder` columns `first ..`.
    pub fn write(&self, accs: &[Acc], builder: &mut RowBuilder, first: usize) {
        for (i, (agg, acc)) in self.list.iter().zip(accs).enumerate() {
            let col = first + i;
            match acc {
                Acc::Count(c) => builder.set_int(col, *c),
                Acc::SumInt { n: 0, .. }
                | Acc::SumFloat { n: 0, .. }
                | Acc::AvgInt { n: 0, .. }
                | Acc::AvgFloat { n: 0, .. } => builder.set_null(col),
                Acc::SumInt { sum, .. } => {
                    builder.set_int(col, (*sum).clamp(i64::MIN as i128, i64::MAX as i128) as i64)
                }
                Acc::SumFloat { sum, .. } => builder.set_float(col, sum.value()),
                Acc::AvgInt { sum, n } => builder.set_float(col, *sum as f64 / *n as f64),
                Acc::AvgFloat { sum, n } => builder.set_float(col, sum.value() / *n as f64),
                Acc::ExtremeInt(None) | Acc::ExtremeFloat(None) | Acc::ExtremeStr(None) => {
                    builder.set_null(col)
                }
                Acc::ExtremeInt(Some(v)) => {
                    if agg.call.output == DataType::Timestamp {
                        builder.set_ts(col, *v)
                    } else {
                        builder.set_int(col, *v)
                    }
                }
                Acc::ExtremeFloat(Some(v)) => builder.set_float(col, *v),
                Acc::ExtremeStr(Some(v)) => builder.set_str(col, v),
            }
        }
    }

    /// Approximate heap bytes of one set of accumulators (for state metrics).
    pub fn size_of(accs: &[Acc]) -> usize {
        std::mem::size_of_val(accs)
            + accs
                .iter()
                .map(|a| match a {
                    Acc::ExtremeStr(Some(s)) => s.len(),
                    _ => 0,
                })
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use weir_engine::data::{Field, Schema};

    use super::*;

    #[test]
    fn float_sums_do_not_depend_on_order() {
        let values = [0.1, 0.2, 0.3, 1e9, -1e9, 123.456, 7.0e-3, 99.99];
        let mut forward = ExactSum::default();
        values.iter().for_each(|v| forward.add(*v));
        let mut backward = ExactSum::default();
        values.iter().rev().for_each(|v| backward.add(*v));
        let mut halves = ExactSum::default();
        let mut other = ExactSum::default();
        values[..3].iter().for_each(|v| halves.add(*v));
        values[3..].iter().for_each(|v| other.add(*v));
        halves.merge(&other);
        assert_eq!(forward.value().to_bits(), backward.value().to_bits());
        assert_eq!(forward.value().to_bits(), halves.value().to_bits());
        // Exact to ~1e-12, where naive float addition loses 0.1 next to 1e9.
        assert!(
            (forward.value() - 224.053).abs() < 1e-9,
            "{}",
            forward.value()
        );
    }

    #[test]
    fn float_sums_are_the_exact_sum_rounded_once() {
        // The exact sum of the three floats, rounded once, is the float nearest 1202.82 (a
        // 2⁻⁴⁰ grid printed 1202.8199999999988).
        let mut prices = ExactSum::default();
        for v in [400.94, 401.94, 399.94] {
            prices.add(v);
        }
        assert_eq!(prices.value().to_string(), "1202.82");
        // Retracting what was added leaves exactly nothing.
        for v in [400.94, 401.94, 399.94] {
            prices.add(-v);
        }
        assert_eq!(prices.value(), 0.0);
    }

    #[test]
    fn accumulates_and_merges_every_function() {
        let schema = Schema::new(vec![
            Field::new("x", DataType::Float),
            Field::new("n", DataType::Int),
            Field::new("s", DataType::String),
        ])
        .unwrap();
        let aggs = Aggregates::compile(
            [
                ("c", "count(*)"),
                ("cx", "count(x)"),
                ("sx", "sum(x)"),
                ("sn", "sum(n)"),
                ("an", "avg(n)"),
                ("lo", "min(x)"),
                ("hi", "max(s)"),
            ],
            &schema,
        )
        .unwrap();
        let rows = [
            Row::from_values(&[Value::Float(1.5), Value::Int(2), Value::Str("b".into())]),
            Row::from_values(&[Value::Null, Value::Int(4), Value::Str("c".into())]),
            Row::from_values(&[Value::Float(-0.5), Value::Int(9), Value::Str("a".into())]),
        ];
        let mut all = aggs.init();
        rows.iter().for_each(|r| aggs.update(&mut all, r));
        let mut left = aggs.init();
        let mut right = aggs.init();
        aggs.update(&mut left, &rows[0]);
        aggs.update(&mut right, &rows[1]);
        aggs.update(&mut right, &rows[2]);
        aggs.merge(&mut left, &right);
        assert_eq!(left, all);
        let mut b = RowBuilder::new(7);
        aggs.write(&all, &mut b, 0);
        let out = b.finish();
        assert_eq!(
            out.iter().collect::<Vec<_>>(),
            vec![
                Value::Int(3),
                Value::Int(2),
                Value::Float(1.0),
                Value::Int(15),
                Value::Float(5.0),
                Value::Float(-0.5),
                Value::Str("c".into())
            ]
        );
        let mut empty = RowBuilder::new(7);
        aggs.write(&aggs.init(), &mut empty, 0);
        let empty = empty.finish();
        assert_eq!(empty.get(0), Value::Int(0));
        assert!(
            empty.is_null(2) && empty.is_null(5),
            "sum/min of nothing is NULL"
        );
    }
}
