//! Validation: from a [`JobSpec`] to a [`Plan`] whose every expression is compiled and typed,
//! or to every error found, each with its path.
//!
//! `sources`, `steps` and `sinks` check their part of the spec; `check` holds the small
//! validators they share.

mod check;
mod keyed;
mod sinks;
mod sources;
mod steps;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use weir_engine::data::{SchemaRef, TimestampFormat};
use weir_engine::event::dead_letter_schema;
use weir_engine::keys::KeyGroups;
use weir_operators::aggregate::Aggregates;
use weir_operators::expr::Expr;
use weir_operators::join::{IntervalJoin, TemporalJoin, WindowJoin};
use weir_operators::kafka::{EndMode, MetadataColumns, StartMode};
use weir_operators::rolling::Rolling;
use weir_operators::rule::{Pattern, Threshold};
use weir_operators::source::generator::GeneratorConfig;
use weir_operators::source::OnError;
use weir_operators::window::WindowKind;

use crate::error::{SpecError, SpecErrors};
use crate::spec::JobSpec;
use check::{check_name, positive};
use sinks::plan_sink;
use sources::plan_source;
use steps::{known_streams, order_steps, plan_step, resolve, Producer};

/// A validated job, ready to build on every worker.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Job name.
    pub name: String,
    /// Worker threads per process.
    pub parallelism: usize,
    /// Processes, when the coordinator runs the job.
    pub processes: usize,
    /// The coordinator's restart strategy.
    pub restart: RestartPlan,
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

/// How the coordinator restarts a failed job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartPlan {
    /// Restarts before the job is failed.
    pub max_attempts: u32,
    /// The first pause.
    pub backoff: Duration,
    /// The longest pause.
    pub max_backoff: Duration,
}

