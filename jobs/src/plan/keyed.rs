//! Planning of the steps run in event-time order per key: rules, rolling aggregates, joins.

use std::sync::Arc;

use weir_engine::data::{DataType, Field, Schema, SchemaRef};
use weir_operators::aggregate::Aggregates;
use weir_operators::expr::{AggregateFunction, Expr};
use weir_operators::join::{parse_equi_join, IntervalJoin, JoinType, TemporalJoin, WindowJoin};
use weir_operators::rolling::Rolling;
use weir_operators::rule::{alert_schema, Pattern, PatternKind, RuleUpdates, Threshold};
use weir_operators::window::WindowKind;

use super::check::{condition, key_columns, positive};
use super::steps::window_kind;
use super::{KeyedOp, StepOp};
use crate::error::SpecError;
use crate::spec::{Dur, JoinSpec, RollingSpec, RuleSpec, StepSpec};

/// Step-level fields that only filter/project/window steps take.
fn forbid_step_fields(path: &str, step: &StepSpec, kind: &str, errors: &mut Vec<SpecError>) {
    for (field, present) in [
        ("filter", step.filter.is_some()),
        ("project", step.project.is_some()),
        ("key", step.key.is_some()),
        ("window", step.window.is_some()),
        ("aggregates", step.aggregates.is_some()),
    ] {
        if present {
            errors.push(SpecError::new(
                format!("{path}.{field}"),
                format!("not a field of a {kind} step (use a separate step)"),
            ));
        }
    }
}

fn forbid(path: &str, fields: &[(&str, bool)], kind: &str, errors: &mut Vec<SpecError>) {
    for (field, present) in fields {
        if *present {
            errors.push(SpecError::new(
                format!("{path}.{field}"),
                format!("not a field of a {kind}"),
            ));
        }
    }
}

/// The steps of this module, when `step` is one of them.
pub(super) fn plan_keyed(
    name: &str,
    step: &StepSpec,
    inputs: &[(String, SchemaRef)],
    errors: &mut Vec<SpecError>,
) -> Option<Option<(StepOp, SchemaRef)>> {
    let path = format!("steps.{name}");
    let kinds = [
        ("rule", step.rule.is_some()),
        ("rolling", step.rolling.is_some()),
        ("join", step.join.is_some()),
    ];
    let given: Vec<&str> = kinds.iter().filter(|k| k.1).map(|k| k.0).collect();
    if given.len() > 1 {
        errors.push(SpecError::new(
            path,
            format!(
                "a step is one of rule, rolling or join, not {}",
                given.join(" and ")
            ),
        ));
        return Some(None);
    }
    let lateness = step.allowed_lateness.map_or(0, Dur::millis);
    let (kind, input) = match (given.first(), inputs.first()) {
        (Some(kind), Some((_, schema))) => (*kind, schema),
        (Some(_), None) => return Some(None),
        (None, _) => return None,
    };
    forbid_step_fields(&path, step, kind, errors);
    let before = errors.len();
    let planned = match kind {
        "rule" => plan_rule(
            name,
            &path,
            step.rule.as_ref()?,
            input,
            inputs.get(1).map(|(_, s)| s),
            errors,
        ),
        "rolling" => plan_rolling(&path, step.rolling.as_ref()?, input, errors),
        _ => {
            if step.from.is_some() {
                errors.push(SpecError::new(
                    format!("{path}.from"),
                    "a join step names its inputs in `join.left` and `join.right`",
                ));
            }
            plan_join(&path, step.join.as_ref()?, inputs, errors)
        }
    };
    Some(planned.filter(|_| errors.len() == before).map(
        |(summary, key_columns, process, schema)| {
            let control = key_columns.len() < inputs.len();
            (
                StepOp::Keyed {
                    summary,
                    key_columns,
                    allowed_lateness: lateness,
                    control,
                    process: Box::new(process),
                },
                schema,
            )
        },
    ))
}

type Planned = (String, Vec<Vec<usize>>, KeyedOp, SchemaRef);

/// The id column of rule alerts: the one named, or `id`, or the first `*_id` column that is
/// not a key.
fn id_column(
    path: &str,
    named: Option<&str>,
    keys: &[usize],
    schema: &Schema,
    errors: &mut Vec<SpecError>,
) -> Option<usize> {
    match named {
        Some(name) => match schema.index_of(name) {
            Some(i) => Some(i),
            None => {
                errors.push(SpecError::new(
                    format!("{path}.id"),
                    format!(
                        "unknown column `{name}` (columns: {})",
                        schema.column_list()
                    ),
                ));
                None
            }
        },
        None => schema.index_of("id").or_else(|| {
            (0..schema.len()).find(|i| !keys.contains(i) && schema.field(*i).name.ends_with("_id"))
        }),
    }
}

