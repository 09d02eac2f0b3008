//! Evaluation of compiled expressions, with SQL's three-valued NULL logic.

use std::borrow::Cow;
use std::cmp::Ordering;

use weir_engine::data::time::{format_rfc3339, parse_rfc3339};
use weir_engine::data::{DataType, Row, Value};

use super::{BinOp, Func, LikePart, LikePattern, Node};

#[inline]
fn borrow<'a>(v: &'a Value<'static>) -> Value<'a> {
    match v {
        Value::Str(s) => Value::Str(Cow::Borrowed(s.as_ref())),
        other => other.clone(),
    }
}

/// Orders two values of comparable types; `None` when either is NULL.
pub(super) fn compare(a: &Value<'_>, b: &Value<'_>) -> Option<Ordering> {
    use Value::*;
    match (a, b) {
        (Int(x) | Ts(x), Int(y) | Ts(y)) => Some(x.cmp(y)),
        (Str(x), Str(y)) => Some(x.as_ref().cmp(y.as_ref())),
        (Bool(x), Bool(y)) => Some(x.cmp(y)),
        (Null, _) | (_, Null) => None,
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

fn to_text<'a>(v: Value<'a>) -> Option<Cow<'a, str>> {
    Some(match v {
        Value::Null => return None,
        Value::Str(s) => s,
        Value::Int(i) => Cow::Owned(i.to_string()),
        Value::Float(f) => Cow::Owned(f.to_string()),
        Value::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
        Value::Ts(ms) => Cow::Owned(format_rfc3339(ms)),
    })
}

fn arith(op: BinOp, a: Value<'_>, b: Value<'_>) -> Value<'static> {
    use Value::*;
    let int = |r: Option<i64>| r.map_or(Null, Int);
    match (op, &a, &b) {
        (_, Null, _) | (_, _, Null) => Null,
        (BinOp::Add, Int(x), Int(y)) => int(x.checked_add(*y)),
        (BinOp::Sub, Int(x), Int(y)) => int(x.checked_sub(*y)),
        (BinOp::Mul, Int(x), Int(y)) => int(x.checked_mul(*y)),
        (BinOp::Div, Int(x), Int(y)) => int(x.checked_div(*y)),
        (BinOp::Mod, Int(x), Int(y)) => int(x.checked_rem(*y)),
        (BinOp::Add, Ts(t), Int(d)) | (BinOp::Add, Int(d), Ts(t)) => {
            t.checked_add(*d).map_or(Null, Ts)
        }
        (BinOp::Sub, Ts(t), Int(d)) => t.checked_sub(*d).map_or(Null, Ts),
        (BinOp::Sub, Ts(x), Ts(y)) => int(x.checked_sub(*y)),
        _ => {
            let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) else {
                return Null;
            };
            Float(match op {
                BinOp::Add => x + y,
                BinOp::Sub => x - y,
                BinOp::Mul => x * y,
                BinOp::Div => x / y,
                _ => x % y,
            })
        }
    }
}

fn cast(v: Value<'_>, to: DataType) -> Value<'_> {
    use Value::*;
    match (v, to) {
        (Null, _) => Null,
        (v @ Str(_), DataType::String) => v,
        (v, DataType::String) => to_text(v).map_or(Null, |s| Str(Cow::Owned(s.into_owned()))),
        (Int(i) | Ts(i), DataType::Int) => Int(i),
        (Float(f), DataType::Int) if f.is_finite() && f.abs() < 9.2e18 => Int(f.trunc() as i64),
        (Bool(b), DataType::Int) => Int(b as i64),
        (Str(s), DataType::Int) => s.trim().parse().map_or(Null, Int),
        (Int(i) | Ts(i), DataType::Float) => Float(i as f64),
        (v @ Float(_), DataType::Float) => v,
        (Str(s), DataType::Float) => s.trim().parse().map_or(Null, Float),
        (v @ Bool(_), DataType::Bool) => v,
        (Int(i), DataType::Bool) => Bool(i != 0),
        (Str(s), DataType::Bool) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "1" | "yes" => Bool(true),
            "false" | "f" | "0" | "no" => Bool(false),
            _ => Null,
        },
        (Int(i) | Ts(i), DataType::Timestamp) => Ts(i),
        (Str(s), DataType::Timestamp) => parse_rfc3339(s.trim()).map_or(Null, Ts),
        // Anything else has no sensible conversion: NULL, like TRY_CAST.
        _ => Null,
    }
}

impl LikePattern {
    fn matches(&self, text: &str) -> bool {
        if self.case_insensitive {
            like(&self.parts, &text.to_lowercase())
        } else {
            like(&self.parts, text)
        }
    }
}

