//! The job spec: the YAML/JSON document users, tests and the coordinator share.
//!
//! Deserialisation is strict (`deny_unknown_fields`) and path-aware: every error names where in
//! the document it is (`steps.per_user_minute.window.size`). Kinds are flat structs with a
//! `kind` field rather than tagged enums, so that a field error keeps its full path; which
//! fields fit which kind is checked by [`crate::plan`].

use std::fmt;
use std::time::Duration;

use indexmap::IndexMap;
use serde::de::{self, Deserializer};
use serde::Deserialize;

use crate::error::{SpecError, SpecErrors};

/// A duration written like `10s`, `5m`, `250ms` or `1h30m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl Dur {
    /// In milliseconds (saturating).
    pub fn millis(self) -> i64 {
        self.0.as_millis().min(i64::MAX as u128) as i64
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like 10s, 5m, 250ms or 1h30m")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                humantime::parse_duration(v.trim()).map(Dur).map_err(|e| {
                    E::custom(format!(
                        "invalid duration `{v}` ({e}): expected like 10s, 5m, 250ms, 1h30m"
                    ))
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
                if v == 0 {
                    Ok(Dur(Duration::ZERO))
                } else {
                    Err(E::custom(format!(
                        "invalid duration `{v}`: give a unit, like {v}s or {v}ms"
                    )))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "invalid duration `{v}`: give a unit, like {v}s or {v}ms"
                )))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "invalid duration `{v}`: give a unit, like {v}s or {v}ms"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// One name or a list of names (`key: user_id` or `key: [user_id, device_id]`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single name.
    One(String),
    /// Several names.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The names.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// A job.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Job name.
    pub name: String,
    /// Worker threads per process (overridden by `--workers`).
    #[serde(default)]
    pub parallelism: Option<usize>,
    /// Processes of the job when the coordinator runs it (default 1; `weir run` takes
    /// `--processes`).
    #[serde(default)]
    pub processes: Option<usize>,
    /// How the coordinator restarts the job after a failure.
    #[serde(default)]
    pub restart: Option<RestartSpec>,
    /// Key groups: fixed for the life of the job's state (default 128).
    #[serde(default)]
    pub key_groups: Option<u32>,
    /// Processing time per epoch (default 100ms).
    #[serde(default)]
    pub tick: Option<Dur>,
    /// Checkpointing.
    #[serde(default)]
    pub checkpoint: Option<CheckpointSpec>,
    /// Named inputs.
    pub sources: IndexMap<String, SourceSpec>,
    /// Named transformations.
    #[serde(default)]
    pub steps: IndexMap<String, StepSpec>,
    /// Named outputs.
    pub sinks: IndexMap<String, SinkSpec>,
}

/// The `restart:` section: exponential backoff between attempts, then `failed`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartSpec {
    /// Restarts after failures before the job is `failed` (default 10; 0: never restart).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// The first pause (default 1s); doubled after every failed attempt.
    #[serde(default)]
    pub backoff: Option<Dur>,
    /// The longest pause (default 1m).
    #[serde(default)]
    pub max_backoff: Option<Dur>,
}

/// The `checkpoint:` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSpec {
    /// Time between checkpoints.
    pub interval: Dur,
    /// Store URL: `file:///path` or `hdfs://namenode:port/path`.
    pub store: String,
    /// Completed checkpoints to keep (default 3).
    #[serde(default)]
    pub retain: Option<usize>,
    /// Fail the job after this many checkpoints failed in a row (default: never; failures are
    /// logged and the next checkpoint tries again).
    #[serde(default)]
    pub fail_after: Option<u32>,
}

/// How a source's bad input is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnErrorSpec {
    /// To `<source>.dead_letter`.
    DeadLetter,
    /// Counted and dropped.
    Skip,
    /// The job fails.
    Fail,
}

