//! Steps: their order in the dataflow, their inputs, and what each computes.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use weir_engine::data::{DataType, Field, Schema, SchemaRef};
use weir_operators::aggregate::Aggregates;
use weir_operators::expr::Expr;
use weir_operators::window::WindowKind;

use super::check::positive;
use super::StepOp;
use crate::error::SpecError;
use crate::spec::{Dur, JobSpec, StepSpec, WindowSpec};

/// What a stream name refers to.
pub(super) enum Producer<'a> {
    Source,
    DeadLetter,
    Step(&'a str),
    Late(&'a str),
    LateRight(&'a str),
}

pub(super) fn resolve<'a>(from: &'a str, spec: &'a JobSpec) -> Option<Producer<'a>> {
    if spec.sources.contains_key(from) {
        return Some(Producer::Source);
    }
    if spec.steps.contains_key(from) {
        return Some(Producer::Step(from));
    }
    if let Some(src) = from.strip_suffix(".dead_letter") {
        if spec.sources.contains_key(src) {
            return Some(Producer::DeadLetter);
        }
    }
    if let Some(step) = from.strip_suffix(".late_right") {
        if let Some((name, _)) = spec.steps.get_key_value(step) {
            return Some(Producer::LateRight(name.as_str()));
        }
    }
    if let Some(step) = from.strip_suffix(".late") {
        if let Some((name, _)) = spec.steps.get_key_value(step) {
            return Some(Producer::Late(name.as_str()));
        }
    }
    None
}

pub(super) fn known_streams(spec: &JobSpec) -> String {
    let mut names = Vec::new();
    for s in spec.sources.keys() {
        names.push(s.clone());
        names.push(format!("{s}.dead_letter"));
    }
    for (s, step) in &spec.steps {
        names.push(s.clone());
        if step.has_late_output() {
            names.push(format!("{s}.late"));
        }
        if step.join.is_some() {
            names.push(format!("{s}.late_right"));
        }
    }
    names.join(", ")
}

/// Orders steps so every step comes after the steps it reads; reports cycles (unknown
/// inputs are reported by the caller).
pub(super) fn order_steps<'a>(spec: &'a JobSpec, errors: &mut Vec<SpecError>) -> Vec<&'a str> {
    let mut order = Vec::new();
    // 0: unvisited, 1: on the current path, 2: done.
    let mut mark: HashMap<&str, u8> = HashMap::new();
    let mut reported_cycles = BTreeSet::new();
    fn upstream<'a>(spec: &'a JobSpec, step: &str) -> Vec<&'a str> {
        spec.steps[step]
            .inputs()
            .into_iter()
            .filter_map(|from| match resolve(from, spec) {
                Some(Producer::Step(up) | Producer::Late(up) | Producer::LateRight(up)) => Some(up),
                _ => None,
            })
            .collect()
    }
    for name in spec.steps.keys() {
        // Depth-first, with an explicit stack of (step, its upstream steps still to visit).
        let mut path: Vec<(&str, Vec<&str>)> = Vec::new();
        if mark.get(name.as_str()).copied().unwrap_or(0) == 0 {
            mark.insert(name.as_str(), 1);
            path.push((name.as_str(), upstream(spec, name)));
        }
        while let Some((current, pending)) = path.last_mut() {
            let current = *current;
            let Some(next) = pending.pop() else {
                mark.insert(current, 2);
                order.push(current);
                path.pop();
                continue;
            };
            match mark.get(next).copied().unwrap_or(0) {
                2 => {}
                1 => {
                    let start = path.iter().position(|(s, _)| *s == next).unwrap_or(0);
                    let cycle: Vec<&str> = path[start..].iter().map(|(s, _)| *s).collect();
                    let first = cycle.iter().min().copied().unwrap_or(next);
                    if reported_cycles.insert(first.to_string()) {
                        let mut shown = cycle.join(" → ");
                        let _ = write!(shown, " → {next}");
                        let field = if spec.steps[first].join.is_some() {
                            "join"
                        } else {
                            "from"
                        };
                        errors.push(SpecError::new(
                            format!("steps.{first}.{field}"),
                            format!("steps form a cycle: {shown}"),
                        ));
                    }
                }
                _ => {
                    mark.insert(next, 1);
                    path.push((next, upstream(spec, next)));
                }
            }
        }
    }
    order
}