fn like(parts: &[LikePart], text: &str) -> bool {
    match parts.split_first() {
        None => text.is_empty(),
        Some((LikePart::Literal(lit), rest)) => text
            .strip_prefix(lit.as_str())
            .is_some_and(|t| like(rest, t)),
        Some((LikePart::AnyOne, rest)) => {
            let mut chars = text.chars();
            chars.next().is_some() && like(rest, chars.as_str())
        }
        Some((LikePart::AnyRun, rest)) => {
            if rest.is_empty() {
                return true;
            }
            let mut t = text;
            loop {
                if like(rest, t) {
                    return true;
                }
                let mut chars = t.chars();
                if chars.next().is_none() {
                    return false;
                }
                t = chars.as_str();
            }
        }
    }
}

fn round_to(x: f64, digits: i64) -> f64 {
    let scale = 10f64.powi(digits.clamp(-18, 18) as i32);
    (x * scale).round() / scale
}

impl Node {
    pub(super) fn eval<'a>(&'a self, row: &'a Row) -> Value<'a> {
        use Value::*;
        match self {
            Node::Column(i) => row.get(*i),
            Node::Literal(v) => borrow(v),
            Node::Not(x) => match x.eval(row) {
                Bool(b) => Bool(!b),
                _ => Null,
            },
            Node::Neg(x) => match x.eval(row) {
                Int(i) => i.checked_neg().map_or(Null, Int),
                Float(f) => Float(-f),
                _ => Null,
            },
            Node::Binary(op, l, r) => match op {
                BinOp::And => match l.eval(row) {
                    Bool(false) => Bool(false),
                    lv => match (lv, r.eval(row)) {
                        (_, Bool(false)) => Bool(false),
                        (Bool(true), Bool(true)) => Bool(true),
                        _ => Null,
                    },
                },
                BinOp::Or => match l.eval(row) {
                    Bool(true) => Bool(true),
                    lv => match (lv, r.eval(row)) {
                        (_, Bool(true)) => Bool(true),
                        (Bool(false), Bool(false)) => Bool(false),
                        _ => Null,
                    },
                },
                BinOp::Eq | BinOp::NotEq | BinOp::Lt | BinOp::LtEq | BinOp::Gt | BinOp::GtEq => {
                    match compare(&l.eval(row), &r.eval(row)) {
                        None => Null,
                        Some(o) => Bool(match op {
                            BinOp::Eq => o == Ordering::Equal,
                            BinOp::NotEq => o != Ordering::Equal,
                            BinOp::Lt => o == Ordering::Less,
                            BinOp::LtEq => o != Ordering::Greater,
                            BinOp::Gt => o == Ordering::Greater,
                            _ => o != Ordering::Less,
                        }),
                    }
                }
                BinOp::Concat => match (to_text(l.eval(row)), to_text(r.eval(row))) {
                    (Some(a), Some(b)) => Str(Cow::Owned(format!("{a}{b}"))),
                    _ => Null,
                },
                _ => arith(*op, l.eval(row), r.eval(row)),
            },
            Node::IsNull(x, negated) => Bool(x.eval(row).is_null() != *negated),
            Node::InList(x, items, negated) => {
                let v = x.eval(row);
                if v.is_null() {
                    return Null;
                }
                let mut saw_null = false;
                for item in items {
                    match compare(&v, &item.eval(row)) {
                        Some(Ordering::Equal) => return Bool(!negated),
                        None => saw_null = true,
                        _ => {}
                    }
                }
                if saw_null {
                    Null
                } else {
                    Bool(*negated)
                }
            }
            Node::Between(x, lo, hi, negated) => {
                let v = x.eval(row);
                match (compare(&v, &lo.eval(row)), compare(&v, &hi.eval(row))) {
                    (Some(a), Some(b)) => {
                        Bool((a != Ordering::Less && b != Ordering::Greater) != *negated)
                    }
                    _ => Null,
                }
            }
            Node::Like(x, pattern, negated) => match x.eval(row) {
                Str(s) => Bool(pattern.matches(&s) != *negated),
                _ => Null,
            },
            Node::Case(whens, otherwise) => {
                for (cond, result) in whens {
                    if let Bool(true) = cond.eval(row) {
                        return result.eval(row);
                    }
                }
                otherwise.as_ref().map_or(Null, |o| o.eval(row))
            }
            Node::Cast(x, to) => cast(x.eval(row), *to),
            Node::Call(func, args) => call(*func, args, row),
        }
    }
}