fn key_fields(columns: &[usize], schema: &Schema) -> Vec<Field> {
    columns.iter().map(|&c| schema.field(c).clone()).collect()
}

/// The columns of a rule-updates stream.
fn plan_updates(
    upath: &str,
    name: String,
    schema: &Schema,
    input: &SchemaRef,
    errors: &mut Vec<SpecError>,
) -> Option<RuleUpdates> {
    let column = |col: &str, dtype: DataType, errors: &mut Vec<SpecError>| -> Option<usize> {
        let i = schema.index_of(col)?;
        let found = schema.field(i).dtype;
        if found != dtype {
            errors.push(SpecError::new(
                format!("{upath}.from"),
                format!("column `{col}` of the updates is a {found}, expected {dtype}"),
            ));
        }
        Some(i)
    };
    let Some(rule) = column("rule", DataType::String, errors) else {
        errors.push(SpecError::new(
            format!("{upath}.from"),
            format!(
                "rule updates need a string column `rule` naming the rule (columns: {})",
                schema.column_list()
            ),
        ));
        return None;
    };
    let updates = RuleUpdates {
        name,
        rule,
        threshold: column("threshold", DataType::Int, errors),
        sum_threshold: column("sum_threshold", DataType::Float, errors),
        condition: column("where", DataType::String, errors),
        enabled: column("enabled", DataType::Bool, errors),
        input: input.clone(),
    };
    if updates.threshold.is_none()
        && updates.sum_threshold.is_none()
        && updates.condition.is_none()
        && updates.enabled.is_none()
    {
        errors.push(SpecError::new(
            format!("{upath}.from"),
            "rule updates change at least one of the columns threshold (int), sum_threshold \
             (float), where (string), enabled (bool)",
        ));
        return None;
    }
    Some(updates)
}

