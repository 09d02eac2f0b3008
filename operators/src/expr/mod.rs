//! SQL expressions over rows: parsed with `sqlparser`, type-checked against a schema once, and
//! evaluated per record without re-parsing.
//!
//! ```
//! use std::sync::Arc;
//! use weir_engine::data::{DataType, Field, Row, Schema, Value};
//! use weir_operators::expr::Expr;
//!
//! let schema = Schema::new(vec![
//!     Field::new("status", DataType::String),
//!     Field::new("amount", DataType::Float),
//! ]).unwrap();
//! let filter = Expr::compile("status = 'FAILED' AND amount > 100", &schema).unwrap();
//! let row = Row::from_values(&[Value::Str("FAILED".into()), Value::Float(250.0)]);
//! assert!(filter.matches(&row));
//! ```

mod aggregate;
mod compile;
mod eval;

use std::fmt;

use weir_engine::data::{DataType, Row, Schema, Value};

pub use aggregate::{parse_aggregate, AggregateCall, AggregateFunction};

/// A compiled, type-checked expression.
#[derive(Clone, Debug)]
pub struct Expr {
    node: Node,
    dtype: Option<DataType>,
    text: String,
}

/// Why an expression was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExprError {
    /// What is wrong, naming the offending part of the expression.
    pub message: String,
}

impl ExprError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ExprError {
            message: message.into(),
        }
    }
}

impl Expr {
    /// Parses and type-checks `text` against the columns of `schema`.
    pub fn compile(text: &str, schema: &Schema) -> Result<Expr, ExprError> {
        compile::compile(text, schema)
    }

    /// The result type (`None` for an untyped `NULL`).
    pub fn dtype(&self) -> Option<DataType> {
        self.dtype
    }

    /// The source text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Evaluates against a row of the schema it was compiled for.
    #[inline]
    pub fn eval<'a>(&'a self, row: &'a Row) -> Value<'a> {
        self.node.eval(row)
    }

    /// For filters: true only when the expression is `TRUE` (`NULL` does not match, as in SQL).
    #[inline]
    pub fn matches(&self, row: &Row) -> bool {
        matches!(self.node.eval(row), Value::Bool(true))
    }

    /// The column this expression reads, when it is a bare column reference.
    pub fn as_column(&self) -> Option<usize> {
        match self.node {
            Node::Column(i) => Some(i),
            _ => None,
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Binary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    And,
    Or,
    Concat,
}

/// Scalar functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Func {
    Lower,
    Upper,
    Length,
    Trim,
    Abs,
    Round,
    Floor,
    Ceil,
    Coalesce,
    Concat,
    Greatest,
    Least,
    EpochMillis,
    DateTrunc,
}

/// The evaluable tree.
#[derive(Clone, Debug)]
enum Node {
    Column(usize),
    Literal(Value<'static>),
    Not(Box<Node>),
    Neg(Box<Node>),
    Binary(BinOp, Box<Node>, Box<Node>),
    IsNull(Box<Node>, bool),
    InList(Box<Node>, Vec<Node>, bool),
    Between(Box<Node>, Box<Node>, Box<Node>, bool),
    Like(Box<Node>, LikePattern, bool),
    Case(Vec<(Node, Node)>, Option<Box<Node>>),
    Cast(Box<Node>, DataType),
    Call(Func, Vec<Node>),
}

/// A compiled `LIKE` pattern: `%` any run, `_` any one character.
#[derive(Clone, Debug)]
struct LikePattern {
    parts: Vec<LikePart>,
    case_insensitive: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum LikePart {
    Literal(String),
    AnyOne,
    AnyRun,
}
