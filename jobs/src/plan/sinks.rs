//! Sinks: where rows go.

use std::path::PathBuf;

use weir_engine::data::{Schema, TimestampFormat};
use weir_operators::expr::Expr;
use weir_operators::kafka::Delivery;
use weir_operators::redis::{RedisMode, Template};

use super::check::timestamp_format;
use super::sources::properties;
use super::{IcebergOutput, KafkaOutput, RedisOutput, SinkOp, SinkPlan};
use crate::error::SpecError;
use crate::spec::SinkSpec;

/// Fields of a sink that only some kinds accept.
fn sink_fields(s: &SinkSpec) -> [(&'static str, bool); 22] {
    [
        ("catalog", s.catalog.is_some()),
        ("catalog_name", s.catalog_name.is_some()),
        ("warehouse", s.warehouse.is_some()),
        ("table", s.table.is_some()),
        ("partition_by", s.partition_by.is_some()),
        ("url", s.url.is_some()),
        ("mode", s.mode.is_some()),
        ("ttl", s.ttl.is_some()),
        ("member", s.member.is_some()),
        ("score", s.score.is_some()),
        ("value", s.value.is_some()),
        ("delivery", s.delivery.is_some()),
        ("commit_topic", s.commit_topic.is_some()),
        ("partitions", s.partitions.is_some()),
        ("path", s.path.is_some()),
        ("brokers", s.brokers.is_some()),
        ("topic", s.topic.is_some()),
        ("key", s.key.is_some()),
        ("compression", s.compression.is_some()),
        ("linger", s.linger.is_some()),
        ("batch_size", s.batch_size.is_some()),
        ("properties", s.properties.is_some()),
    ]
}

pub(super) fn plan_sink(
    name: &str,
    s: &SinkSpec,
    input: &Schema,
    checkpointed: bool,
    errors: &mut Vec<SpecError>,
) -> Option<SinkPlan> {
    let path = format!("sinks.{name}");
    let before = errors.len();
    let format = timestamp_format(
        &format!("{path}.timestamp_format"),
        &s.timestamp_format,
        errors,
    );
    let allowed: &[&str] = match s.kind.as_str() {
        "file" => &["path"],
        "kafka" => &[
            "brokers",
            "topic",
            "key",
            "compression",
            "linger",
            "batch_size",
            "properties",
            "partitions",
            "delivery",
            "commit_topic",
        ],
        "redis" => &["url", "key", "mode", "ttl", "member", "score", "value"],
        "iceberg" => &[
            "catalog",
            "catalog_name",
            "warehouse",
            "table",
            "partition_by",
        ],
        _ => &[],
    };
    for (field, present) in sink_fields(s) {
        if present && !allowed.contains(&field) {
            errors.push(SpecError::new(
                format!("{path}.{field}"),
                format!("not a field of a `{}` sink", s.kind),
            ));
        }
    }
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
        "stdout" => SinkOp::Stdout { format },
        "blackhole" => SinkOp::Null,
        "kafka" => {
            let brokers = s.brokers.clone().filter(|b| !b.trim().is_empty());
            if brokers.is_none() {
                errors.push(SpecError::new(
                    format!("{path}.brokers"),
                    "required: host:port of the bootstrap servers",
                ));
            }
            let topic = s.topic.clone().filter(|t| !t.trim().is_empty());
            if topic.is_none() {
                errors.push(SpecError::new(
                    format!("{path}.topic"),
                    "required: the topic to write",
                ));
            }
            let key = s.key.as_deref().and_then(|text| {
                Expr::compile(text, input)
                    .map_err(|e| errors.push(SpecError::new(format!("{path}.key"), e.message)))
                    .ok()
            });
            let mut properties = properties(&format!("{path}.properties"), &s.properties, errors);
            let compression = s.compression.as_deref().unwrap_or("lz4");
            if !["none", "gzip", "snappy", "lz4", "zstd"].contains(&compression) {
                errors.push(SpecError::new(
                    format!("{path}.compression"),
                    format!("unknown compression `{compression}`: expected none, gzip, snappy, lz4 or zstd"),
                ));
            }
            properties
                .entry("compression.type".into())
                .or_insert_with(|| compression.to_string());
            let linger = s.linger.map_or(20, |d| d.millis());
            properties
                .entry("linger.ms".into())
                .or_insert_with(|| linger.to_string());
            if let Some(b) = s.batch_size {
                properties
                    .entry("batch.size".into())
                    .or_insert_with(|| b.to_string());
            }
            let partitions = s.partitions.unwrap_or(1);
            if partitions < 1 {
                errors.push(SpecError::new(format!("{path}.partitions"), "at least 1"));
            }
            let delivery = match s.delivery.as_deref().map(Delivery::parse) {
                None if checkpointed => Delivery::ExactlyOnce,
                None => Delivery::AtLeastOnce,
                Some(Ok(d)) if d != Delivery::AtLeastOnce && !checkpointed => {
                    errors.push(SpecError::new(
                        format!("{path}.delivery"),
                        format!(
                            "`{}` delivery commits once per checkpoint: add a `checkpoint:` section to the job",
                            s.delivery.as_deref().unwrap_or_default().trim()
                        ),
                    ));
                    d
                }
                Some(Ok(d)) => d,
                Some(Err(e)) => {
                    errors.push(SpecError::new(format!("{path}.delivery"), e));
                    Delivery::AtLeastOnce
                }
            };
            let commit_topic = s
                .commit_topic
                .clone()
                .unwrap_or_else(|| "weir-commits".into());
            if commit_topic.trim().is_empty() || Some(&commit_topic) == topic.as_ref() {
                errors.push(SpecError::new(
                    format!("{path}.commit_topic"),
                    "a topic of its own, not empty and not the sink's topic",
                ));
            }
            SinkOp::Kafka(KafkaOutput {
                delivery,
                commit_topic,
                brokers: brokers?,
                topic: topic?,
                key,
                properties,
                format,
                partitions,
            })
        }
        "redis" => SinkOp::Redis(plan_redis(&path, s, input, format, errors)?),
        "iceberg" => SinkOp::Iceberg(plan_iceberg(&path, s, input, errors)?),
        other => {
            errors.push(SpecError::new(
                format!("{path}.kind"),
                format!(
                    "unknown sink kind `{other}`: expected file, stdout, kafka, redis, iceberg or blackhole"
                ),
            ));
            return None;
        }
    };
    (errors.len() == before).then(|| SinkPlan {
        name: name.to_string(),
        input: s.from.clone(),
        columns: input.fields().iter().map(|f| f.name.clone()).collect(),
        op,
    })
}