fn call<'a>(func: Func, args: &'a [Node], row: &'a Row) -> Value<'a> {
    use Value::*;
    let arg = |i: usize| args[i].eval(row);
    match func {
        Func::Lower => match arg(0) {
            Str(s) => Str(Cow::Owned(s.to_lowercase())),
            _ => Null,
        },
        Func::Upper => match arg(0) {
            Str(s) => Str(Cow::Owned(s.to_uppercase())),
            _ => Null,
        },
        Func::Trim => match arg(0) {
            Str(Cow::Borrowed(s)) => Str(Cow::Borrowed(s.trim())),
            Str(Cow::Owned(s)) => Str(Cow::Owned(s.trim().to_string())),
            _ => Null,
        },
        Func::Length => match arg(0) {
            Str(s) => Int(s.chars().count() as i64),
            _ => Null,
        },
        Func::Abs => match arg(0) {
            Int(i) => i.checked_abs().map_or(Null, Int),
            Float(f) => Float(f.abs()),
            _ => Null,
        },
        Func::Floor => match arg(0) {
            Float(f) => Float(f.floor()),
            v => v,
        },
        Func::Ceil => match arg(0) {
            Float(f) => Float(f.ceil()),
            v => v,
        },
        Func::Round => {
            let digits = if args.len() > 1 {
                match arg(1) {
                    Int(d) => d,
                    _ => return Null,
                }
            } else {
                0
            };
            match arg(0) {
                Float(f) => Float(round_to(f, digits)),
                Int(i) if digits < 0 => Int(round_to(i as f64, digits) as i64),
                v => v,
            }
        }
        Func::Coalesce => args
            .iter()
            .map(|a| a.eval(row))
            .find(|v| !v.is_null())
            .unwrap_or(Null),
        Func::Concat => {
            let mut out = String::new();
            for a in args {
                if let Some(s) = to_text(a.eval(row)) {
                    out.push_str(&s);
                }
            }
            Str(Cow::Owned(out))
        }
        Func::Greatest | Func::Least => {
            let want = if func == Func::Greatest {
                Ordering::Greater
            } else {
                Ordering::Less
            };
            let mut best: Option<Value<'a>> = None;
            for a in args {
                let v = a.eval(row);
                if v.is_null() {
                    return Null;
                }
                best = match best {
                    Some(b) if compare(&v, &b) != Some(want) => Some(b),
                    _ => Some(v),
                };
            }
            best.unwrap_or(Null)
        }
        Func::EpochMillis => match arg(0) {
            Ts(ms) => Int(ms),
            _ => Null,
        },
        Func::DateTrunc => {
            let unit = match arg(0) {
                Str(u) => match u.to_ascii_lowercase().as_str() {
                    "second" => 1_000,
                    "minute" => 60_000,
                    "hour" => 3_600_000,
                    _ => 86_400_000,
                },
                _ => return Null,
            };
            match arg(1) {
                Ts(ms) => Ts(ms.div_euclid(unit) * unit),
                _ => Null,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use weir_engine::data::{Field, Schema};

    use super::super::{Expr, ExprError};
    use super::*;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("status", DataType::String),
            Field::new("amount", DataType::Float),
            Field::new("n", DataType::Int),
            Field::new("ts", DataType::Timestamp),
            Field::new("flag", DataType::Bool),
        ])
        .unwrap()
    }

    fn row() -> Row {
        Row::from_values(&[
            Value::Str("FAILED".into()),
            Value::Float(12.5),
            Value::Int(7),
            Value::Ts(60_000),
            Value::Null,
        ])
    }

    fn eval(text: &str) -> Value<'static> {
        let e = Expr::compile(text, &schema()).unwrap_or_else(|err| panic!("{text}: {err}"));
        let r = row();
        e.eval(&r).into_owned()
    }

    fn err(text: &str) -> String {
        let e: ExprError = Expr::compile(text, &schema()).unwrap_err();
        e.message
    }

    #[test]
    fn evaluates_the_usual_operators() {
        assert_eq!(eval("status = 'FAILED'"), Value::Bool(true));
        assert_eq!(eval("amount * 2 + n"), Value::Float(32.0));
        assert_eq!(eval("n / 2"), Value::Int(3));
        assert_eq!(eval("n / 0"), Value::Null);
        assert_eq!(eval("n % 4"), Value::Int(3));
        assert_eq!(eval("-n"), Value::Int(-7));
        assert_eq!(eval("status || '-' || n"), Value::Str("FAILED-7".into()));
        assert_eq!(eval("n IN (1, 7)"), Value::Bool(true));
        assert_eq!(eval("n NOT IN (1, 2)"), Value::Bool(true));
        assert_eq!(eval("n BETWEEN 7 AND 8"), Value::Bool(true));
        assert_eq!(eval("status LIKE 'FAIL%'"), Value::Bool(true));
        assert_eq!(eval("status LIKE 'F_ILED'"), Value::Bool(true));
        assert_eq!(eval("status ILIKE '%led'"), Value::Bool(true));
        assert_eq!(eval("status LIKE '%X%'"), Value::Bool(false));
        assert_eq!(
            eval("CASE WHEN amount > 10 THEN 'big' ELSE 'small' END"),
            Value::Str("big".into())
        );
        assert_eq!(
            eval("CASE n WHEN 7 THEN 1 WHEN 8 THEN 2.5 END"),
            Value::Float(1.0)
        );
        assert_eq!(eval("CAST(amount AS int)"), Value::Int(12));
        assert_eq!(eval("CAST('42' AS bigint) + 1"), Value::Int(43));
        assert_eq!(eval("CAST(status AS int)"), Value::Null);
        assert_eq!(eval("lower(status)"), Value::Str("failed".into()));
        assert_eq!(eval("length(status)"), Value::Int(6));
        assert_eq!(eval("round(amount / 3, 2)"), Value::Float(4.17));
        assert_eq!(eval("coalesce(flag, true)"), Value::Bool(true));
        assert_eq!(eval("greatest(n, amount)"), Value::Float(12.5));
        assert_eq!(eval("ts > '1970-01-01T00:00:30Z'"), Value::Bool(true));
        assert_eq!(eval("ts - 1000"), Value::Ts(59_000));
        assert_eq!(eval("epoch_ms(ts)"), Value::Int(60_000));
        assert_eq!(eval("date_trunc('hour', ts)"), Value::Ts(0));
        assert_eq!(
            eval("TIMESTAMP '1970-01-01T00:01:00Z' = ts"),
            Value::Bool(true)
        );
    }

    #[test]
    fn null_follows_sql_three_valued_logic() {
        assert_eq!(eval("flag = true"), Value::Null);
        assert_eq!(eval("flag AND false"), Value::Bool(false));
        assert_eq!(eval("flag OR true"), Value::Bool(true));
        assert_eq!(eval("flag AND true"), Value::Null);
        assert_eq!(eval("NOT flag"), Value::Null);
        assert_eq!(eval("flag IS NULL"), Value::Bool(true));
        assert_eq!(eval("flag IS TRUE"), Value::Bool(false));
        assert_eq!(eval("flag IS NOT TRUE"), Value::Bool(true));
        assert_eq!(eval("n IN (1, NULL)"), Value::Null);
        assert_eq!(eval("n + NULL"), Value::Null);
        let filter = Expr::compile("flag", &schema()).unwrap();
        assert!(!filter.matches(&row()), "NULL must not pass a filter");
    }

    #[test]
    fn type_errors_name_the_expression_and_the_types() {
        assert_eq!(
            err("stauts = 'x'"),
            "unknown column `stauts` (columns: status, amount, n, ts, flag)"
        );
        assert!(err("Status = 'x'").contains("did you mean `status`?"));
        assert_eq!(
            err("status > 5"),
            "`status > 5`: cannot compare string with int"
        );
        assert!(err("status + 1").contains("use || to join strings"));
        assert!(err("amount AND flag").contains("is a float, expected a boolean"));
        assert!(err("status = ").starts_with("cannot parse `status = `"));
        assert!(err("n = 1 garbage").contains("unexpected `garbage`"));
        assert!(err("sum(amount) > 1").contains("aggregates belong"));
        assert!(err("frobnicate(n)").contains("unknown function `frobnicate`"));
        assert!(err("ts > 'yesterday'").contains("not an RFC 3339 timestamp"));
        assert!(err("CAST(n AS blob)").contains("cannot cast to `BLOB`"));
    }

    #[test]
    fn aggregates_are_typed() {
        use super::super::{parse_aggregate, AggregateFunction};
        let s = schema();
        let c = parse_aggregate("count(*)", &s).unwrap();
        assert_eq!(
            (c.function, c.output),
            (AggregateFunction::Count, DataType::Int)
        );
        assert!(c.argument.is_none());
        assert_eq!(parse_aggregate("sum(n)", &s).unwrap().output, DataType::Int);
        assert_eq!(
            parse_aggregate("avg(n)", &s).unwrap().output,
            DataType::Float
        );
        assert_eq!(
            parse_aggregate("max(ts)", &s).unwrap().output,
            DataType::Timestamp
        );
        assert_eq!(
            parse_aggregate("SUM(amount * 2)", &s).unwrap().output,
            DataType::Float
        );
        let e = parse_aggregate("sum(status)", &s).unwrap_err().message;
        assert!(
            e.contains("sum needs an int or float argument, got string"),
            "{e}"
        );
        assert!(parse_aggregate("median(n)", &s)
            .unwrap_err()
            .message
            .contains("not an aggregate"));
        assert!(parse_aggregate("count(DISTINCT n)", &s)
            .unwrap_err()
            .message
            .contains("DISTINCT"));
        assert!(parse_aggregate("sum(nope)", &s)
            .unwrap_err()
            .message
            .contains("unknown column `nope`"));
    }
}
