//! Sources: kind-specific fields, schemas and event time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use weir_engine::data::time::parse_rfc3339;
use weir_engine::data::{DataType, Field, Schema, SchemaRef, DEBEZIUM_OP, DEBEZIUM_TS};
use weir_operators::kafka::{EndMode, MetadataColumns, StartMode};
use weir_operators::source::generator::{GeneratorConfig, StreamKind};
use weir_operators::source::OnError;

use super::check::{fraction, positive};
use super::{KafkaInput, SourceInput, SourcePlan};
use crate::error::SpecError;
use crate::spec::{Dur, OnErrorSpec, SourceSpec};

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
        ("brokers", s.brokers.is_some()),
        ("topic", s.topic.is_some()),
        ("start", s.start.is_some()),
        ("until", s.until.is_some()),
        ("group", s.group.is_some()),
        ("properties", s.properties.is_some()),
        ("partition_discovery", s.partition_discovery.is_some()),
        ("connect_timeout", s.connect_timeout.is_some()),
        ("on_deleted_records", s.on_deleted_records.is_some()),
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

pub(super) fn plan_source(
    name: &str,
    s: &SourceSpec,
    errors: &mut Vec<SpecError>,
) -> Option<SourcePlan> {
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
                .filter(|f| !matches!(*f, "json" | "jsonl" | "json_lines" | "debezium"))
            {
                errors.push(SpecError::new(
                    format!("{path}.format"),
                    format!("unknown format `{f}`: expected json (JSON lines) or debezium"),
                ));
            }
            if s.split_size == Some(0) {
                errors.push(SpecError::new(
                    format!("{path}.split_size"),
                    "must be at least 1 byte",
                ));
            }
            let (schema, ts_column) =
                json_schema(&path, "file", s, event_time.field.as_deref(), errors)?;
            let ooo = event_time.max_out_of_orderness.map_or(0, Dur::millis);
            let split_size = s.split_size.unwrap_or(16 << 20);
            (
                schema,
                ts_column,
                ooo,
                SourceInput::File {
                    patterns,
                    split_size,
                },
            )
        }
        "kafka" => {
            only_fields(
                &path,
                "kafka",
                &set,
                &[
                    "brokers",
                    "topic",
                    "start",
                    "until",
                    "group",
                    "properties",
                    "partition_discovery",
                    "connect_timeout",
                    "on_deleted_records",
                    "format",
                    "schema",
                ],
                errors,
            );
            let brokers = required_text(
                &path,
                "brokers",
                &s.brokers,
                "host:port of the bootstrap servers",
                errors,
            );
            let topic = required_text(&path, "topic", &s.topic, "the topic to read", errors);
            if let Some(f) = s
                .format
                .as_deref()
                .filter(|f| !matches!(*f, "json" | "jsonl"))
            {
                errors.push(SpecError::new(
                    format!("{path}.format"),
                    format!("unknown format `{f}`: expected json or debezium"),
                ));
            }
            let start = match &s.start {
                None => Some(StartMode::Earliest),
                Some(v) => start_mode(v)
                    .map_err(|e| errors.push(SpecError::new(format!("{path}.start"), e)))
                    .ok(),
            };
            let until = match &s.until {
                None => Some(None),
                Some(text) => EndMode::parse(text)
                    .map(Some)
                    .map_err(|e| errors.push(SpecError::new(format!("{path}.until"), e)))
                    .ok(),
            };
            let properties = properties(&format!("{path}.properties"), &s.properties, errors);
            let (schema, ts_column) =
                json_schema(&path, "kafka", s, event_time.field.as_deref(), errors)?;
            let metadata = metadata_columns(&format!("{path}.schema"), &schema, errors);
            let fail_on_deleted = match s.on_deleted_records.as_deref() {
                None | Some("continue") => false,
                Some("fail") => true,
                Some(other) => {
                    errors.push(SpecError::new(
                        format!("{path}.on_deleted_records"),
                        format!("unknown value `{other}`: expected continue or fail"),
                    ));
                    false
                }
            };
            let discovery = match s.partition_discovery {
                Some(Dur(d)) if d.is_zero() => None,
                Some(Dur(d)) => Some(d),
                None => Some(Duration::from_secs(10)),
            };
            let ooo = event_time.max_out_of_orderness.map_or(0, Dur::millis);
            let (Some(brokers), Some(topic), Some(start), Some(until)) =
                (brokers, topic, start, until)
            else {
                return None;
            };
            (
                schema,
                ts_column,
                ooo,
                SourceInput::Kafka(KafkaInput {
                    brokers,
                    topic,
                    group: s.group.clone(),
                    start,
                    until,
                    properties,
                    discovery,
                    connect_timeout: s.connect_timeout.map_or(Duration::from_secs(30), |d| d.0),
                    metadata,
                    fail_on_deleted,
                }),
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
                format!("unknown source kind `{other}`: expected file, generator or kafka"),
            ));
            return None;
        }
    };
    (errors.len() == before).then(|| SourcePlan {
        name: name.to_string(),
        schema,
        ts_column,
        debezium: s.format.as_deref() == Some("debezium"),
        max_out_of_orderness: ooo,
        idle_timeout,
        on_error,
        input,
    })
}