/// The `event_time:` section of a source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTimeSpec {
    /// The event-time column (int ms or timestamp).
    #[serde(default)]
    pub field: Option<String>,
    /// Allowed disorder within a partition.
    #[serde(default)]
    pub max_out_of_orderness: Option<Dur>,
    /// A partition without input for this long stops holding the watermark back.
    #[serde(default)]
    pub idle_timeout: Option<Dur>,
}

/// A source. `kind` decides which other fields apply.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// `file` or `generator`.
    pub kind: String,
    /// file: a path, a glob, or a list of them.
    #[serde(default)]
    pub path: Option<OneOrMany>,
    /// file: `json` (JSON lines).
    #[serde(default)]
    pub format: Option<String>,
    /// file: bytes per split (default 16 MiB).
    #[serde(default)]
    pub split_size: Option<u64>,
    /// file: column name → type (`string`, `int`, `float`, `bool`, `timestamp`; add `not null`).
    #[serde(default)]
    pub schema: Option<IndexMap<String, String>>,
    /// Event time and watermarks.
    #[serde(default)]
    pub event_time: Option<EventTimeSpec>,
    /// Bad input handling (default `dead_letter`).
    #[serde(default)]
    pub on_error: Option<OnErrorSpec>,
    /// generator: `clicks`, `iot`, `payments` or `device_profiles`.
    #[serde(default)]
    pub stream: Option<String>,
    /// generator: number of events (endless without).
    #[serde(default)]
    pub events: Option<u64>,
    /// generator: events per second (full speed without).
    #[serde(default)]
    pub rate: Option<f64>,
    /// generator: seed (default 42).
    #[serde(default)]
    pub seed: Option<u64>,
    /// generator: partitions (default 8).
    #[serde(default)]
    pub partitions: Option<u32>,
    /// generator: event time of the first event (RFC 3339; default 2026-01-01T00:00:00Z).
    #[serde(default)]
    pub start_time: Option<String>,
    /// generator: event time between consecutive events (default 1ms).
    #[serde(default)]
    pub time_step: Option<Dur>,
    /// generator: events run up to this much behind their nominal time (default 500ms).
    #[serde(default)]
    pub disorder: Option<Dur>,
    /// generator: fraction of events that are late.
    #[serde(default)]
    pub late_fraction: Option<f64>,
    /// generator: how far behind late events are (default 1m).
    #[serde(default)]
    pub late_by: Option<Dur>,
    /// generator: fraction of malformed events.
    #[serde(default)]
    pub malformed: Option<f64>,
    /// generator: distinct users (default 10000).
    #[serde(default)]
    pub users: Option<u64>,
    /// generator: distinct devices (default 5000).
    #[serde(default)]
    pub devices: Option<u64>,
    /// kafka: bootstrap servers, `host:port[,host:port]`.
    #[serde(default)]
    pub brokers: Option<String>,
    /// kafka: the topic.
    #[serde(default)]
    pub topic: Option<String>,
    /// kafka: `earliest` (default), `latest`, `group`, `timestamp:<RFC 3339>`,
    /// `offsets:{0: 42, 1: 17}` — or `{timestamp: ...}` / `{offsets: {0: 42}}`.
    #[serde(default)]
    pub start: Option<serde_json::Value>,
    /// kafka: stop at `latest` (the end when the job starts) or `timestamp:<RFC 3339>`;
    /// without it the source never ends.
    #[serde(default)]
    pub until: Option<String>,
    /// kafka: consumer group for `start: group` and for lag monitoring (default
    /// `weir-<job>-<source>`).
    #[serde(default)]
    pub group: Option<String>,
    /// kafka: librdkafka properties passed through (SASL, TLS, tuning).
    #[serde(default)]
    pub properties: Option<IndexMap<String, serde_json::Value>>,
    /// kafka: how often to look for new partitions (default 10s; 0s turns it off).
    #[serde(default)]
    pub partition_discovery: Option<Dur>,
    /// kafka: how long to wait for the brokers when the job starts (default 30s).
    #[serde(default)]
    pub connect_timeout: Option<Dur>,
    /// kafka: when the broker has deleted records before the source read them (retention
    /// passed its position): `continue` (default: say so, count them, read on from the
    /// earliest offset) or `fail` (the job fails with that error).
    #[serde(default)]
    pub on_deleted_records: Option<String>,
}

