//! Validation: from a [`JobSpec`] to a [`Plan`] whose every expression is compiled and typed,
//! or to every error found, each with its path.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use weir_engine::data::time::parse_rfc3339;
use weir_engine::data::{DataType, Field, Schema, SchemaRef, TimestampFormat};
use weir_engine::event::dead_letter_schema;
use weir_engine::keys::KeyGroups;
use weir_operators::aggregate::Aggregates;
use weir_operators::expr::Expr;
use weir_operators::source::generator::{GeneratorConfig, StreamKind};
use weir_operators::source::OnError;
use weir_operators::window::WindowKind;

use crate::error::{SpecError, SpecErrors};
use crate::spec::{Dur, JobSpec, OnErrorSpec, SinkSpec, SourceSpec, StepSpec};

/// A validated job, ready to build on every worker.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Job name.
    pub name: String,
    /// Worker threads per process.
    pub parallelism: usize,
    /// Key groups.
    pub key_groups: KeyGroups,
    /// Processing time per epoch.
    pub tick: Duration,
    /// Checkpointing, when configured.
    pub checkpoint: Option<CheckpointPlan>,
    /// Sources, in spec order.
    pub sources: Vec<SourcePlan>,
    /// Steps, in dataflow (topological) order.
    pub steps: Vec<StepPlan>,
    /// Sinks, in spec order.
    pub sinks: Vec<SinkPlan>,
    /// Every stream a step or sink can read, with its schema.
    pub streams: IndexMap<String, SchemaRef>,
}

/// The checkpoint section, checked.
#[derive(Clone, Debug)]
pub struct CheckpointPlan {
    /// Time between checkpoints.
    pub interval: Duration,
    /// Store URL.
    pub store: String,
    /// Completed checkpoints kept.
    pub retain: usize,
}

/// A source.
#[derive(Clone, Debug)]
pub struct SourcePlan {
    /// Name.
    pub name: String,
    /// Decoded schema.
    pub schema: SchemaRef,
    /// Event-time column.
    pub ts_column: usize,
    /// Allowed disorder, ms.
    pub max_out_of_orderness: i64,
    /// Idle partitions stop holding the watermark after this long.
    pub idle_timeout: Option<Duration>,
    /// Bad input handling.
    pub on_error: OnError,
    /// What is read.
    pub input: SourceInput,
}

/// What a source reads.
#[derive(Clone, Debug)]
pub enum SourceInput {
    /// JSON lines files.
    File {
        /// Paths and globs.
        patterns: Vec<String>,
        /// Bytes per split.
        split_size: u64,
    },
    /// The synthetic generator.
    Generator(GeneratorConfig),
}

/// A step.
#[derive(Clone, Debug)]
pub struct StepPlan {
    /// Name.
    pub name: String,
    /// Input stream.
    pub input: String,
    /// Output schema.
    pub schema: SchemaRef,
    /// What it does.
    pub op: StepOp,
}

/// The operation of a step.
#[derive(Clone, Debug)]
pub enum StepOp {
    /// Per-record filter and/or projection.
    FilterProject {
        /// Condition.
        filter: Option<Expr>,
        /// Output expressions.
        project: Option<Vec<Expr>>,
    },
    /// Keyed window aggregate.
    Window {
        /// Key columns of the input.
        key_columns: Vec<usize>,
        /// Window shape.
        kind: WindowKind,
        /// Allowed lateness, ms.
        allowed_lateness: i64,
        /// Aggregates.
        aggregates: Arc<Aggregates>,
    },
}

/// A sink.
#[derive(Clone, Debug)]
pub struct SinkPlan {
    /// Name.
    pub name: String,
    /// Input stream.
    pub input: String,
    /// Column names of the input, for encoding.
    pub columns: Vec<String>,
    /// Where rows go.
    pub op: SinkOp,
}

/// Where a sink writes.
#[derive(Clone, Debug)]
pub enum SinkOp {
    /// A JSON lines file.
    File {
        /// Output path.
        path: PathBuf,
        /// Timestamp encoding.
        format: TimestampFormat,
    },
    /// Standard output.
    Stdout {
        /// Timestamp encoding.
        format: TimestampFormat,
    },
    /// Counted, dropped.
    Null,
}