fn required_text(
    path: &str,
    field: &str,
    value: &Option<String>,
    what: &str,
    errors: &mut Vec<SpecError>,
) -> Option<String> {
    match value.as_deref().map(str::trim) {
        Some(v) if !v.is_empty() => Some(v.to_string()),
        _ => {
            errors.push(SpecError::new(
                format!("{path}.{field}"),
                format!("required: {what}"),
            ));
            None
        }
    }
}

/// The schema of a JSON source, with its event-time column (which becomes required).
fn json_schema(
    path: &str,
    kind: &str,
    s: &SourceSpec,
    time_field: Option<&str>,
    errors: &mut Vec<SpecError>,
) -> Option<(SchemaRef, usize)> {
    let Some(columns) = &s.schema else {
        errors.push(SpecError::new(
            format!("{path}.schema"),
            format!("required for {kind} sources: column name → type"),
        ));
        return None;
    };
    let mut fields = parse_schema(&format!("{path}.schema"), columns, errors)?;
    if s.format.as_deref() == Some("debezium") {
        // The change's operation and time, from the envelope.
        fields.push(Field::required(DEBEZIUM_OP, DataType::String));
        fields.push(Field::new(DEBEZIUM_TS, DataType::Timestamp));
    }
    let Some(field) = time_field else {
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
    Some((Arc::new(schema), ts_column))
}

/// `_key`, `_partition`, `_offset` and `_kafka_ts`, when the schema declares them.
fn metadata_columns(path: &str, schema: &Schema, errors: &mut Vec<SpecError>) -> MetadataColumns {
    let mut find = |name: &str, dtype: DataType| {
        let i = schema.index_of(name)?;
        if schema.field(i).dtype != dtype {
            errors.push(SpecError::new(
                format!("{path}.{name}"),
                format!(
                    "`{name}` is filled from the Kafka message and is a {dtype}, not a {}",
                    schema.field(i).dtype
                ),
            ));
        }
        Some(i)
    };
    MetadataColumns {
        key: find("_key", DataType::String),
        partition: find("_partition", DataType::Int),
        offset: find("_offset", DataType::Int),
        timestamp: find("_kafka_ts", DataType::Timestamp),
    }
}

/// `start:` as text (`timestamp:...`) or as a mapping (`{timestamp: ...}`, `{offsets: {0: 4}}`).
fn start_mode(v: &serde_json::Value) -> Result<StartMode, String> {
    match v {
        serde_json::Value::String(text) => StartMode::parse(text),
        serde_json::Value::Object(map) if map.len() == 1 => {
            let (kind, value) = map.iter().next().expect("one entry");
            match (kind.as_str(), value) {
                ("timestamp", serde_json::Value::String(t)) => StartMode::parse(&format!("timestamp:{t}")),
                ("offsets", serde_json::Value::Object(offsets)) => {
                    let list: Vec<String> = offsets.iter().map(|(p, o)| format!("{p}={o}")).collect();
                    StartMode::parse(&format!("offsets:{}", list.join(",")))
                }
                _ => Err(format!("`{kind}` is not a start mode with a value: expected {{timestamp: <RFC 3339>}} or {{offsets: {{partition: offset}}}}")),
            }
        }
        other => Err(format!("`{other}` is not a start mode: expected earliest, latest, group, timestamp:<RFC 3339> or offsets:{{partition: offset}}")),
    }
}

/// librdkafka properties: text, numbers and booleans, passed through as text.
pub(super) fn properties(
    path: &str,
    props: &Option<IndexMap<String, serde_json::Value>>,
    errors: &mut Vec<SpecError>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in props.iter().flatten() {
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            other => {
                errors.push(SpecError::new(
                    format!("{path}.{k}"),
                    format!("`{other}`: a property is text, a number or a boolean"),
                ));
                continue;
            }
        };
        out.insert(k.clone(), text);
    }
    out
}