/// The `window:` of a window step.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// `tumbling`, `sliding` or `session`.
    pub kind: String,
    /// tumbling, sliding: window length.
    #[serde(default)]
    pub size: Option<Dur>,
    /// sliding: distance between window starts.
    #[serde(default)]
    pub slide: Option<Dur>,
    /// session: inactivity that ends a session.
    #[serde(default)]
    pub gap: Option<Dur>,
}

/// The `rule:` of a rule step.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// `threshold` (default), `sequence` or `absence`.
    #[serde(default)]
    pub kind: Option<String>,
    /// Key columns: the rule is evaluated per key.
    pub key: OneOrMany,
    /// threshold: the trailing window `(ts - count_over, ts]`.
    #[serde(default)]
    pub count_over: Option<Dur>,
    /// threshold: alert when more than this many events are in the window.
    #[serde(default)]
    pub threshold: Option<i64>,
    /// threshold: only events matching this SQL condition count.
    #[serde(default, rename = "where")]
    pub condition: Option<String>,
    /// threshold: an SQL expression summed over the window (e.g. `amount`).
    #[serde(default)]
    pub sum_over: Option<String>,
    /// threshold: alert when the sum exceeds this.
    #[serde(default)]
    pub sum_threshold: Option<f64>,
    /// sequence, absence: SQL condition of the opening event.
    #[serde(default)]
    pub first: Option<String>,
    /// sequence, absence: SQL condition of the following event.
    #[serde(default)]
    pub then: Option<String>,
    /// sequence, absence: how long after the opening event the following one counts.
    #[serde(default)]
    pub within: Option<Dur>,
    /// The events' id column, listed in alerts (default: `id` or the first `*_id` column
    /// that is not a key).
    #[serde(default)]
    pub id: Option<String>,
    /// threshold: a stream of rule updates that change the rule while it runs.
    #[serde(default)]
    pub updates: Option<UpdatesSpec>,
}

/// Where a rule's updates come from.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdatesSpec {
    /// The stream (columns `rule`, and any of `threshold`, `sum_threshold`, `where`,
    /// `enabled`).
    pub from: String,
    /// The rule's name in the `rule` column (default: the step name).
    #[serde(default)]
    pub name: Option<String>,
}

/// The `rolling:` of a rolling aggregate step.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollingSpec {
    /// Key columns.
    pub key: OneOrMany,
    /// The trailing range `(ts - over, ts]`.
    pub over: Dur,
    /// Output column → aggregate.
    pub aggregates: IndexMap<String, String>,
}

/// The `temporal:` of a temporal join.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemporalSpec {
    /// The dimension changelog stream.
    #[serde(default)]
    pub dimension: Option<String>,
    /// Key column with the same name on both sides (or use the join's `on`).
    #[serde(default)]
    pub key: Option<OneOrMany>,
    /// SQL condition on dimension records that marks a delete (e.g. `op = 'd'`).
    #[serde(default)]
    pub deleted: Option<String>,
}

/// The `join:` of a join step.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinSpec {
    /// Left input stream.
    pub left: String,
    /// Right input stream (for temporal joins, or `temporal.dimension`).
    #[serde(default)]
    pub right: Option<String>,
    /// Equalities between left and right columns: `left.device_id = right.device_id`.
    #[serde(default)]
    pub on: Option<String>,
    /// `inner` (default) or `left`.
    #[serde(default, rename = "type")]
    pub join_type: Option<String>,
    /// Interval join: `right.ts` within `[left.ts - within, left.ts + within]`.
    #[serde(default)]
    pub within: Option<Dur>,
    /// Window join: both sides in the same tumbling or sliding window.
    #[serde(default)]
    pub window: Option<WindowSpec>,
    /// Temporal join against a dimension changelog.
    #[serde(default)]
    pub temporal: Option<TemporalSpec>,
    /// Regular join: how long records are kept (in event time) to find partners.
    #[serde(default)]
    pub ttl: Option<Dur>,
}

