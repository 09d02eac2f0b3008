//! From SQL text to a typed [`Node`] tree.

use sqlparser::ast::{
    self, BinaryOperator, CastKind, FunctionArg, FunctionArgExpr, FunctionArguments, UnaryOperator,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;
use weir_engine::data::time::parse_rfc3339;
use weir_engine::data::{DataType, Schema, Value};

use super::{BinOp, Expr, ExprError, Func, LikePart, LikePattern, Node};

/// A node with its type (`None`: the untyped `NULL` literal).
pub(super) struct Typed {
    pub(super) node: Node,
    pub(super) ty: Option<DataType>,
}

impl Typed {
    fn new(node: Node, ty: DataType) -> Self {
        Typed { node, ty: Some(ty) }
    }
}

pub(super) fn parse(text: &str) -> Result<ast::Expr, ExprError> {
    let dialect = GenericDialect {};
    let syntax = |e: sqlparser::parser::ParserError| {
        let e = e.to_string();
        let e = e
            .strip_prefix("sql parser error: ")
            .unwrap_or(&e)
            .to_string();
        ExprError::new(format!("cannot parse `{text}`: {e}"))
    };
    let mut parser = Parser::new(&dialect).try_with_sql(text).map_err(syntax)?;
    let expr = parser.parse_expr().map_err(syntax)?;
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(ExprError::new(format!(
            "cannot parse `{text}`: unexpected `{}` after `{expr}`",
            next.token
        )));
    }
    Ok(expr)
}

pub(super) fn compile(text: &str, schema: &Schema) -> Result<Expr, ExprError> {
    let ast = parse(text)?;
    let typed = Compiler { schema }.node(&ast)?;
    Ok(Expr {
        node: typed.node,
        dtype: typed.ty,
        text: text.to_string(),
    })
}

pub(super) struct Compiler<'a> {
    pub(super) schema: &'a Schema,
}

fn type_name(ty: Option<DataType>) -> String {
    ty.map_or("NULL".to_string(), |t| t.to_string())
}

/// The numeric result type of mixing `a` and `b`.
fn numeric(a: Option<DataType>, b: Option<DataType>) -> Option<Option<DataType>> {
    match (a, b) {
        (None, None) => Some(None),
        (Some(DataType::Int), Some(DataType::Int)) => Some(Some(DataType::Int)),
        (Some(x), Some(y)) if x.is_numeric() && y.is_numeric() => Some(Some(DataType::Float)),
        (Some(x), None) | (None, Some(x)) if x.is_numeric() => Some(Some(x)),
        _ => None,
    }
}