pub(super) fn plan_step(
    name: &str,
    step: &StepSpec,
    inputs: &[(String, SchemaRef)],
    errors: &mut Vec<SpecError>,
) -> Option<(StepOp, SchemaRef)> {
    if let Some(planned) = super::keyed::plan_keyed(name, step, inputs, errors) {
        return planned;
    }
    let input = &inputs.first()?.1;
    let path = format!("steps.{name}");
    let before = errors.len();
    let is_window = step.window.is_some() || step.aggregates.is_some();
    if is_window {
        for (field, present) in [
            ("filter", step.filter.is_some()),
            ("project", step.project.is_some()),
        ] {
            if present {
                errors.push(SpecError::new(
                    format!("{path}.{field}"),
                    "a window step cannot also filter or project: use a separate step before it",
                ));
            }
        }
        let Some(window) = &step.window else {
            errors.push(SpecError::new(
                format!("{path}.window"),
                "required with `aggregates`: { kind: tumbling | sliding | session, ... }",
            ));
            return None;
        };
        let kind = window_kind(&format!("{path}.window"), window, errors);
        let keys = step.key.as_ref().map(|k| k.to_vec()).unwrap_or_default();
        let mut key_columns = Vec::new();
        let mut fields = Vec::new();
        for key in &keys {
            match input.index_of(key) {
                Some(i) => {
                    key_columns.push(i);
                    fields.push(Field::new(key.clone(), input.field(i).dtype));
                }
                None => errors.push(SpecError::new(
                    format!("{path}.key"),
                    format!("unknown column `{key}` (columns: {})", input.column_list()),
                )),
            }
        }
        fields.push(Field::required("window_start", DataType::Timestamp));
        fields.push(Field::required("window_end", DataType::Timestamp));
        let Some(specs) = step.aggregates.as_ref().filter(|a| !a.is_empty()) else {
            errors.push(SpecError::new(
                format!("{path}.aggregates"),
                "required: output column → aggregate, like { n: \"count(*)\" }",
            ));
            return None;
        };
        let aggregates =
            match Aggregates::compile(specs.iter().map(|(k, v)| (k.as_str(), v.as_str())), input) {
                Ok(a) => a,
                Err((agg, e)) => {
                    errors.push(SpecError::new(
                        format!("{path}.aggregates.{agg}"),
                        e.message,
                    ));
                    return None;
                }
            };
        for agg in aggregates.list() {
            let nullable = agg.call.function != weir_operators::expr::AggregateFunction::Count;
            fields.push(Field {
                name: agg.name.clone(),
                dtype: agg.call.output,
                nullable,
            });
        }
        let schema = match Schema::new(fields) {
            Ok(s) => s,
            Err(e) => {
                errors.push(SpecError::new(
                    format!("{path}.aggregates"),
                    format!("output {e}: rename the aggregate"),
                ));
                return None;
            }
        };
        let allowed_lateness = step.allowed_lateness.map_or(0, Dur::millis);
        let kind = kind?;
        (errors.len() == before).then(|| {
            (
                StepOp::Window {
                    key_columns,
                    kind,
                    allowed_lateness,
                    aggregates: Arc::new(aggregates),
                },
                Arc::new(schema),
            )
        })
    } else {
        for (field, present) in [
            ("key", step.key.is_some()),
            ("allowed_lateness", step.allowed_lateness.is_some()),
        ] {
            if present {
                errors.push(SpecError::new(
                    format!("{path}.{field}"),
                    "only window steps take this field",
                ));
            }
        }
        if step.filter.is_none() && step.project.is_none() {
            errors.push(SpecError::new(
                path.clone(),
                "a step needs `filter`, `project`, `window` with `aggregates`, `rule`, `rolling` or `join`",
            ));
            return None;
        }
        let filter = step
            .filter
            .as_deref()
            .and_then(|text| match Expr::compile(text, input) {
                Ok(e) if matches!(e.dtype(), Some(DataType::Bool) | None) => Some(e),
                Ok(e) => {
                    errors.push(SpecError::new(
                        format!("{path}.filter"),
                        format!(
                            "`{text}` is a {}, expected a boolean condition",
                            e.dtype().map_or("NULL".into(), |t| t.to_string())
                        ),
                    ));
                    None
                }
                Err(e) => {
                    errors.push(SpecError::new(format!("{path}.filter"), e.message));
                    None
                }
            });
        let mut schema = input.clone();
        let project = match &step.project {
            None => None,
            Some(columns) if columns.is_empty() => {
                errors.push(SpecError::new(
                    format!("{path}.project"),
                    "needs at least one column",
                ));
                None
            }
            Some(columns) => {
                let mut exprs = Vec::new();
                let mut fields = Vec::new();
                for (column, text) in columns {
                    match Expr::compile(text, input) {
                        Ok(e) => match e.dtype() {
                            Some(dtype) => {
                                let nullable =
                                    e.as_column().is_none_or(|c| input.field(c).nullable);
                                fields.push(Field {
                                    name: column.clone(),
                                    dtype,
                                    nullable,
                                });
                                exprs.push(e);
                            }
                            None => errors.push(SpecError::new(
                                format!("{path}.project.{column}"),
                                format!("the type of `{text}` is unknown: CAST it"),
                            )),
                        },
                        Err(e) => errors.push(SpecError::new(
                            format!("{path}.project.{column}"),
                            e.message,
                        )),
                    }
                }
                if let Ok(s) = Schema::new(fields) {
                    schema = Arc::new(s);
                }
                Some(exprs)
            }
        };
        (errors.len() == before).then_some((StepOp::FilterProject { filter, project }, schema))
    }
}