fn plan_rule(
    step: &str,
    path: &str,
    rule: &RuleSpec,
    input: &SchemaRef,
    updates_schema: Option<&SchemaRef>,
    errors: &mut Vec<SpecError>,
) -> Option<Planned> {
    let rpath = format!("{path}.rule");
    let keys = key_columns(&format!("{rpath}.key"), &rule.key.to_vec(), input, errors);
    let id = id_column(
        &rpath,
        rule.id.as_deref(),
        keys.as_deref().unwrap_or(&[]),
        input,
        errors,
    );
    let kind = rule.kind.as_deref().unwrap_or("threshold");
    match kind {
        "threshold" => {
            forbid(
                &rpath,
                &[
                    ("first", rule.first.is_some()),
                    ("then", rule.then.is_some()),
                    ("within", rule.within.is_some()),
                ],
                "threshold rule",
                errors,
            );
            let over = positive(&format!("{rpath}.count_over"), rule.count_over, errors);
            if rule.count_over.is_none() {
                errors.push(SpecError::new(
                    format!("{rpath}.count_over"),
                    "required: the trailing window, like 10m",
                ));
            }
            if let Some(t) = rule.threshold.filter(|t| *t < 0) {
                errors.push(SpecError::new(
                    format!("{rpath}.threshold"),
                    format!("{t} is negative: alert when the count exceeds a number ≥ 0"),
                ));
            }
            let sum = match (&rule.sum_over, rule.sum_threshold) {
                (None, None) => None,
                (Some(text), Some(limit)) => match Expr::compile(text, input) {
                    Ok(e) if matches!(e.dtype(), Some(DataType::Int | DataType::Float)) => {
                        Some((e, limit))
                    }
                    Ok(_) => {
                        errors.push(SpecError::new(
                            format!("{rpath}.sum_over"),
                            format!("`{text}` is not a number"),
                        ));
                        None
                    }
                    Err(e) => {
                        errors.push(SpecError::new(format!("{rpath}.sum_over"), e.message));
                        None
                    }
                },
                (Some(_), None) => {
                    errors.push(SpecError::new(
                        format!("{rpath}.sum_threshold"),
                        "required with `sum_over`",
                    ));
                    None
                }
                (None, Some(_)) => {
                    errors.push(SpecError::new(
                        format!("{rpath}.sum_over"),
                        "required with `sum_threshold`: the expression summed",
                    ));
                    None
                }
            };
            if rule.threshold.is_none() && rule.sum_threshold.is_none() {
                errors.push(SpecError::new(
                    format!("{rpath}.threshold"),
                    "required (or `sum_over` with `sum_threshold`)",
                ));
            }
            let cond = rule
                .condition
                .as_deref()
                .and_then(|t| condition(&format!("{rpath}.where"), t, input, errors));
            let keys = keys?;
            let over = over?.as_millis().min(i64::MAX as u128) as i64;
            let schema = alert_schema(key_fields(&keys, input), sum.is_some())
                .map_err(|e| errors.push(SpecError::new(format!("{rpath}.key"), e)))
                .ok()?;
            let mut summary = format!(
                "rule threshold by [{}]: over {}",
                rule.key.to_vec().join(", "),
                humantime::format_duration(std::time::Duration::from_millis(over as u64))
            );
            if let Some(t) = rule.threshold {
                summary.push_str(&format!(", count > {t}"));
            }
            if let Some((e, limit)) = &sum {
                summary.push_str(&format!(", sum({e}) > {limit}"));
            }
            if let Some(c) = &cond {
                summary.push_str(&format!(" where {c}"));
            }
            let updates = match (&rule.updates, updates_schema) {
                (Some(u), Some(schema)) => Some(plan_updates(
                    &format!("{rpath}.updates"),
                    u.name.clone().unwrap_or_else(|| step.to_string()),
                    schema,
                    input,
                    errors,
                )?),
                _ => None,
            };
            if let Some(u) = &rule.updates {
                summary.push_str(&format!(", updated from {}", u.from));
            }
            let mut process = Threshold::new(keys.len(), over, rule.threshold, sum, cond, id);
            if let Some(u) = updates {
                process = process.with_updates(u);
            }
            Some((
                summary,
                vec![keys],
                KeyedOp::Threshold(process),
                Arc::new(schema),
            ))
        }
        "sequence" | "absence" => {
            forbid(
                &rpath,
                &[
                    ("count_over", rule.count_over.is_some()),
                    ("threshold", rule.threshold.is_some()),
                    ("where", rule.condition.is_some()),
                    ("sum_over", rule.sum_over.is_some()),
                    ("sum_threshold", rule.sum_threshold.is_some()),
                    ("updates", rule.updates.is_some()),
                ],
                &format!("{kind} rule"),
                errors,
            );
            let mut required = |field: &str, text: &Option<String>| match text {
                Some(t) => condition(&format!("{rpath}.{field}"), t, input, errors),
                None => {
                    errors.push(SpecError::new(
                        format!("{rpath}.{field}"),
                        format!("required for a {kind} rule: an SQL condition"),
                    ));
                    None
                }
            };
            let first = required("first", &rule.first);
            let then = required("then", &rule.then);
            let within = positive(&format!("{rpath}.within"), rule.within, errors);
            if rule.within.is_none() {
                errors.push(SpecError::new(
                    format!("{rpath}.within"),
                    format!("required for a {kind} rule, like 5m"),
                ));
            }
            let (keys, first, then, within) = (keys?, first?, then?, within?);
            let within = within.as_millis().min(i64::MAX as u128) as i64;
            let schema = alert_schema(key_fields(&keys, input), false)
                .map_err(|e| errors.push(SpecError::new(format!("{rpath}.key"), e)))
                .ok()?;
            let pattern_kind = if kind == "sequence" {
                PatternKind::Sequence
            } else {
                PatternKind::Absence
            };
            let summary = format!(
                "rule {kind} by [{}]: {first} {} {then} within {}",
                rule.key.to_vec().join(", "),
                if kind == "sequence" {
                    "followed by"
                } else {
                    "not followed by"
                },
                humantime::format_duration(std::time::Duration::from_millis(within as u64))
            );
            let process = Pattern::new(pattern_kind, keys.len(), first, then, within, id);
            Some((
                summary,
                vec![keys],
                KeyedOp::Pattern(process),
                Arc::new(schema),
            ))
        }
        other => {
            errors.push(SpecError::new(
                format!("{rpath}.kind"),
                format!("unknown rule kind `{other}`: expected threshold, sequence or absence"),
            ));
            None
        }
    }
}

