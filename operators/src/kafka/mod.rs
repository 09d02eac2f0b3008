//! Kafka: the spec-level settings (always built) and, with the `kafka` feature, the source
//! (one consumer per worker, partitions assigned deterministically, offsets owned by weir and
//! part of checkpoints) and the sinks: at least once (a producer per worker that reports an
//! epoch done once every message of it is acknowledged, `sink`) and, with checkpoints, exactly
//! once or idempotent (one transaction per checkpoint with a commit record, `committed`).
//!
//! Every call that talks to a broker and may block happens while the dataflow is built (with a
//! timeout and retries that say what they wait for) or on librdkafka's own threads; operator
//! logic only polls queues without waiting and is woken by librdkafka's callbacks.

#[cfg(feature = "kafka")]
mod client;
#[cfg(feature = "kafka")]
mod committed;
#[cfg(feature = "kafka")]
mod outbox;
#[cfg(feature = "kafka")]
mod sink;
#[cfg(feature = "kafka")]
mod source;

use std::collections::BTreeMap;
use std::time::Duration;

#[cfg(feature = "kafka")]
pub use client::{
    create_topic, delete_records_before, ensure_topic, fetch_high_watermarks, read_topic,
    KafkaError, MessageProducer, TopicMessage,
};
#[cfg(feature = "kafka")]
pub use committed::KafkaCommitter;
#[cfg(feature = "kafka")]
pub use sink::{kafka_sink, KafkaSinkConfig};
#[cfg(feature = "kafka")]
pub use source::{open_partitions, KafkaSourceConfig};

/// Columns of a Kafka source filled from the message rather than its JSON payload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetadataColumns {
    /// `_key`: the message key as text.
    pub key: Option<usize>,
    /// `_partition`.
    pub partition: Option<usize>,
    /// `_offset`.
    pub offset: Option<usize>,
    /// `_kafka_ts`: the message timestamp.
    pub timestamp: Option<usize>,
}

/// Whether this build can talk to Kafka (the `kafka` cargo feature).
pub const ENABLED: bool = cfg!(feature = "kafka");

/// How a Kafka sink delivers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Delivery {
    /// Messages go out as soon as their epoch is complete; after a crash some are sent again.
    #[default]
    AtLeastOnce,
    /// One transaction per checkpoint (needs `checkpoint:` and a broker with transactions).
    ExactlyOnce,
    /// Per checkpoint without transactions: repeats only after a crash mid-commit, and they
    /// carry the same key and `weir-checkpoint` header.
    Idempotent,
}

impl Delivery {
    /// Parses `at_least_once`, `exactly_once` or `idempotent`.
    pub fn parse(text: &str) -> Result<Delivery, String> {
        match text.trim() {
            "at_least_once" => Ok(Delivery::AtLeastOnce),
            "exactly_once" => Ok(Delivery::ExactlyOnce),
            "idempotent" => Ok(Delivery::Idempotent),
            other => Err(format!(
                "unknown delivery `{other}`: expected exactly_once, idempotent or at_least_once"
            )),
        }
    }
}

/// Where a Kafka source starts reading each partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartMode {
    /// The oldest retained message.
    Earliest,
    /// The end of the partition when the job starts: only new messages.
    Latest,
    /// The consumer group's committed offsets (earliest where there are none).
    Group,
    /// The first message at or after this time (ms since the epoch).
    Timestamp(i64),
    /// Explicit offsets per partition (earliest for partitions not listed).
    Offsets(BTreeMap<i32, i64>),
}

/// Where a bounded Kafka source stops each partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndMode {
    /// The end of the partition when the job starts.
    Latest,
    /// The last message before this time (ms since the epoch).
    Timestamp(i64),
}

