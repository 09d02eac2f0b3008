//! Joins (`join:` steps) of two keyed streams, inner or left outer, evaluated per key in
//! event-time order by the [ordered](crate::ordered) engine:
//!
//! - [`IntervalJoin`]: `right.ts` in `[left.ts - within, left.ts + within]`; a regular join is an
//!   interval join whose `within` is its state TTL;
//! - [`WindowJoin`]: both sides in the same tumbling or sliding window;
//! - [`TemporalJoin`]: each left record with the dimension row valid at its event time.
//!
//! Output rows are the left columns, then the right columns (left outer joins fill the right
//! columns with NULL); window joins start with `window_start` and `window_end`.

mod interval;
mod temporal;
mod window;

pub use interval::IntervalJoin;
pub use temporal::TemporalJoin;
pub use window::WindowJoin;

use sqlparser::ast::{BinaryOperator, Expr as Ast};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use weir_engine::data::Row;

/// Inner or left outer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinType {
    /// Only matched pairs.
    Inner,
    /// Every left record: matched pairs, or the left record with NULLs.
    LeftOuter,
}

/// Parses `left.a = right.b AND left.c = right.d` into `[(a, b), (c, d)]`.
pub fn parse_equi_join(text: &str) -> Result<Vec<(String, String)>, String> {
    let ast = Parser::new(&GenericDialect {})
        .try_with_sql(text)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| format!("`{text}` is not an SQL condition: {e}"))?;
    let mut pairs = Vec::new();
    collect_equalities(&ast, text, &mut pairs)?;
    Ok(pairs)
}

fn collect_equalities(
    ast: &Ast,
    text: &str,
    pairs: &mut Vec<(String, String)>,
) -> Result<(), String> {
    let expected = || {
        format!(
            "`{text}`: expected equalities between left and right columns joined by AND, like \
             `left.device_id = right.device_id`"
        )
    };
    match ast {
        Ast::Nested(inner) => collect_equalities(inner, text, pairs),
        Ast::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            collect_equalities(left, text, pairs)?;
            collect_equalities(right, text, pairs)
        }
        Ast::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => {
            let side = |e: &Ast| match e {
                Ast::CompoundIdentifier(parts) if parts.len() == 2 => {
                    Some((parts[0].value.to_ascii_lowercase(), parts[1].value.clone()))
                }
                _ => None,
            };
            match (side(left), side(right)) {
                (Some((a, x)), Some((b, y))) if a == "left" && b == "right" => {
                    pairs.push((x, y));
                    Ok(())
                }
                (Some((a, x)), Some((b, y))) if a == "right" && b == "left" => {
                    pairs.push((y, x));
                    Ok(())
                }
                _ => Err(expected()),
            }
        }
        _ => Err(expected()),
    }
}

/// Builds joined rows: `prefix` columns (set by the caller), the left row, the right row or
/// NULLs.
#[derive(Clone, Debug)]
pub(crate) struct Joined {
    left: usize,
    right: usize,
    prefix_ts: Vec<i64>,
}

impl Joined {
    pub(crate) fn new(prefix: usize, left: usize, right: usize) -> Self {
        Joined {
            left,
            right,
            prefix_ts: vec![0; prefix],
        }
    }

    /// Sets prefix column `i` to a timestamp (window bounds).
    pub(crate) fn set_prefix_ts(&mut self, i: usize, ts: i64) {
        self.prefix_ts[i] = ts;
    }

    /// The joined row of `left` and `right` (NULLs when `None`).
    pub(crate) fn row(&mut self, left: &Row, right: Option<&Row>) -> Row {
        Row::concat(
            &self.prefix_ts,
            &[(Some(left), self.left), (right, self.right)],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_conditions_parse_into_column_pairs() {
        assert_eq!(
            parse_equi_join("left.device_id = right.device_id").unwrap(),
            vec![("device_id".to_string(), "device_id".to_string())]
        );
        assert_eq!(
            parse_equi_join("right.b = left.a AND (left.c = right.d)").unwrap(),
            vec![("a".into(), "b".into()), ("c".into(), "d".into())]
        );
        let err = parse_equi_join("left.a < right.b").unwrap_err();
        assert!(err.contains("expected equalities"), "{err}");
        assert!(parse_equi_join("left.a = ").is_err());
    }
}