/// A `kind: redis` sink: URL, mode, key template and what each mode needs.
fn plan_redis(
    path: &str,
    s: &SinkSpec,
    input: &Schema,
    format: TimestampFormat,
    errors: &mut Vec<SpecError>,
) -> Option<RedisOutput> {
    let before = errors.len();
    let url = s.url.clone().filter(|u| !u.trim().is_empty());
    match &url {
        None => errors.push(SpecError::new(
            format!("{path}.url"),
            "required: redis://host:port[/db]",
        )),
        Some(u) if !(u.starts_with("redis://") || u.starts_with("rediss://")) => {
            errors.push(SpecError::new(
                format!("{path}.url"),
                format!("`{u}` is not a redis:// or rediss:// URL"),
            ))
        }
        Some(_) => {}
    }
    let mode = match s.mode.as_deref().map(RedisMode::parse) {
        None => RedisMode::Hash,
        Some(Ok(m)) => m,
        Some(Err(e)) => {
            errors.push(SpecError::new(format!("{path}.mode"), e));
            RedisMode::Hash
        }
    };
    let template = |field: &str, text: Option<&String>, errors: &mut Vec<SpecError>| {
        let text = text?;
        Template::parse(text, input)
            .map_err(|e| errors.push(SpecError::new(format!("{path}.{field}"), e)))
            .ok()
    };
    let key = template("key", s.key.as_ref(), errors);
    if s.key.is_none() {
        errors.push(SpecError::new(
            format!("{path}.key"),
            "required: the key template, columns in braces (e.g. `fraud:{user_id}`)",
        ));
    }
    let expr = |field: &str, text: Option<&String>, errors: &mut Vec<SpecError>| {
        let text = text?;
        Expr::compile(text, input)
            .map_err(|e| errors.push(SpecError::new(format!("{path}.{field}"), e.message)))
            .ok()
    };
    let member = template("member", s.member.as_ref(), errors);
    let score = expr("score", s.score.as_ref(), errors);
    let value = expr("value", s.value.as_ref(), errors);
    let only = |field: &str, present: bool, modes: &str, errors: &mut Vec<SpecError>| {
        if present {
            errors.push(SpecError::new(
                format!("{path}.{field}"),
                format!("only for mode {modes}"),
            ));
        }
    };
    match mode {
        RedisMode::SortedSet => {
            for (field, present) in [("member", s.member.is_none()), ("score", s.score.is_none())] {
                if present {
                    errors.push(SpecError::new(
                        format!("{path}.{field}"),
                        "required for mode sorted_set",
                    ));
                }
            }
        }
        _ => {
            only("member", s.member.is_some(), "sorted_set", errors);
            only("score", s.score.is_some(), "sorted_set", errors);
        }
    }
    if mode != RedisMode::String {
        only("value", s.value.is_some(), "string", errors);
    }
    if !matches!(mode, RedisMode::Hash | RedisMode::String) {
        only("ttl", s.ttl.is_some(), "hash or string", errors);
    }
    let ttl = s
        .ttl
        .map(|d| std::time::Duration::from_millis(d.millis().max(0) as u64));
    if ttl.is_some_and(|t| t.is_zero()) {
        errors.push(SpecError::new(format!("{path}.ttl"), "must be positive"));
    }
    (errors.len() == before).then(|| RedisOutput {
        url: url.expect("checked"),
        mode,
        key: key.expect("checked"),
        ttl,
        member,
        score,
        value,
        format,
    })
}