impl StartMode {
    /// Parses `earliest`, `latest`, `group`, `timestamp:<RFC 3339>`, `offsets:{0: 42, 1: 17}`
    /// or `offsets:0=42,1=17`.
    pub fn parse(text: &str) -> Result<StartMode, String> {
        let text = text.trim();
        Ok(match text {
            "earliest" => StartMode::Earliest,
            "latest" => StartMode::Latest,
            "group" => StartMode::Group,
            _ => {
                if let Some(ts) = text.strip_prefix("timestamp:") {
                    let ms = weir_engine::data::time::parse_rfc3339(ts.trim())?;
                    StartMode::Timestamp(ms)
                } else if let Some(list) = text.strip_prefix("offsets:") {
                    StartMode::Offsets(parse_offsets(list)?)
                } else {
                    return Err(format!(
                        "`{text}` is not a start mode: expected earliest, latest, group, \
                         timestamp:<RFC 3339> or offsets:{{partition: offset, ...}}"
                    ));
                }
            }
        })
    }
}

impl EndMode {
    /// Parses `latest` or `timestamp:<RFC 3339>`.
    pub fn parse(text: &str) -> Result<EndMode, String> {
        let text = text.trim();
        if text == "latest" {
            return Ok(EndMode::Latest);
        }
        match text.strip_prefix("timestamp:") {
            Some(ts) => Ok(EndMode::Timestamp(weir_engine::data::time::parse_rfc3339(
                ts.trim(),
            )?)),
            None => Err(format!(
                "`{text}` is not an end: expected latest or timestamp:<RFC 3339>"
            )),
        }
    }
}

/// `{0: 42, 1: 17}` or `0=42,1=17`.
fn parse_offsets(list: &str) -> Result<BTreeMap<i32, i64>, String> {
    let inner = list.trim().trim_start_matches('{').trim_end_matches('}');
    let mut offsets = BTreeMap::new();
    for pair in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((p, o)) = pair.split_once([':', '=']) else {
            return Err(format!("`{pair}` is not partition: offset"));
        };
        let p: i32 = p
            .trim()
            .parse()
            .map_err(|_| format!("`{}` is not a partition number", p.trim()))?;
        let o: i64 = o
            .trim()
            .parse()
            .map_err(|_| format!("`{}` is not an offset", o.trim()))?;
        if p < 0 || o < 0 {
            return Err(format!("`{pair}`: partitions and offsets are not negative"));
        }
        offsets.insert(p, o);
    }
    if offsets.is_empty() {
        return Err(format!("`offsets:{list}` lists no partition"));
    }
    Ok(offsets)
}

/// How long to wait for a broker while the job starts, and the connection settings.
#[derive(Clone, Debug)]
pub struct Connection {
    /// `host:port[,host:port...]`.
    pub brokers: String,
    /// Extra librdkafka properties (SASL, TLS, tuning), applied last.
    pub properties: BTreeMap<String, String>,
    /// How long start-up calls wait for the brokers before the job fails.
    pub connect_timeout: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_modes_parse_with_clear_errors() {
        assert_eq!(StartMode::parse("earliest"), Ok(StartMode::Earliest));
        assert_eq!(StartMode::parse(" group "), Ok(StartMode::Group));
        assert_eq!(
            StartMode::parse("timestamp:1970-01-01T00:00:01Z"),
            Ok(StartMode::Timestamp(1000))
        );
        let two = StartMode::Offsets([(0, 42), (1, 17)].into());
        assert_eq!(StartMode::parse("offsets:{0: 42, 1: 17}"), Ok(two.clone()));
        assert_eq!(StartMode::parse("offsets:0=42,1=17"), Ok(two));
        assert!(StartMode::parse("offsets:{0: -1}")
            .unwrap_err()
            .contains("not negative"));
        assert!(StartMode::parse("offsets:{}")
            .unwrap_err()
            .contains("no partition"));
        assert!(StartMode::parse("newest")
            .unwrap_err()
            .contains("expected earliest, latest"));
        assert!(StartMode::parse("timestamp:yesterday")
            .unwrap_err()
            .contains("yesterday"));
        assert_eq!(EndMode::parse("latest"), Ok(EndMode::Latest));
        assert!(EndMode::parse("forever").is_err());
    }
}
