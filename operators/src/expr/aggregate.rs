//! Aggregate calls of window and rolling steps: `count(*)`, `sum(amount * 2)`, ...

use sqlparser::ast::{self, DuplicateTreatment, FunctionArg, FunctionArgExpr, FunctionArguments};
use weir_engine::data::{DataType, Schema};

use super::compile::{parse, Compiler};
use super::{Expr, ExprError};

/// Aggregate functions of window and rolling steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggregateFunction {
    /// `count(*)` or `count(expr)` (non-null values).
    Count,
    /// `sum(expr)`.
    Sum,
    /// `avg(expr)`.
    Avg,
    /// `min(expr)`.
    Min,
    /// `max(expr)`.
    Max,
}

impl AggregateFunction {
    /// The SQL name.
    pub fn name(self) -> &'static str {
        match self {
            AggregateFunction::Count => "count",
            AggregateFunction::Sum => "sum",
            AggregateFunction::Avg => "avg",
            AggregateFunction::Min => "min",
            AggregateFunction::Max => "max",
        }
    }
}

/// A parsed aggregate such as `sum(amount)`.
#[derive(Clone, Debug)]
pub struct AggregateCall {
    /// The function.
    pub function: AggregateFunction,
    /// The argument; `None` for `count(*)`.
    pub argument: Option<Expr>,
    /// The type of the aggregate's result.
    pub output: DataType,
}

/// Parses one aggregate call (`count(*)`, `sum(amount * 2)`, `max(ts)`) against `schema`.
pub fn parse_aggregate(text: &str, schema: &Schema) -> Result<AggregateCall, ExprError> {
    let ast = parse(text)?;
    let not_aggregate = || {
        ExprError::new(format!(
            "`{text}` is not an aggregate: expected one of count(*), count(x), sum(x), avg(x), \
             min(x), max(x)"
        ))
    };
    let ast::Expr::Function(call) = &ast else {
        return Err(not_aggregate());
    };
    let function = match call.name.to_string().to_ascii_lowercase().as_str() {
        "count" => AggregateFunction::Count,
        "sum" => AggregateFunction::Sum,
        "avg" | "mean" => AggregateFunction::Avg,
        "min" => AggregateFunction::Min,
        "max" => AggregateFunction::Max,
        _ => return Err(not_aggregate()),
    };
    let FunctionArguments::List(list) = &call.args else {
        return Err(not_aggregate());
    };
    if matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct)) {
        return Err(ExprError::new(format!(
            "`{text}`: DISTINCT aggregates are not supported"
        )));
    }
    if call.filter.is_some() || !list.clauses.is_empty() {
        return Err(ExprError::new(format!(
            "`{text}`: FILTER / ORDER BY inside aggregates are not supported; filter in a step \
             before the window"
        )));
    }
    let argument = match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)]
            if function == AggregateFunction::Count =>
        {
            None
        }
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))] => {
            let typed = Compiler { schema }.node(arg)?;
            Some(Expr {
                node: typed.node,
                dtype: typed.ty,
                text: arg.to_string(),
            })
        }
        _ => {
            return Err(ExprError::new(format!(
                "`{text}`: {} takes exactly one argument{}",
                function.name(),
                if function == AggregateFunction::Count {
                    " or *"
                } else {
                    ""
                }
            )))
        }
    };
    let arg_type = argument.as_ref().and_then(Expr::dtype);
    let output = match function {
        AggregateFunction::Count => DataType::Int,
        AggregateFunction::Avg => match arg_type {
            Some(t) if t.is_numeric() => DataType::Float,
            other => return Err(bad_aggregate_arg(text, function, other)),
        },
        AggregateFunction::Sum => match arg_type {
            Some(t) if t.is_numeric() => t,
            other => return Err(bad_aggregate_arg(text, function, other)),
        },
        AggregateFunction::Min | AggregateFunction::Max => match arg_type {
            Some(
                t @ (DataType::Int | DataType::Float | DataType::Timestamp | DataType::String),
            ) => t,
            other => return Err(bad_aggregate_arg(text, function, other)),
        },
    };
    Ok(AggregateCall {
        function,
        argument,
        output,
    })
}

fn bad_aggregate_arg(text: &str, f: AggregateFunction, ty: Option<DataType>) -> ExprError {
    let expected = match f {
        AggregateFunction::Sum | AggregateFunction::Avg => "an int or float",
        _ => "an int, float, timestamp or string",
    };
    ExprError::new(format!(
        "`{text}`: {} needs {expected} argument, got {}",
        f.name(),
        ty.map_or("NULL".to_string(), |t| t.to_string())
    ))
}