/// A `kind: iceberg` sink: catalog, warehouse, table and partition fields.
fn plan_iceberg(
    path: &str,
    s: &SinkSpec,
    input: &Schema,
    errors: &mut Vec<SpecError>,
) -> Option<IcebergOutput> {
    let before = errors.len();
    let catalog = s.catalog.clone().map(|c| c.trim().to_string());
    match catalog.as_deref() {
        None | Some("") => errors.push(SpecError::new(
            format!("{path}.catalog"),
            "required: sqlite:///abs/catalog.db (SQL catalog) or http(s)://host:port (REST catalog)",
        )),
        Some(c) if c.starts_with("sqlite:") => {
            if !c.trim_start_matches("sqlite:").trim_start_matches("//").starts_with('/') {
                errors.push(SpecError::new(
                    format!("{path}.catalog"),
                    format!("`{c}`: expected sqlite:///absolute/path.db"),
                ));
            }
            if s.warehouse.is_none() {
                errors.push(SpecError::new(
                    format!("{path}.warehouse"),
                    "required with a SQL catalog: file:///abs/path or hdfs://namenode:port/path",
                ));
            }
        }
        Some(c) if c.starts_with("http://") || c.starts_with("https://") => {}
        Some(c) => errors.push(SpecError::new(
            format!("{path}.catalog"),
            format!("`{c}`: expected sqlite:///abs/catalog.db or http(s)://host:port"),
        )),
    }
    if let Some(w) = &s.warehouse {
        let scheme = w.split_once("://").map(|(s, _)| s);
        if !matches!(scheme, Some("file" | "hdfs" | "viewfs" | "s3")) {
            errors.push(SpecError::new(
                format!("{path}.warehouse"),
                format!("`{w}`: expected file:///abs/path or hdfs://namenode:port/path"),
            ));
        }
    }
    let table = s.table.clone().unwrap_or_default();
    let parts: Vec<&str> = table.split('.').collect();
    if parts.len() < 2 || parts.iter().any(|p| p.trim().is_empty()) {
        errors.push(SpecError::new(
            format!("{path}.table"),
            format!("required: namespace.table (got `{table}`)"),
        ));
    }
    let mut partition_by = Vec::new();
    for (i, text) in s.partition_by.iter().flatten().enumerate() {
        match weir_operators::sink::PartitionField::parse(text, input) {
            Ok(f) => partition_by.push(f),
            Err(e) => errors.push(SpecError::new(format!("{path}.partition_by[{i}]"), e)),
        }
    }
    let catalog_name = s.catalog_name.clone().unwrap_or_else(|| "weir".into());
    if catalog_name.trim().is_empty() {
        errors.push(SpecError::new(
            format!("{path}.catalog_name"),
            "must not be empty",
        ));
    }
    (errors.len() == before).then(|| IcebergOutput {
        catalog: catalog.expect("checked"),
        catalog_name,
        warehouse: s.warehouse.clone(),
        table,
        partition_by,
        schema: input.clone(),
    })
}