/// Checks a `window:` section.
pub(super) fn window_kind(
    wpath: &str,
    window: &WindowSpec,
    errors: &mut Vec<SpecError>,
) -> Option<WindowKind> {
    let size = positive(&format!("{wpath}.size"), window.size, errors);
    let slide = positive(&format!("{wpath}.slide"), window.slide, errors);
    let gap = positive(&format!("{wpath}.gap"), window.gap, errors);
    let ms = |d: Duration| d.as_millis().min(i64::MAX as u128) as i64;
    let mut forbid = |field: &str, present: bool, kind: &str| {
        if present {
            errors.push(SpecError::new(
                format!("{wpath}.{field}"),
                format!("not a field of a {kind} window"),
            ));
        }
    };
    let kind = match window.kind.as_str() {
        "tumbling" => {
            forbid("slide", window.slide.is_some(), "tumbling");
            forbid("gap", window.gap.is_some(), "tumbling");
            size.map(|s| WindowKind::Tumbling { size: ms(s) })
        }
        "sliding" | "hopping" => {
            forbid("gap", window.gap.is_some(), "sliding");
            match (size, slide) {
                (Some(size), Some(slide)) if slide > size => {
                    errors.push(SpecError::new(format!("{wpath}.slide"), format!("{slide:?} is longer than the window ({size:?}): records between windows would be lost")));
                    None
                }
                (Some(size), Some(slide)) => Some(WindowKind::Sliding {
                    size: ms(size),
                    slide: ms(slide),
                }),
                _ => {
                    if window.slide.is_none() {
                        errors.push(SpecError::new(
                            format!("{wpath}.slide"),
                            "required for sliding windows",
                        ));
                    }
                    None
                }
            }
        }
        "session" => {
            forbid("size", window.size.is_some(), "session");
            forbid("slide", window.slide.is_some(), "session");
            if window.gap.is_none() {
                errors.push(SpecError::new(
                    format!("{wpath}.gap"),
                    "required for session windows",
                ));
            }
            gap.map(|g| WindowKind::Session { gap: ms(g) })
        }
        other => {
            errors.push(SpecError::new(
                format!("{wpath}.kind"),
                format!("unknown window kind `{other}`: expected tumbling, sliding or session"),
            ));
            None
        }
    };
    if matches!(window.kind.as_str(), "tumbling" | "sliding" | "hopping") && window.size.is_none() {
        errors.push(SpecError::new(
            format!("{wpath}.size"),
            format!("required for {} windows", window.kind),
        ));
    }
    kind
}