impl Compiler<'_> {
    fn column(&self, ident: &ast::Ident) -> Result<Typed, ExprError> {
        let name = &ident.value;
        if let Some(i) = self.schema.index_of(name) {
            return Ok(Typed::new(Node::Column(i), self.schema.field(i).dtype));
        }
        let near = self
            .schema
            .fields()
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .map(|f| format!("; did you mean `{}`?", f.name))
            .unwrap_or_default();
        Err(ExprError::new(format!(
            "unknown column `{name}`{near} (columns: {})",
            self.schema.column_list()
        )))
    }

    pub(super) fn node(&self, e: &ast::Expr) -> Result<Typed, ExprError> {
        use ast::Expr as E;
        match e {
            E::Identifier(ident) => self.column(ident),
            // `source.column` is accepted as `column` when the column exists.
            E::CompoundIdentifier(parts) => match parts.as_slice() {
                [_, col] if self.schema.index_of(&col.value).is_some() => self.column(col),
                _ => Err(ExprError::new(format!(
                    "`{e}`: qualified column names are only meaningful in joins"
                ))),
            },
            E::Value(v) => self.literal(&v.value, e),
            E::TypedString(ts) => {
                let text = ts.value.value.clone().into_string().unwrap_or_default();
                match ts.data_type.to_string().to_ascii_lowercase().as_str() {
                    t if t.starts_with("timestamp") || t == "date" || t.starts_with("datetime") => {
                        let ms = parse_rfc3339(&text).map_err(ExprError::new)?;
                        Ok(Typed::new(
                            Node::Literal(Value::Ts(ms)),
                            DataType::Timestamp,
                        ))
                    }
                    other => Err(ExprError::new(format!(
                        "`{e}`: typed literals of `{other}` are not supported"
                    ))),
                }
            }
            E::Nested(inner) => self.node(inner),
            E::UnaryOp { op, expr } => {
                let arg = self.node(expr)?;
                match op {
                    UnaryOperator::Not | UnaryOperator::BangNot => {
                        self.expect_bool(&arg, expr)?;
                        Ok(Typed::new(Node::Not(Box::new(arg.node)), DataType::Bool))
                    }
                    UnaryOperator::Minus => match arg.ty {
                        Some(t) if t.is_numeric() => {
                            Ok(Typed::new(Node::Neg(Box::new(arg.node)), t))
                        }
                        None => Ok(arg),
                        other => Err(ExprError::new(format!(
                            "`{e}`: cannot negate a {}",
                            type_name(other)
                        ))),
                    },
                    UnaryOperator::Plus => Ok(arg),
                    other => Err(ExprError::new(format!(
                        "`{e}`: operator `{other}` is not supported"
                    ))),
                }
            }
            E::BinaryOp { left, op, right } => self.binary(e, left, op, right),
            E::IsNull(x) | E::IsNotNull(x) => {
                let arg = self.node(x)?;
                Ok(Typed::new(
                    Node::IsNull(Box::new(arg.node), matches!(e, E::IsNotNull(_))),
                    DataType::Bool,
                ))
            }
            E::IsTrue(x) | E::IsNotTrue(x) | E::IsFalse(x) | E::IsNotFalse(x) => {
                let arg = self.node(x)?;
                self.expect_bool(&arg, x)?;
                // `x IS TRUE` is never NULL: it is `coalesce(x = true, false)`.
                let want = matches!(e, E::IsTrue(_) | E::IsNotTrue(_));
                let test = Node::Binary(
                    BinOp::Eq,
                    Box::new(arg.node),
                    Box::new(Node::Literal(Value::Bool(want))),
                );
                let node = Node::Call(
                    Func::Coalesce,
                    vec![test, Node::Literal(Value::Bool(false))],
                );
                let node = if matches!(e, E::IsNotTrue(_) | E::IsNotFalse(_)) {
                    Node::Not(Box::new(node))
                } else {
                    node
                };
                Ok(Typed::new(node, DataType::Bool))
            }
            E::InList {
                expr,
                list,
                negated,
            } => {
                let arg = self.node(expr)?;
                let mut items = Vec::with_capacity(list.len());
                for item in list {
                    let item = self.node(item)?;
                    let (_, item) = self.comparable(e, &arg, item)?;
                    items.push(item.node);
                }
                Ok(Typed::new(
                    Node::InList(Box::new(arg.node), items, *negated),
                    DataType::Bool,
                ))
            }
            E::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let arg = self.node(expr)?;
                let (arg, low) = self.comparable(e, &arg, self.node(low)?)?;
                let (_, high) = self.comparable(e, &arg, self.node(high)?)?;
                Ok(Typed::new(
                    Node::Between(
                        Box::new(arg.node),
                        Box::new(low.node),
                        Box::new(high.node),
                        *negated,
                    ),
                    DataType::Bool,
                ))
            }
            E::Like {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            }
            | E::ILike {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            } => {
                if *any || escape_char.is_some() {
                    return Err(ExprError::new(format!(
                        "`{e}`: LIKE ANY and ESCAPE are not supported"
                    )));
                }
                let arg = self.node(expr)?;
                if !matches!(arg.ty, Some(DataType::String) | None) {
                    return Err(ExprError::new(format!(
                        "`{e}`: LIKE needs a string, got {}",
                        type_name(arg.ty)
                    )));
                }
                let ast::Expr::Value(v) = pattern.as_ref() else {
                    return Err(ExprError::new(format!(
                        "`{e}`: the LIKE pattern must be a string literal"
                    )));
                };
                let Some(text) = v.value.clone().into_string() else {
                    return Err(ExprError::new(format!(
                        "`{e}`: the LIKE pattern must be a string literal"
                    )));
                };
                let pattern = LikePattern::new(&text, matches!(e, E::ILike { .. }));
                Ok(Typed::new(
                    Node::Like(Box::new(arg.node), pattern, *negated),
                    DataType::Bool,
                ))
            }
            E::Case {
                operand,
                conditions,
                else_result,
                ..
            } => self.case(e, operand.as_deref(), conditions, else_result.as_deref()),
            E::Cast {
                kind,
                expr,
                data_type,
                format,
            } => {
                if format.is_some() {
                    return Err(ExprError::new(format!(
                        "`{e}`: CAST ... FORMAT is not supported"
                    )));
                }
                if matches!(
                    kind,
                    CastKind::DoubleColon | CastKind::Cast | CastKind::TryCast | CastKind::SafeCast
                ) {
                    let arg = self.node(expr)?;
                    let name = data_type.to_string();
                    let base = name.split(['(', ' ']).next().unwrap_or("");
                    let Some(to) = DataType::parse(base) else {
                        return Err(ExprError::new(format!(
                            "`{e}`: cannot cast to `{name}`; types are string, int, float, bool, timestamp"
                        )));
                    };
                    Ok(Typed::new(Node::Cast(Box::new(arg.node), to), to))
                } else {
                    Err(ExprError::new(format!("`{e}` is not supported")))
                }
            }
            E::Trim {
                expr,
                trim_where: None,
                trim_what: None,
                trim_characters: None,
            } => {
                let arg = self.node(expr)?;
                self.call_typed(e, Func::Trim, vec![arg])
            }
            E::Function(call) => self.function(e, call),
            other => Err(ExprError::new(format!(
                "`{other}` is not supported in weir expressions"
            ))),
        }
    }

    fn literal(&self, v: &ast::Value, e: &ast::Expr) -> Result<Typed, ExprError> {
        use ast::Value as V;
        Ok(match v {
            V::Number(n, _) => match n.parse::<i64>() {
                Ok(i) => Typed::new(Node::Literal(Value::Int(i)), DataType::Int),
                Err(_) => match n.parse::<f64>() {
                    Ok(f) => Typed::new(Node::Literal(Value::Float(f)), DataType::Float),
                    Err(_) => return Err(ExprError::new(format!("`{e}`: `{n}` is not a number"))),
                },
            },
            V::SingleQuotedString(s) | V::DoubleQuotedString(s) | V::EscapedStringLiteral(s) => {
                Typed::new(
                    Node::Literal(Value::Str(s.clone().into())),
                    DataType::String,
                )
            }
            V::Boolean(b) => Typed::new(Node::Literal(Value::Bool(*b)), DataType::Bool),
            V::Null => Typed {
                node: Node::Literal(Value::Null),
                ty: None,
            },
            other => {
                return Err(ExprError::new(format!(
                    "`{other}`: this kind of literal is not supported"
                )))
            }
        })
    }

    fn expect_bool(&self, arg: &Typed, e: &ast::Expr) -> Result<(), ExprError> {
        match arg.ty {
            Some(DataType::Bool) | None => Ok(()),
            other => Err(ExprError::new(format!(
                "`{e}` is a {}, expected a boolean condition",
                type_name(other)
            ))),
        }
    }

    /// Checks that `a` and `b` can be compared; a string literal compared with a timestamp is
    /// read as a timestamp, once, here.
    fn comparable(&self, e: &ast::Expr, a: &Typed, b: Typed) -> Result<(Typed, Typed), ExprError> {
        let a = Typed {
            node: a.node.clone(),
            ty: a.ty,
        };
        let coerce = |t: Typed| -> Result<Typed, ExprError> {
            match &t.node {
                Node::Literal(Value::Str(s)) => {
                    let ms = parse_rfc3339(s).map_err(|m| ExprError::new(format!("`{e}`: {m}")))?;
                    Ok(Typed::new(
                        Node::Literal(Value::Ts(ms)),
                        DataType::Timestamp,
                    ))
                }
                _ => Ok(t),
            }
        };
        let (a, b) = match (a.ty, b.ty) {
            (Some(DataType::Timestamp), Some(DataType::String)) => (a, coerce(b)?),
            (Some(DataType::String), Some(DataType::Timestamp)) => (coerce(a)?, b),
            _ => (a, b),
        };
        let ok = match (a.ty, b.ty) {
            (None, _) | (_, None) => true,
            (Some(x), Some(y)) if x == y => true,
            (Some(x), Some(y)) if x.is_numeric() && y.is_numeric() => true,
            (Some(DataType::Timestamp), Some(DataType::Int))
            | (Some(DataType::Int), Some(DataType::Timestamp)) => true,
            _ => false,
        };
        if !ok {
            return Err(ExprError::new(format!(
                "`{e}`: cannot compare {} with {}",
                type_name(a.ty),
                type_name(b.ty)
            )));
        }
        Ok((a, b))
    }

    fn binary(
        &self,
        e: &ast::Expr,
        left: &ast::Expr,
        op: &BinaryOperator,
        right: &ast::Expr,
    ) -> Result<Typed, ExprError> {
        let l = self.node(left)?;
        let r = self.node(right)?;
        let op = match op {
            BinaryOperator::Plus => BinOp::Add,
            BinaryOperator::Minus => BinOp::Sub,
            BinaryOperator::Multiply => BinOp::Mul,
            BinaryOperator::Divide => BinOp::Div,
            BinaryOperator::Modulo => BinOp::Mod,
            BinaryOperator::Eq => BinOp::Eq,
            BinaryOperator::NotEq => BinOp::NotEq,
            BinaryOperator::Lt => BinOp::Lt,
            BinaryOperator::LtEq => BinOp::LtEq,
            BinaryOperator::Gt => BinOp::Gt,
            BinaryOperator::GtEq => BinOp::GtEq,
            BinaryOperator::And => BinOp::And,
            BinaryOperator::Or => BinOp::Or,
            BinaryOperator::StringConcat => BinOp::Concat,
            other => {
                return Err(ExprError::new(format!(
                    "`{e}`: operator `{other}` is not supported"
                )))
            }
        };
        let ty = match op {
            BinOp::Eq | BinOp::NotEq | BinOp::Lt | BinOp::LtEq | BinOp::Gt | BinOp::GtEq => {
                let (l, r) = self.comparable(e, &l, r)?;
                return Ok(Typed::new(
                    Node::Binary(op, Box::new(l.node), Box::new(r.node)),
                    DataType::Bool,
                ));
            }
            BinOp::And | BinOp::Or => {
                self.expect_bool(&l, left)?;
                self.expect_bool(&r, right)?;
                Some(DataType::Bool)
            }
            BinOp::Concat => Some(DataType::String),
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod => {
                match (op, l.ty, r.ty) {
                    (
                        BinOp::Add | BinOp::Sub,
                        Some(DataType::Timestamp),
                        Some(DataType::Int) | None,
                    ) => Some(DataType::Timestamp),
                    (BinOp::Add, Some(DataType::Int) | None, Some(DataType::Timestamp)) => {
                        Some(DataType::Timestamp)
                    }
                    (BinOp::Sub, Some(DataType::Timestamp), Some(DataType::Timestamp)) => {
                        Some(DataType::Int)
                    }
                    _ => match numeric(l.ty, r.ty) {
                        Some(ty) => ty,
                        None => {
                            let hint = if op == BinOp::Add
                                && (l.ty == Some(DataType::String)
                                    || r.ty == Some(DataType::String))
                            {
                                "; use || to join strings"
                            } else {
                                ""
                            };
                            return Err(ExprError::new(format!(
                                "`{e}`: cannot apply `{}` to {} and {}{hint}",
                                match op {
                                    BinOp::Add => "+",
                                    BinOp::Sub => "-",
                                    BinOp::Mul => "*",
                                    BinOp::Div => "/",
                                    _ => "%",
                                },
                                type_name(l.ty),
                                type_name(r.ty)
                            )));
                        }
                    },
                }
            }
        };
        Ok(Typed {
            node: Node::Binary(op, Box::new(l.node), Box::new(r.node)),
            ty,
        })
    }

    fn case(
        &self,
        e: &ast::Expr,
        operand: Option<&ast::Expr>,
        conditions: &[ast::CaseWhen],
        else_result: Option<&ast::Expr>,
    ) -> Result<Typed, ExprError> {
        let operand = operand.map(|o| self.node(o)).transpose()?;
        let mut whens = Vec::with_capacity(conditions.len());
        let mut ty: Option<DataType> = None;
        let mut unify = |t: Option<DataType>| -> Result<(), ExprError> {
            ty = match (ty, t) {
                (None, t) | (t, None) => t,
                (Some(a), Some(b)) if a == b => Some(a),
                (Some(a), Some(b)) if a.is_numeric() && b.is_numeric() => Some(DataType::Float),
                (Some(a), Some(b)) => {
                    return Err(ExprError::new(format!(
                        "`{e}`: CASE branches mix {a} and {b}"
                    )))
                }
            };
            Ok(())
        };
        for when in conditions {
            let cond = self.node(&when.condition)?;
            let cond = match &operand {
                Some(op) => {
                    let (op, v) = self.comparable(e, op, cond)?;
                    Node::Binary(BinOp::Eq, Box::new(op.node), Box::new(v.node))
                }
                None => {
                    self.expect_bool(&cond, &when.condition)?;
                    cond.node
                }
            };
            let result = self.node(&when.result)?;
            unify(result.ty)?;
            whens.push((cond, result.node));
        }
        let otherwise = match else_result {
            Some(x) => {
                let t = self.node(x)?;
                unify(t.ty)?;
                Some(Box::new(t.node))
            }
            None => None,
        };
        let node = Node::Case(whens, otherwise);
        let node = match ty {
            // Branches of int and float: every branch is read as float.
            Some(DataType::Float) => Node::Cast(Box::new(node), DataType::Float),
            _ => node,
        };
        Ok(Typed { node, ty })
    }

    fn function(&self, e: &ast::Expr, call: &ast::Function) -> Result<Typed, ExprError> {
        let name = call.name.to_string().to_ascii_lowercase();
        let func = match name.as_str() {
            "lower" => Func::Lower,
            "upper" => Func::Upper,
            "length" | "char_length" | "character_length" => Func::Length,
            "trim" => Func::Trim,
            "abs" => Func::Abs,
            "round" => Func::Round,
            "floor" => Func::Floor,
            "ceil" | "ceiling" => Func::Ceil,
            "coalesce" | "ifnull" => Func::Coalesce,
            "concat" => Func::Concat,
            "greatest" => Func::Greatest,
            "least" => Func::Least,
            "epoch_ms" | "to_epoch_millis" => Func::EpochMillis,
            "date_trunc" => Func::DateTrunc,
            "count" | "sum" | "avg" | "min" | "max" => {
                return Err(ExprError::new(format!(
                    "`{e}`: aggregates belong in a window or rolling step's `aggregates:`"
                )))
            }
            _ => {
                return Err(ExprError::new(format!(
                "`{e}`: unknown function `{name}` (known: lower, upper, length, trim, abs, round, \
                     floor, ceil, coalesce, concat, greatest, least, epoch_ms, date_trunc)"
            )))
            }
        };
        let FunctionArguments::List(list) = &call.args else {
            return Err(ExprError::new(format!("`{e}`: expected an argument list")));
        };
        let mut args = Vec::with_capacity(list.args.len());
        for arg in &list.args {
            match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => args.push(self.node(x)?),
                _ => {
                    return Err(ExprError::new(format!(
                        "`{e}`: only plain arguments are supported"
                    )))
                }
            }
        }
        self.call_typed(e, func, args)
    }

    fn call_typed(&self, e: &ast::Expr, func: Func, args: Vec<Typed>) -> Result<Typed, ExprError> {
        let arity = |lo: usize, hi: usize| -> Result<(), ExprError> {
            if args.len() < lo || args.len() > hi {
                let n = if lo == hi {
                    lo.to_string()
                } else if hi == usize::MAX {
                    format!("at least {lo}")
                } else {
                    format!("{lo} or {hi}")
                };
                return Err(ExprError::new(format!(
                    "`{e}`: expected {n} argument(s), got {}",
                    args.len()
                )));
            }
            Ok(())
        };
        let want = |i: usize, ok: &dyn Fn(DataType) -> bool, what: &str| -> Result<(), ExprError> {
            match args[i].ty {
                None => Ok(()),
                Some(t) if ok(t) => Ok(()),
                Some(t) => Err(ExprError::new(format!(
                    "`{e}`: argument {} must be {what}, got {t}",
                    i + 1
                ))),
            }
        };
        let is_str = |t: DataType| t == DataType::String;
        let is_num = |t: DataType| t.is_numeric();
        let ty = match func {
            Func::Lower | Func::Upper | Func::Trim => {
                arity(1, 1)?;
                want(0, &is_str, "a string")?;
                Some(DataType::String)
            }
            Func::Length => {
                arity(1, 1)?;
                want(0, &is_str, "a string")?;
                Some(DataType::Int)
            }
            Func::Abs | Func::Floor | Func::Ceil => {
                arity(1, 1)?;
                want(0, &is_num, "a number")?;
                args[0].ty
            }
            Func::Round => {
                arity(1, 2)?;
                want(0, &is_num, "a number")?;
                if args.len() == 2 {
                    want(1, &|t| t == DataType::Int, "an int")?;
                }
                args[0].ty
            }
            Func::Coalesce | Func::Greatest | Func::Least => {
                arity(1, usize::MAX)?;
                let mut ty = None;
                for a in &args {
                    ty = match (ty, a.ty) {
                        (None, t) | (t, None) => t,
                        (Some(x), Some(y)) if x == y => Some(x),
                        (Some(x), Some(y)) if x.is_numeric() && y.is_numeric() => {
                            Some(DataType::Float)
                        }
                        (Some(x), Some(y)) => {
                            return Err(ExprError::new(format!("`{e}`: arguments mix {x} and {y}")))
                        }
                    };
                }
                ty
            }
            Func::Concat => {
                arity(1, usize::MAX)?;
                Some(DataType::String)
            }
            Func::EpochMillis => {
                arity(1, 1)?;
                want(0, &|t| t == DataType::Timestamp, "a timestamp")?;
                Some(DataType::Int)
            }
            Func::DateTrunc => {
                arity(2, 2)?;
                want(
                    0,
                    &is_str,
                    "a unit string ('second', 'minute', 'hour', 'day')",
                )?;
                want(1, &|t| t == DataType::Timestamp, "a timestamp")?;
                match &args[0].node {
                    Node::Literal(Value::Str(u))
                        if ["second", "minute", "hour", "day"]
                            .contains(&u.to_ascii_lowercase().as_str()) => {}
                    _ => {
                        return Err(ExprError::new(format!(
                            "`{e}`: the unit must be one of 'second', 'minute', 'hour', 'day'"
                        )))
                    }
                }
                Some(DataType::Timestamp)
            }
        };
        // Mixed int/float arguments of greatest/least/coalesce are evaluated as floats.
        let nodes = args
            .into_iter()
            .map(|a| match (ty, a.ty) {
                (Some(DataType::Float), Some(DataType::Int))
                    if matches!(func, Func::Coalesce | Func::Greatest | Func::Least) =>
                {
                    Node::Cast(Box::new(a.node), DataType::Float)
                }
                _ => a.node,
            })
            .collect();
        Ok(Typed {
            node: Node::Call(func, nodes),
            ty,
        })
    }
}

impl LikePattern {
    fn new(pattern: &str, case_insensitive: bool) -> Self {
        let pattern = if case_insensitive {
            pattern.to_lowercase()
        } else {
            pattern.to_string()
        };
        let mut parts = Vec::new();
        let mut literal = String::new();
        for c in pattern.chars() {
            match c {
                '%' | '_' => {
                    if !literal.is_empty() {
                        parts.push(LikePart::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(if c == '%' {
                        LikePart::AnyRun
                    } else {
                        LikePart::AnyOne
                    });
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(LikePart::Literal(literal));
        }
        LikePattern {
            parts,
            case_insensitive,
        }
    }
}