/// A step. Which fields are present decides its kind: `filter`/`project` (per record),
/// `window` + `aggregates`, `rule`, `rolling` or `join`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Input stream: a source, a step, `<source>.dead_letter` or `<step>.late` (join steps
    /// name theirs in `join`).
    #[serde(default)]
    pub from: Option<String>,
    /// SQL condition; records for which it is not TRUE are dropped.
    #[serde(default)]
    pub filter: Option<String>,
    /// Output column → SQL expression.
    #[serde(default)]
    pub project: Option<IndexMap<String, String>>,
    /// Key columns of a window step.
    #[serde(default)]
    pub key: Option<OneOrMany>,
    /// The window.
    #[serde(default)]
    pub window: Option<WindowSpec>,
    /// How long after a window's end records are still accepted (default 0s).
    #[serde(default)]
    pub allowed_lateness: Option<Dur>,
    /// Output column → aggregate (`count(*)`, `sum(amount)`, ...).
    #[serde(default)]
    pub aggregates: Option<IndexMap<String, String>>,
    /// A fraud rule.
    #[serde(default)]
    pub rule: Option<RuleSpec>,
    /// A rolling aggregate.
    #[serde(default)]
    pub rolling: Option<RollingSpec>,
    /// A join.
    #[serde(default)]
    pub join: Option<JoinSpec>,
}

impl StepSpec {
    /// The streams the step reads: `from`, or a join's left and right.
    pub fn inputs(&self) -> Vec<&str> {
        match &self.join {
            Some(j) => {
                let right = j
                    .right
                    .as_deref()
                    .or(j.temporal.as_ref().and_then(|t| t.dimension.as_deref()));
                std::iter::once(j.left.as_str()).chain(right).collect()
            }
            None => {
                let updates = self
                    .rule
                    .as_ref()
                    .and_then(|r| r.updates.as_ref())
                    .map(|u| u.from.as_str());
                self.from.as_deref().into_iter().chain(updates).collect()
            }
        }
    }

    /// True for steps with a `.late` output.
    pub fn has_late_output(&self) -> bool {
        self.window.is_some()
            || self.aggregates.is_some()
            || self.rule.is_some()
            || self.rolling.is_some()
            || self.join.is_some()
    }
}