fn plan_rolling(
    path: &str,
    rolling: &RollingSpec,
    input: &SchemaRef,
    errors: &mut Vec<SpecError>,
) -> Option<Planned> {
    let rpath = format!("{path}.rolling");
    let keys = key_columns(
        &format!("{rpath}.key"),
        &rolling.key.to_vec(),
        input,
        errors,
    );
    let over = positive(&format!("{rpath}.over"), Some(rolling.over), errors);
    if rolling.aggregates.is_empty() {
        errors.push(SpecError::new(
            format!("{rpath}.aggregates"),
            "required: output column → aggregate, like { avg_temp: \"avg(temperature)\" }",
        ));
        return None;
    }
    let aggregates = match Aggregates::compile(
        rolling
            .aggregates
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
        input,
    ) {
        Ok(a) => a,
        Err((agg, e)) => {
            errors.push(SpecError::new(
                format!("{rpath}.aggregates.{agg}"),
                e.message,
            ));
            return None;
        }
    };
    let mut fields = input.fields().to_vec();
    for agg in aggregates.list() {
        fields.push(Field {
            name: agg.name.clone(),
            dtype: agg.call.output,
            nullable: agg.call.function != AggregateFunction::Count,
        });
    }
    let schema = match Schema::new(fields) {
        Ok(s) => s,
        Err(e) => {
            errors.push(SpecError::new(
                format!("{rpath}.aggregates"),
                format!("output {e}: rename the aggregate"),
            ));
            return None;
        }
    };
    let (keys, over) = (keys?, over?);
    let over = over.as_millis().min(i64::MAX as u128) as i64;
    let summary = format!(
        "rolling by [{}] over {}: {}",
        rolling.key.to_vec().join(", "),
        humantime::format_duration(std::time::Duration::from_millis(over as u64)),
        rolling
            .aggregates
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let process = Rolling::new(over, input.len(), Arc::new(aggregates));
    Some((
        summary,
        vec![keys],
        KeyedOp::Rolling(process),
        Arc::new(schema),
    ))
}

fn plan_join(
    path: &str,
    join: &JoinSpec,
    inputs: &[(String, SchemaRef)],
    errors: &mut Vec<SpecError>,
) -> Option<Planned> {
    let jpath = format!("{path}.join");
    let join_type = match join.join_type.as_deref() {
        None | Some("inner") => JoinType::Inner,
        Some("left") | Some("left_outer") => JoinType::LeftOuter,
        Some(other) => {
            errors.push(SpecError::new(
                format!("{jpath}.type"),
                format!("unknown join type `{other}`: expected inner or left"),
            ));
            JoinType::Inner
        }
    };
    let shapes = [
        ("within", join.within.is_some()),
        ("window", join.window.is_some()),
        ("temporal", join.temporal.is_some()),
        ("ttl", join.ttl.is_some()),
    ];
    let given: Vec<&str> = shapes.iter().filter(|s| s.1).map(|s| s.0).collect();
    match given.len() {
        0 => {
            errors.push(SpecError::new(
                jpath.clone(),
                "needs one of `within` (interval join), `window`, `temporal`, or `ttl` (a \
                 regular join must bound its state)",
            ));
            return None;
        }
        1 => {}
        _ => {
            errors.push(SpecError::new(
                jpath.clone(),
                format!(
                    "give one of within, window, temporal or ttl, not {}",
                    given.join(" and ")
                ),
            ));
            return None;
        }
    }
    if join.right.is_some()
        && join
            .temporal
            .as_ref()
            .is_some_and(|t| t.dimension.is_some())
    {
        errors.push(SpecError::new(
            format!("{jpath}.temporal.dimension"),
            "the dimension is already named by `join.right`",
        ));
        return None;
    }
    let [(_, left), (right_name, right)] = inputs else {
        errors.push(SpecError::new(
            format!("{jpath}.right"),
            "required: the right input stream (for temporal joins, or `temporal.dimension`)",
        ));
        return None;
    };
    // Key pairs: `on`, or a temporal join's `key` present on both sides.
    let pairs = match (
        &join.on,
        join.temporal.as_ref().and_then(|t| t.key.as_ref()),
    ) {
        (Some(on), None) => parse_equi_join(on)
            .map_err(|e| errors.push(SpecError::new(format!("{jpath}.on"), e)))
            .ok()?,
        (None, Some(key)) => key.to_vec().into_iter().map(|k| (k.clone(), k)).collect(),
        (Some(_), Some(_)) => {
            errors.push(SpecError::new(
                format!("{jpath}.temporal.key"),
                "the join is already keyed by `on`",
            ));
            return None;
        }
        (None, None) => {
            errors.push(SpecError::new(
                format!("{jpath}.on"),
                "required: `left.a = right.b [AND ...]`",
            ));
            return None;
        }
    };
    let mut left_keys = Vec::new();
    let mut right_keys = Vec::new();
    for (l, r) in &pairs {
        match (left.index_of(l), right.index_of(r)) {
            (Some(a), Some(b)) if left.field(a).dtype == right.field(b).dtype => {
                left_keys.push(a);
                right_keys.push(b);
            }
            (Some(a), Some(b)) => errors.push(SpecError::new(
                format!("{jpath}.on"),
                format!(
                    "left.{l} is a {} but right.{r} is a {}: join keys must have one type",
                    left.field(a).dtype,
                    right.field(b).dtype
                ),
            )),
            (None, _) => errors.push(SpecError::new(
                format!("{jpath}.on"),
                format!("left has no column `{l}` (columns: {})", left.column_list()),
            )),
            (_, None) => errors.push(SpecError::new(
                format!("{jpath}.on"),
                format!(
                    "right has no column `{r}` (columns: {})",
                    right.column_list()
                ),
            )),
        }
    }
    if left_keys.len() != pairs.len() {
        return None;
    }
    let window = join.window.as_ref().and_then(|w| {
        let kind = window_kind(&format!("{jpath}.window"), w, errors)?;
        if matches!(kind, WindowKind::Session { .. }) {
            errors.push(SpecError::new(
                format!("{jpath}.window.kind"),
                "window joins take tumbling or sliding windows",
            ));
            return None;
        }
        Some(kind)
    });
    // Output: [window_start, window_end,] left columns, right columns (renamed on clashes).
    let mut fields = Vec::new();
    if join.window.is_some() {
        fields.push(Field::required("window_start", DataType::Timestamp));
        fields.push(Field::required("window_end", DataType::Timestamp));
    }
    fields.extend(left.fields().iter().cloned());
    let prefix = right_name.replace('.', "_");
    for f in right.fields() {
        let mut f = f.clone();
        if fields.iter().any(|g| g.name == f.name) {
            f.name = format!("{prefix}_{}", f.name);
        }
        if join_type == JoinType::LeftOuter {
            f.nullable = true;
        }
        fields.push(f);
    }
    let schema = match Schema::new(fields) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            errors.push(SpecError::new(
                jpath.clone(),
                format!("output {e}: rename a column in a step before the join"),
            ));
            return None;
        }
    };
    let on = pairs
        .iter()
        .map(|(l, r)| format!("left.{l} = right.{r}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let type_name = match join_type {
        JoinType::Inner => "inner",
        JoinType::LeftOuter => "left outer",
    };
    let (shape, process) = if let Some(within) = join.within.or(join.ttl) {
        let w = positive(&format!("{jpath}.within"), Some(within), errors)?;
        let w = w.as_millis().min(i64::MAX as u128) as i64;
        let what = if join.within.is_some() {
            format!("interval ±{}", humantime::format_duration(within.0))
        } else {
            format!(
                "regular, state ttl {}",
                humantime::format_duration(within.0)
            )
        };
        (
            what,
            KeyedOp::Interval(IntervalJoin::new(join_type, w, left.len(), right.len())),
        )
    } else if join.window.is_some() {
        let kind = window?;
        (
            format!("window {kind:?}"),
            KeyedOp::WindowJoin(WindowJoin::new(join_type, kind, left.len(), right.len())),
        )
    } else {
        let temporal = join.temporal.as_ref()?;
        // Debezium dimensions (`format: debezium`) delete on `op: d` unless told otherwise.
        let default_delete = right
            .index_of(weir_engine::data::DEBEZIUM_OP)
            .map(|_| format!("{} = 'd'", weir_engine::data::DEBEZIUM_OP));
        let deleted_text = temporal.deleted.clone().or(default_delete);
        let deleted = deleted_text
            .as_deref()
            .and_then(|t| condition(&format!("{jpath}.temporal.deleted"), t, right, errors));
        if deleted_text.is_some() && deleted.is_none() {
            return None;
        }
        (
            "temporal (as of the left record's event time)".to_string(),
            KeyedOp::Temporal(TemporalJoin::new(
                join_type,
                deleted,
                left.len(),
                right.len(),
            )),
        )
    };
    Some((
        format!("{type_name} join {shape} on {on}"),
        vec![left_keys, right_keys],
        process,
        schema,
    ))
}