fn check_name(kind: &str, name: &str, errors: &mut Vec<SpecError>) {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !ok {
        errors.push(SpecError::new(
            format!("{kind}.{name}"),
            "names start with a letter or `_` and contain only letters, digits, `_` and `-` (dots are reserved for `.late` and `.dead_letter`)",
        ));
    }
}

fn positive(path: &str, d: Option<Dur>, errors: &mut Vec<SpecError>) -> Option<Duration> {
    match d {
        Some(Dur(d)) if d.is_zero() => {
            errors.push(SpecError::new(path, "must be longer than 0"));
            None
        }
        Some(Dur(d)) => Some(d),
        None => None,
    }
}

fn fraction(path: &str, v: Option<f64>, errors: &mut Vec<SpecError>) -> f64 {
    match v {
        Some(f) if !(0.0..=1.0).contains(&f) => {
            errors.push(SpecError::new(
                path,
                format!("{f} is not a fraction between 0 and 1"),
            ));
            0.0
        }
        Some(f) => f,
        None => 0.0,
    }
}

fn timestamp_format(
    path: &str,
    v: &Option<String>,
    errors: &mut Vec<SpecError>,
) -> TimestampFormat {
    match v.as_deref() {
        None | Some("rfc3339") => TimestampFormat::Rfc3339,
        Some("millis") => TimestampFormat::Millis,
        Some(other) => {
            errors.push(SpecError::new(
                path,
                format!("unknown timestamp format `{other}`: expected rfc3339 or millis"),
            ));
            TimestampFormat::Rfc3339
        }
    }
}

/// Fields of a source that only some kinds accept.
fn source_fields(s: &SourceSpec) -> Vec<(&'static str, bool)> {
    vec![
        ("path", s.path.is_some()),
        ("format", s.format.is_some()),
        ("split_size", s.split_size.is_some()),
        ("schema", s.schema.is_some()),
        ("stream", s.stream.is_some()),
        ("events", s.events.is_some()),
        ("rate", s.rate.is_some()),
        ("seed", s.seed.is_some()),
        ("partitions", s.partitions.is_some()),
        ("start_time", s.start_time.is_some()),
        ("time_step", s.time_step.is_some()),
        ("disorder", s.disorder.is_some()),
        ("late_fraction", s.late_fraction.is_some()),
        ("late_by", s.late_by.is_some()),
        ("malformed", s.malformed.is_some()),
        ("users", s.users.is_some()),
        ("devices", s.devices.is_some()),
    ]
}

fn only_fields(
    path: &str,
    kind: &str,
    set: &[(&str, bool)],
    allowed: &[&str],
    errors: &mut Vec<SpecError>,
) {
    for (field, present) in set {
        if *present && !allowed.contains(field) {
            errors.push(SpecError::new(
                format!("{path}.{field}"),
                format!("not a field of a `{kind}` source"),
            ));
        }
    }
}

fn parse_schema(
    path: &str,
    columns: &IndexMap<String, String>,
    errors: &mut Vec<SpecError>,
) -> Option<Vec<Field>> {
    let mut fields = Vec::new();
    let before = errors.len();
    for (name, ty) in columns {
        let lower = ty.trim().to_ascii_lowercase();
        let (base, required) = match lower.strip_suffix("not null") {
            Some(base) => (base.trim().to_string(), true),
            None => (lower.clone(), false),
        };
        match DataType::parse(&base) {
            Some(dtype) => fields.push(Field { name: name.clone(), dtype, nullable: !required }),
            None => errors.push(SpecError::new(
                format!("{path}.{name}"),
                format!("unknown type `{ty}`: expected string, int, float, bool or timestamp (optionally `not null`)"),
            )),
        }
    }
    if columns.is_empty() {
        errors.push(SpecError::new(path, "a schema needs at least one column"));
    }
    (errors.len() == before && !columns.is_empty()).then_some(fields)
}