/// A sink. `kind` decides which other fields apply.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSpec {
    /// The stream written.
    pub from: String,
    /// `file`, `stdout`, `kafka`, `redis`, `iceberg` or `blackhole` (counted and dropped).
    pub kind: String,
    /// file: output path.
    #[serde(default)]
    pub path: Option<String>,
    /// file, stdout, kafka: `rfc3339` (default) or `millis`.
    #[serde(default)]
    pub timestamp_format: Option<String>,
    /// kafka: bootstrap servers.
    #[serde(default)]
    pub brokers: Option<String>,
    /// kafka: the topic.
    #[serde(default)]
    pub topic: Option<String>,
    /// kafka: the message key, an SQL expression over the row (e.g. `user_id`). redis: the
    /// key template, columns in braces (e.g. `fraud:{user_id}`).
    #[serde(default)]
    pub key: Option<String>,
    /// redis: `redis://[user:password@]host:port[/db]`.
    #[serde(default)]
    pub url: Option<String>,
    /// redis: `hash` (default), `string`, `sorted_set` or `stream`.
    #[serde(default)]
    pub mode: Option<String>,
    /// redis: expiry of `hash` and `string` keys.
    #[serde(default)]
    pub ttl: Option<Dur>,
    /// redis `sorted_set`: the member template (e.g. `{merchant}`).
    #[serde(default)]
    pub member: Option<String>,
    /// redis `sorted_set`: the score, an SQL expression over the row.
    #[serde(default)]
    pub score: Option<String>,
    /// redis `string`: the value, an SQL expression over the row (default: the row as JSON).
    #[serde(default)]
    pub value: Option<String>,
    /// kafka: `none`, `gzip`, `snappy`, `lz4` (default) or `zstd`.
    #[serde(default)]
    pub compression: Option<String>,
    /// kafka: how long the producer waits to fill a batch (default 20ms).
    #[serde(default)]
    pub linger: Option<Dur>,
    /// kafka: the most bytes in one batch (default librdkafka's).
    #[serde(default)]
    pub batch_size: Option<u64>,
    /// kafka: partitions of the topic when the sink creates it (default 1).
    #[serde(default)]
    pub partitions: Option<i32>,
    /// kafka: `exactly_once` (the default with `checkpoint:`), `idempotent` or
    /// `at_least_once` (the default without).
    #[serde(default)]
    pub delivery: Option<String>,
    /// kafka: the topic of commit records (default `weir-commits`).
    #[serde(default)]
    pub commit_topic: Option<String>,
    /// iceberg: the catalog, `sqlite:///abs/catalog.db` (SQL catalog on a SQLite file) or
    /// `http(s)://host:port` (REST catalog).
    #[serde(default)]
    pub catalog: Option<String>,
    /// iceberg: the catalog's name (default `weir`); readers of a SQL catalog use the same.
    #[serde(default)]
    pub catalog_name: Option<String>,
    /// iceberg: where new tables go, `file:///abs/path` or `hdfs://namenode:port/path`.
    #[serde(default)]
    pub warehouse: Option<String>,
    /// iceberg: `namespace.table`.
    #[serde(default)]
    pub table: Option<String>,
    /// iceberg: partition fields of a table the sink creates (`day(window_end)`, …).
    #[serde(default)]
    pub partition_by: Option<Vec<String>>,
    /// kafka: librdkafka properties passed through (SASL, TLS, tuning).
    #[serde(default)]
    pub properties: Option<IndexMap<String, serde_json::Value>>,
}

/// Parses a spec from YAML or JSON text (JSON is YAML).
pub fn parse_document(text: &str) -> Result<serde_json::Value, SpecErrors> {
    let value: serde_json::Value = serde_norway::from_str(text).map_err(|e| {
        SpecErrors::one(SpecError::new(
            "",
            format!("not a valid YAML/JSON document: {e}"),
        ))
    })?;
    if !value.is_object() {
        return Err(SpecErrors::one(SpecError::new(
            "",
            "a job spec is a mapping with name, sources, steps and sinks",
        )));
    }
    Ok(value)
}

/// Applies one `--set path=value` override (`sources.payments.events=1000`); the value is
/// read as YAML, so numbers, booleans and lists keep their type.
pub fn apply_override(doc: &mut serde_json::Value, assignment: &str) -> Result<(), SpecError> {
    let Some((path, raw)) = assignment.split_once('=') else {
        return Err(SpecError::new(
            "--set",
            format!("`{assignment}` is not path=value"),
        ));
    };
    let value: serde_json::Value =
        serde_norway::from_str(raw).unwrap_or_else(|_| serde_json::Value::String(raw.to_string()));
    let mut node = doc;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let serde_json::Value::Object(map) = node else {
            return Err(SpecError::new(
                parts[..i].join("."),
                format!("--set {path}: not a mapping"),
            ));
        };
        if i + 1 == parts.len() {
            map.insert(part.to_string(), value);
            return Ok(());
        }
        node = map
            .entry(part.to_string())
            .or_insert_with(|| serde_json::json!({}));
    }
    Ok(())
}

/// Deserialises the spec, naming the path of the first error.
pub fn from_document(doc: serde_json::Value) -> Result<JobSpec, SpecErrors> {
    serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        SpecErrors::one(SpecError::new(path, e.into_inner().to_string()))
    })
}