impl Default for RestartPlan {
    fn default() -> Self {
        RestartPlan {
            max_attempts: 10,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
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
    /// Consecutive failed checkpoints that fail the job.
    pub fail_after: Option<u32>,
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
    /// Records are Debezium change events (`format: debezium`).
    pub debezium: bool,
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
    /// A Kafka topic.
    Kafka(KafkaInput),
}

/// A Kafka source's settings.
#[derive(Clone, Debug)]
pub struct KafkaInput {
    /// Bootstrap servers.
    pub brokers: String,
    /// Topic.
    pub topic: String,
    /// Consumer group (default `weir-<job>-<source>`).
    pub group: Option<String>,
    /// Where to start.
    pub start: StartMode,
    /// Where to stop; `None` for never.
    pub until: Option<EndMode>,
    /// librdkafka properties.
    pub properties: BTreeMap<String, String>,
    /// How often to look for new partitions.
    pub discovery: Option<Duration>,
    /// How long to wait for the brokers at start.
    pub connect_timeout: Duration,
    /// Metadata columns in the schema.
    pub metadata: MetadataColumns,
    /// Fail the job, rather than read on, when the broker deleted records before they were
    /// read (`on_deleted_records: fail`).
    pub fail_on_deleted: bool,
}

/// A step.
#[derive(Clone, Debug)]
pub struct StepPlan {
    /// Name.
    pub name: String,
    /// Input stream (a join's left input).
    pub input: String,
    /// A join's right input.
    pub right: Option<String>,
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
    /// Per-key processing in event-time order: rules, rolling aggregates, joins.
    Keyed {
        /// What it computes, for `weir validate`.
        summary: String,
        /// Key columns, per input.
        key_columns: Vec<Vec<usize>>,
        /// Allowed lateness, ms.
        allowed_lateness: i64,
        /// The right input is a control stream (rule updates), broadcast to every worker.
        control: bool,
        /// The per-key logic.
        process: Box<KeyedOp>,
    },
}

/// The per-key logic of a [`StepOp::Keyed`] step.
#[derive(Clone, Debug)]
pub enum KeyedOp {
    /// Threshold rule.
    Threshold(Threshold),
    /// Sequence or absence rule.
    Pattern(Pattern),
    /// Rolling aggregates.
    Rolling(Rolling),
    /// Interval (or regular, TTL-bounded) join.
    Interval(IntervalJoin),
    /// Window join.
    WindowJoin(WindowJoin),
    /// Temporal join against a dimension.
    Temporal(TemporalJoin),
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
    /// A Kafka topic.
    Kafka(KafkaOutput),
    /// Redis keys.
    Redis(RedisOutput),
    /// An Iceberg table.
    Iceberg(IcebergOutput),
}

/// An Iceberg sink's settings.
#[derive(Clone, Debug)]
pub struct IcebergOutput {
    /// `sqlite:///…` or `http(s)://…`.
    pub catalog: String,
    /// The catalog's name.
    pub catalog_name: String,
    /// Where new tables go.
    pub warehouse: Option<String>,
    /// `namespace.table`.
    pub table: String,
    /// Partition fields of a table the sink creates.
    pub partition_by: Vec<weir_operators::sink::PartitionField>,
    /// Columns written (the table's schema when the sink creates it).
    pub schema: weir_engine::data::Schema,
}

/// A Redis sink's settings.
#[derive(Clone, Debug)]
pub struct RedisOutput {
    /// Server URL.
    pub url: String,
    /// How rows are written.
    pub mode: weir_operators::redis::RedisMode,
    /// Key template.
    pub key: weir_operators::redis::Template,
    /// Expiry of hash and string keys.
    pub ttl: Option<std::time::Duration>,
    /// `sorted_set` member.
    pub member: Option<weir_operators::redis::Template>,
    /// `sorted_set` score.
    pub score: Option<Expr>,
    /// `string` value.
    pub value: Option<Expr>,
    /// Timestamp encoding.
    pub format: TimestampFormat,
}

/// A Kafka sink's settings.
#[derive(Clone, Debug)]
pub struct KafkaOutput {
    /// Bootstrap servers.
    pub brokers: String,
    /// Topic.
    pub topic: String,
    /// Message key expression.
    pub key: Option<Expr>,
    /// librdkafka properties (batching and compression included).
    pub properties: BTreeMap<String, String>,
    /// Timestamp encoding.
    pub format: TimestampFormat,
    /// Partitions when the sink creates the topic.
    pub partitions: i32,
    /// Exactly once, idempotent or at least once.
    pub delivery: weir_operators::kafka::Delivery,
    /// Where commit records go.
    pub commit_topic: String,
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
    if spec.processes == Some(0) {
        errors.push(SpecError::new("processes", "must be at least 1"));
    }
    let mut restart = RestartPlan::default();
    if let Some(r) = &spec.restart {
        restart.max_attempts = r.max_attempts.unwrap_or(restart.max_attempts);
        restart.backoff =
            positive("restart.backoff", r.backoff, &mut errors).unwrap_or(restart.backoff);
        restart.max_backoff = positive("restart.max_backoff", r.max_backoff, &mut errors)
            .unwrap_or(restart.max_backoff);
        if restart.max_backoff < restart.backoff {
            errors.push(SpecError::new(
                "restart.max_backoff",
                "must not be shorter than restart.backoff",
            ));
        }
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
        let store = match c.store.split_once("://") {
            // A plain path is a local directory (relative to where weir runs).
            None => {
                let path = std::path::Path::new(&c.store);
                let path = std::env::current_dir().map(|d| d.join(path)).unwrap_or(path.to_path_buf());
                format!("file://{}", path.display())
            }
            Some(("file", rest)) if rest.starts_with('/') => c.store.clone(),
            Some(("hdfs" | "viewfs" | "s3" | "memory", _)) => c.store.clone(),
            Some(_) => {
                errors.push(SpecError::new("checkpoint.store", format!("`{}` is not a store URL: expected file:///absolute/path, hdfs://namenode:port/path, s3://bucket/path or a local directory", c.store)));
                return None;
            }
        };
        if c.retain == Some(0) {
            errors.push(SpecError::new("checkpoint.retain", "must keep at least 1 checkpoint"));
        }
        if c.fail_after == Some(0) {
            errors.push(SpecError::new("checkpoint.fail_after", "must be at least 1 (omit it to never fail the job)"));
        }
        Some(CheckpointPlan { interval, store, retain: c.retain.unwrap_or(3), fail_after: c.fail_after })
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
        let names = step.inputs();
        if names.is_empty() {
            errors.push(SpecError::new(
                format!("steps.{name}.from"),
                "required: the input stream",
            ));
            broken.insert(name.to_string());
            continue;
        }
        let field = |i: usize| match (&step.join, i) {
            (Some(_), 0) => "join.left",
            (Some(_), _) => "join.right",
            (None, 0) => "from",
            (None, _) => "rule.updates.from",
        };
        let mut inputs = Vec::new();
        for (i, from) in names.iter().copied().enumerate() {
            let upstream_broken = |s: &str| {
                broken.contains(s)
                    || broken.contains(s.trim_end_matches(".late"))
                    || broken.contains(s.trim_end_matches(".late_right"))
            };
            match resolve(from, spec) {
                None => errors.push(SpecError::new(
                    format!("steps.{name}.{}", field(i)),
                    format!("unknown stream `{from}` (known: {})", known_streams(spec)),
                )),
                Some(Producer::Late(up)) if !spec.steps[up].has_late_output() => {
                    errors.push(SpecError::new(
                        format!("steps.{name}.{}", field(i)),
                        format!(
                            "step `{up}` has no late output: only window, rule, rolling and join steps do"
                        ),
                    ))
                }
                Some(Producer::LateRight(up)) if spec.steps[up].join.is_none() => {
                    errors.push(SpecError::new(
                        format!("steps.{name}.{}", field(i)),
                        format!("step `{up}` has no `.late_right` output: only join steps do"),
                    ))
                }
                Some(_) if upstream_broken(from) => {}
                Some(_) => {
                    if let Some(schema) = streams.get(from) {
                        inputs.push((from.to_string(), schema.clone()));
                    }
                }
            }
        }
        let planned = if inputs.len() == names.len() {
            plan_step(name, step, &inputs, &mut errors)
        } else {
            None
        };
        match planned {
            Some((op, schema)) => {
                streams.insert(name.to_string(), schema.clone());
                if step.has_late_output() {
                    streams.insert(format!("{name}.late"), inputs[0].1.clone());
                }
                if let Some((_, right)) = inputs.get(1) {
                    streams.insert(format!("{name}.late_right"), right.clone());
                }
                steps.push(StepPlan {
                    name: name.to_string(),
                    input: inputs[0].0.clone(),
                    right: inputs.get(1).map(|(n, _)| n.clone()),
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
        let schema = match streams.get(from) {
            Some(schema) => schema.clone(),
            None if resolve(from, spec).is_some() => {
                if !broken.contains(from)
                    && !broken.contains(from.trim_end_matches(".late"))
                    && !broken.contains(from.trim_end_matches(".late_right"))
                {
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
        if let Some(plan) = plan_sink(name, s, &schema, checkpoint.is_some(), &mut errors) {
            sinks.push(plan);
        }
    }

    check_sink_paths(&sources, &sinks, &mut errors);

    if !errors.is_empty() {
        return Err(SpecErrors(errors));
    }
    Ok(Plan {
        name: spec.name.clone(),
        parallelism: spec.parallelism.unwrap_or(1),
        processes: spec.processes.unwrap_or(1),
        restart,
        key_groups,
        tick,
        checkpoint,
        sources,
        steps,
        sinks,
        streams,
    })
}

/// A file sink must not share its path with another file sink, nor write over a file the job
/// reads.
fn check_sink_paths(sources: &[SourcePlan], sinks: &[SinkPlan], errors: &mut Vec<SpecError>) {
    let inputs: Vec<(&str, PathBuf)> = sources
        .iter()
        .flat_map(|s| match &s.input {
            SourceInput::File { patterns, .. } => patterns
                .iter()
                .map(|p| (s.name.as_str(), PathBuf::from(p)))
                .collect(),
            SourceInput::Generator(_) | SourceInput::Kafka(_) => Vec::new(),
        })
        .collect();
    let mut seen: Vec<(&str, &PathBuf)> = Vec::new();
    for sink in sinks {
        let SinkOp::File { path, .. } = &sink.op else {
            continue;
        };
        if let Some((other, _)) = seen.iter().find(|(_, p)| *p == path) {
            errors.push(SpecError::new(
                format!("sinks.{}.path", sink.name),
                format!(
                    "`{}` is also the path of sink `{other}`: each file sink needs its own file",
                    path.display()
                ),
            ));
        }
        if let Some((source, _)) = inputs.iter().find(|(_, p)| p == path) {
            errors.push(SpecError::new(
                format!("sinks.{}.path", sink.name),
                format!(
                    "`{}` is read by source `{source}`: writing it would destroy the input",
                    path.display()
                ),
            ));
        }
        seen.push((&sink.name, path));
    }
}