fn plan_source(name: &str, s: &SourceSpec, errors: &mut Vec<SpecError>) -> Option<SourcePlan> {
    let path = format!("sources.{name}");
    let set = source_fields(s);
    let before = errors.len();
    let event_time = s.event_time.clone().unwrap_or(crate::spec::EventTimeSpec {
        field: None,
        max_out_of_orderness: None,
        idle_timeout: None,
    });
    let idle_timeout = positive(
        &format!("{path}.event_time.idle_timeout"),
        event_time.idle_timeout,
        errors,
    );
    let on_error = match s.on_error {
        None | Some(OnErrorSpec::DeadLetter) => OnError::DeadLetter,
        Some(OnErrorSpec::Skip) => OnError::Skip,
        Some(OnErrorSpec::Fail) => OnError::Fail,
    };
    let (schema, ts_column, ooo, input) = match s.kind.as_str() {
        "file" => {
            only_fields(
                &path,
                "file",
                &set,
                &["path", "format", "split_size", "schema"],
                errors,
            );
            let patterns = match &s.path {
                Some(p) => p.to_vec(),
                None => {
                    errors.push(SpecError::new(
                        format!("{path}.path"),
                        "required: a file, a glob or a list of them",
                    ));
                    Vec::new()
                }
            };
            if let Some(f) = s
                .format
                .as_deref()
                .filter(|f| !matches!(*f, "json" | "jsonl" | "json_lines"))
            {
                errors.push(SpecError::new(
                    format!("{path}.format"),
                    format!("unknown format `{f}`: expected json (JSON lines)"),
                ));
            }
            if s.split_size == Some(0) {
                errors.push(SpecError::new(
                    format!("{path}.split_size"),
                    "must be at least 1 byte",
                ));
            }
            let Some(columns) = &s.schema else {
                errors.push(SpecError::new(
                    format!("{path}.schema"),
                    "required for file sources: column name → type",
                ));
                return None;
            };
            let mut fields = parse_schema(&format!("{path}.schema"), columns, errors)?;
            let Some(field) = event_time.field.as_deref() else {
                errors.push(SpecError::new(
                    format!("{path}.event_time.field"),
                    "required: the column holding event time",
                ));
                return None;
            };
            let Some(ts_column) = fields.iter().position(|f| f.name == field) else {
                errors.push(SpecError::new(
                    format!("{path}.event_time.field"),
                    format!(
                        "`{field}` is not a column of the schema ({})",
                        columns.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
                return None;
            };
            if !matches!(fields[ts_column].dtype, DataType::Timestamp | DataType::Int) {
                errors.push(SpecError::new(
                    format!("{path}.event_time.field"),
                    format!(
                        "`{field}` is a {}, expected timestamp or int (ms)",
                        fields[ts_column].dtype
                    ),
                ));
                return None;
            }
            // Without an event time a record cannot be placed in time: it is bad input.
            fields[ts_column].nullable = false;
            let schema = Schema::new(fields)
                .map_err(|e| errors.push(SpecError::new(format!("{path}.schema"), e)))
                .ok()?;
            let ooo = event_time.max_out_of_orderness.map_or(0, Dur::millis);
            let split_size = s.split_size.unwrap_or(16 << 20);
            (
                Arc::new(schema),
                ts_column,
                ooo,
                SourceInput::File {
                    patterns,
                    split_size,
                },
            )
        }
        "generator" => {
            only_fields(
                &path,
                "generator",
                &set,
                &[
                    "stream",
                    "events",
                    "rate",
                    "seed",
                    "partitions",
                    "start_time",
                    "time_step",
                    "disorder",
                    "late_fraction",
                    "late_by",
                    "malformed",
                    "users",
                    "devices",
                ],
                errors,
            );
            let Some(stream_name) = &s.stream else {
                errors.push(SpecError::new(
                    format!("{path}.stream"),
                    "required: clicks, iot, payments or device_profiles",
                ));
                return None;
            };
            let Some(stream) = StreamKind::parse(stream_name) else {
                errors.push(SpecError::new(format!("{path}.stream"), format!("unknown stream `{stream_name}`: expected clicks, iot, payments or device_profiles")));
                return None;
            };
            let schema = stream.schema();
            if let Some(field) = event_time
                .field
                .as_deref()
                .filter(|f| *f != stream.time_column())
            {
                errors.push(SpecError::new(
                    format!("{path}.event_time.field"),
                    format!(
                        "the {} stream's event time is `{}`, not `{field}`",
                        stream.name(),
                        stream.time_column()
                    ),
                ));
            }
            let mut config = GeneratorConfig::new(stream, s.events, s.seed.unwrap_or(42));
            if let Some(rate) = s.rate {
                if rate.is_nan() || rate <= 0.0 {
                    errors.push(SpecError::new(
                        format!("{path}.rate"),
                        format!("{rate} events/s: must be positive"),
                    ));
                }
                config.rate = Some(rate);
            }
            match s.partitions {
                Some(0) => errors.push(SpecError::new(
                    format!("{path}.partitions"),
                    "must be at least 1",
                )),
                Some(p) => config.partitions = p,
                None => {}
            }
            if let Some(start) = &s.start_time {
                match parse_rfc3339(start) {
                    Ok(ms) => config.start_ms = ms,
                    Err(e) => errors.push(SpecError::new(format!("{path}.start_time"), e)),
                }
            }
            if let Some(step) = positive(&format!("{path}.time_step"), s.time_step, errors) {
                config.step_ms = step.as_secs_f64() * 1000.0;
            }
            if let Some(d) = s.disorder {
                config.disorder_ms = d.millis();
            }
            if let Some(d) = s.late_by {
                config.late_by_ms = d.millis();
            }
            config.late_fraction =
                fraction(&format!("{path}.late_fraction"), s.late_fraction, errors);
            config.malformed = fraction(&format!("{path}.malformed"), s.malformed, errors);
            for (field, v) in [("users", s.users), ("devices", s.devices)] {
                if v == Some(0) {
                    errors.push(SpecError::new(
                        format!("{path}.{field}"),
                        "must be at least 1",
                    ));
                }
            }
            if let Some(u) = s.users {
                config.cardinalities.users = u.max(1);
            }
            if let Some(d) = s.devices {
                config.cardinalities.devices = d.max(1);
            }
            let ts_column = schema.index_of(stream.time_column()).expect("time column");
            let ooo = event_time
                .max_out_of_orderness
                .map_or(config.disorder_ms, Dur::millis);
            (schema, ts_column, ooo, SourceInput::Generator(config))
        }
        other => {
            errors.push(SpecError::new(
                format!("{path}.kind"),
                format!("unknown source kind `{other}`: expected file or generator"),
            ));
            return None;
        }
    };
    (errors.len() == before).then(|| SourcePlan {
        name: name.to_string(),
        schema,
        ts_column,
        max_out_of_orderness: ooo,
        idle_timeout,
        on_error,
        input,
    })
}

/// What a stream name refers to.
enum Producer<'a> {
    Source,
    DeadLetter,
    Step(&'a str),
    Late(&'a str),
}

fn resolve<'a>(from: &'a str, spec: &'a JobSpec) -> Option<Producer<'a>> {
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
    if let Some(step) = from.strip_suffix(".late") {
        if let Some((name, _)) = spec.steps.get_key_value(step) {
            return Some(Producer::Late(name.as_str()));
        }
    }
    None
}

fn known_streams(spec: &JobSpec) -> String {
    let mut names = Vec::new();
    for s in spec.sources.keys() {
        names.push(s.clone());
        names.push(format!("{s}.dead_letter"));
    }
    for (s, step) in &spec.steps {
        names.push(s.clone());
        if step.window.is_some() {
            names.push(format!("{s}.late"));
        }
    }
    names.join(", ")
}

/// Orders steps so every step comes after the step it reads; reports unknown inputs and
/// cycles.
fn order_steps<'a>(spec: &'a JobSpec, errors: &mut Vec<SpecError>) -> Vec<&'a str> {
    let mut order = Vec::new();
    // 0: unvisited, 1: on the current path, 2: done.
    let mut mark: HashMap<&str, u8> = HashMap::new();
    let mut reported_cycles = BTreeSet::new();
    for name in spec.steps.keys() {
        let mut path: Vec<&str> = Vec::new();
        let mut current = name.as_str();
        loop {
            match mark.get(current).copied().unwrap_or(0) {
                2 => break,
                1 => {
                    let start = path.iter().position(|s| *s == current).unwrap_or(0);
                    let cycle: Vec<&str> = path[start..].to_vec();
                    let first = cycle.iter().min().copied().unwrap_or(current);
                    if reported_cycles.insert(first.to_string()) {
                        let mut shown = cycle.join(" → ");
                        let _ = write!(shown, " → {current}");
                        errors.push(SpecError::new(
                            format!("steps.{first}.from"),
                            format!("steps form a cycle: {shown}"),
                        ));
                    }
                    break;
                }
                _ => {}
            }
            mark.insert(current, 1);
            path.push(current);
            let from = spec.steps[current].from.as_str();
            match resolve(from, spec) {
                Some(Producer::Step(up)) | Some(Producer::Late(up)) => current = up,
                _ => break,
            }
        }
        for step in path.into_iter().rev() {
            if mark.get(step) == Some(&1) {
                mark.insert(step, 2);
                order.push(step);
            }
        }
    }
    order
}

fn plan_step(
    name: &str,
    step: &StepSpec,
    input: &SchemaRef,
    errors: &mut Vec<SpecError>,
) -> Option<(StepOp, SchemaRef)> {
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
        let wpath = format!("{path}.window");
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
        if matches!(window.kind.as_str(), "tumbling" | "sliding" | "hopping")
            && window.size.is_none()
        {
            errors.push(SpecError::new(
                format!("{wpath}.size"),
                format!("required for {} windows", window.kind),
            ));
        }
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
                "a step needs `filter`, `project`, or `window` with `aggregates`",
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

fn plan_sink(
    name: &str,
    s: &SinkSpec,
    columns: Vec<String>,
    errors: &mut Vec<SpecError>,
) -> Option<SinkPlan> {
    let path = format!("sinks.{name}");
    let before = errors.len();
    let format = timestamp_format(
        &format!("{path}.timestamp_format"),
        &s.timestamp_format,
        errors,
    );
    let op = match s.kind.as_str() {
        "file" => match &s.path {
            Some(p) => SinkOp::File {
                path: PathBuf::from(p),
                format,
            },
            None => {
                errors.push(SpecError::new(
                    format!("{path}.path"),
                    "required for file sinks",
                ));
                return None;
            }
        },
        "stdout" | "blackhole" => {
            if s.path.is_some() {
                errors.push(SpecError::new(
                    format!("{path}.path"),
                    format!("not a field of a `{}` sink", s.kind),
                ));
            }
            if s.kind == "stdout" {
                SinkOp::Stdout { format }
            } else {
                SinkOp::Null
            }
        }
        other => {
            errors.push(SpecError::new(
                format!("{path}.kind"),
                format!("unknown sink kind `{other}`: expected file, stdout or blackhole"),
            ));
            return None;
        }
    };
    (errors.len() == before).then(|| SinkPlan {
        name: name.to_string(),
        input: s.from.clone(),
        columns,
        op,
    })
}

/// Validates `spec`; returns the plan or every error found.
pub fn plan(spec: &JobSpec) -> Result<Plan, SpecErrors> {
    let mut errors = Vec::new();
    if spec.name.trim().is_empty() {
        errors.push(SpecError::new("name", "must not be empty"));
    }
    if spec.parallelism == Some(0) {
        errors.push(SpecError::new("parallelism", "must be at least 1"));
    }
    let key_groups = match spec.key_groups {
        Some(0) => {
            errors.push(SpecError::new("key_groups", "must be at least 1"));
            KeyGroups::DEFAULT
        }
        Some(k) if k > 1 << 20 => {
            errors.push(SpecError::new(
                "key_groups",
                format!("{k} is more than 1048576"),
            ));
            KeyGroups::DEFAULT
        }
        Some(k) => KeyGroups::new(k),
        None => KeyGroups::DEFAULT,
    };
    let tick = positive("tick", spec.tick, &mut errors).unwrap_or(Duration::from_millis(100));
    let checkpoint = spec.checkpoint.as_ref().and_then(|c| {
        let interval = positive("checkpoint.interval", Some(c.interval), &mut errors)?;
        let scheme_ok = ["file://", "hdfs://", "s3://"].iter().any(|s| c.store.starts_with(s));
        if !scheme_ok {
            errors.push(SpecError::new("checkpoint.store", format!("`{}` is not a store URL: expected file:///path, hdfs://namenode:port/path or s3://bucket/path", c.store)));
            return None;
        }
        if c.retain == Some(0) {
            errors.push(SpecError::new("checkpoint.retain", "must keep at least 1 checkpoint"));
        }
        Some(CheckpointPlan { interval, store: c.store.clone(), retain: c.retain.unwrap_or(3) })
    });
    if spec.sources.is_empty() {
        errors.push(SpecError::new("sources", "a job needs at least one source"));
    }
    if spec.sinks.is_empty() {
        errors.push(SpecError::new("sinks", "a job needs at least one sink"));
    }

    let mut streams: IndexMap<String, SchemaRef> = IndexMap::new();
    let mut sources = Vec::new();
    for (name, s) in &spec.sources {
        check_name("sources", name, &mut errors);
        if let Some(plan) = plan_source(name, s, &mut errors) {
            streams.insert(name.clone(), plan.schema.clone());
            sources.push(plan);
        }
        streams.insert(format!("{name}.dead_letter"), dead_letter_schema());
    }
    // Streams whose producer failed validation: their consumers are not checked further.
    let mut broken: BTreeSet<String> = spec
        .sources
        .keys()
        .filter(|n| !streams.contains_key(*n))
        .cloned()
        .collect();

    let mut steps = Vec::new();
    for name in spec.steps.keys() {
        check_name("steps", name, &mut errors);
        if spec.sources.contains_key(name) {
            errors.push(SpecError::new(
                format!("steps.{name}"),
                format!("`{name}` is already the name of a source"),
            ));
        }
    }
    for name in order_steps(spec, &mut errors) {
        let step = &spec.steps[name];
        let from = step.from.as_str();
        let input = match resolve(from, spec) {
            None => {
                errors.push(SpecError::new(
                    format!("steps.{name}.from"),
                    format!("unknown stream `{from}` (known: {})", known_streams(spec)),
                ));
                None
            }
            Some(Producer::Late(up)) if spec.steps[up].window.is_none() => {
                errors.push(SpecError::new(
                    format!("steps.{name}.from"),
                    format!("step `{up}` has no late output: only window steps do"),
                ));
                None
            }
            Some(_) if broken.contains(from) || broken.contains(from.trim_end_matches(".late")) => {
                None
            }
            Some(_) => streams.get(from).cloned(),
        };
        let planned = input.and_then(|schema| {
            plan_step(name, step, &schema, &mut errors).map(|(op, out)| (op, out, schema))
        });
        match planned {
            Some((op, schema, input_schema)) => {
                streams.insert(name.to_string(), schema.clone());
                if matches!(op, StepOp::Window { .. }) {
                    streams.insert(format!("{name}.late"), input_schema);
                }
                steps.push(StepPlan {
                    name: name.to_string(),
                    input: from.to_string(),
                    schema,
                    op,
                });
            }
            None => {
                broken.insert(name.to_string());
            }
        }
    }
    // Steps caught in a cycle were never ordered.
    for name in spec.steps.keys() {
        if !steps.iter().any(|s| &s.name == name) {
            broken.insert(name.clone());
        }
    }

    let mut sinks = Vec::new();
    for (name, s) in &spec.sinks {
        check_name("sinks", name, &mut errors);
        let from = s.from.as_str();
        let columns = match streams.get(from) {
            Some(schema) => schema.fields().iter().map(|f| f.name.clone()).collect(),
            None if resolve(from, spec).is_some() => {
                if !broken.contains(from) && !broken.contains(from.trim_end_matches(".late")) {
                    errors.push(SpecError::new(
                        format!("sinks.{name}.from"),
                        format!("`{from}` has no such output"),
                    ));
                }
                continue;
            }
            None => {
                errors.push(SpecError::new(
                    format!("sinks.{name}.from"),
                    format!("unknown stream `{from}` (known: {})", known_streams(spec)),
                ));
                continue;
            }
        };
        if let Some(plan) = plan_sink(name, s, columns, &mut errors) {
            sinks.push(plan);
        }
    }

    if !errors.is_empty() {
        return Err(SpecErrors(errors));
    }
    Ok(Plan {
        name: spec.name.clone(),
        parallelism: spec.parallelism.unwrap_or(1),
        key_groups,
        tick,
        checkpoint,
        sources,
        steps,
        sinks,
        streams,
    })
}
