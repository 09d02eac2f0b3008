//! Sinks: where rows go.

use std::path::PathBuf;

use weir_engine::data::Schema;
use weir_operators::expr::Expr;

use super::check::timestamp_format;
use super::sources::properties;
use super::{KafkaOutput, SinkOp, SinkPlan};
use crate::error::SpecError;
use crate::spec::SinkSpec;

/// Fields of a sink that only some kinds accept.
fn sink_fields(s: &SinkSpec) -> [(&'static str, bool); 9] {
    [
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
            SinkOp::Kafka(KafkaOutput {
                brokers: brokers?,
                topic: topic?,
                key,
                properties,
                format,
                partitions,
            })
        }
        other => {
            errors.push(SpecError::new(
                format!("{path}.kind"),
                format!("unknown sink kind `{other}`: expected file, stdout, kafka or blackhole"),
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
