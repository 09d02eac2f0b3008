//! Client plumbing: configuration, waiting for brokers at start, topics, reading a whole topic.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::Connection;

/// A failure talking to Kafka, naming the brokers and topic involved.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// The brokers did not answer in time.
    #[error("cannot reach Kafka at {brokers} within {waited:?}: {last}")]
    Unreachable {
        /// Bootstrap servers.
        brokers: String,
        /// How long we waited.
        waited: Duration,
        /// The last error from the client.
        last: String,
    },
    /// The topic is missing or broken.
    #[error("topic `{topic}` on {brokers}: {message}")]
    Topic {
        /// Topic.
        topic: String,
        /// Bootstrap servers.
        brokers: String,
        /// What is wrong.
        message: String,
    },
    /// Any other client error.
    #[error("Kafka at {brokers}: {message}")]
    Client {
        /// Bootstrap servers.
        brokers: String,
        /// What failed.
        message: String,
    },
}

pub(super) type Consumer_ = BaseConsumer<SourceContext>;

/// The consumer's context: the end of a partition is how bounded readers learn they are
/// done, so it is not reported as a client error; everything else is logged as a warning
/// (librdkafka keeps retrying on its own). Statistics (every few seconds) keep each
/// partition's high watermark, for the consumer-lag metric.
#[derive(Default)]
pub(super) struct SourceContext {
    high: std::sync::Mutex<std::collections::HashMap<(String, i32), i64>>,
}

impl SourceContext {
    /// The high watermark of `topic[partition]` in the last statistics.
    pub(super) fn high_watermark(&self, topic: &str, partition: i32) -> Option<i64> {
        let high = self.high.lock().ok()?;
        high.get(&(topic.to_string(), partition)).copied()
    }
}

impl rdkafka::client::ClientContext for SourceContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        if let Ok(mut high) = self.high.lock() {
            for (name, topic) in statistics.topics {
                for (p, partition) in topic.partitions {
                    if p >= 0 && partition.hi_offset >= 0 {
                        high.insert((name.clone(), p), partition.hi_offset);
                    }
                }
            }
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        use rdkafka::error::{KafkaError as E, RDKafkaErrorCode as Code};
        // End of partition is no problem; an offset the broker no longer has is reported by
        // the partition's reader, with the partition, the offsets and what was lost.
        if !matches!(
            error,
            E::PartitionEOF(_)
                | E::Global(Code::PartitionEOF)
                | E::Global(Code::AutoOffsetReset)
                | E::MessageConsumption(Code::AutoOffsetReset)
        ) {
            tracing::warn!("Kafka consumer: {error}: {reason}");
        }
    }
}

impl ConsumerContext for SourceContext {}

/// The librdkafka configuration of a connection: ours first, the user's properties last.
pub(super) fn config(conn: &Connection, group: Option<&str>) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &conn.brokers)
        // A missing topic is an error, not something to create by accident.
        .set("allow.auto.create.topics", "false")
        .set("socket.connection.setup.timeout.ms", "10000");
    if let Some(group) = group {
        c.set("group.id", group)
            // Positions belong to weir: the group only mirrors them for monitoring.
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            // Every read starts at a concrete offset; one the broker no longer has is the
            // reader's to report (data deleted before it was read), not to skip silently.
            .set("auto.offset.reset", "error")
            // Partition high watermarks for the consumer-lag metric.
            .set("statistics.interval.ms", "5000")
            // Some brokers (noida-db) ignore a fetch's byte limits and answer with a
            // partition's whole backlog; librdkafka refuses responses over this (100 MB by
            // default) and retries the same fetch forever. A `properties:` entry overrides it.
            .set("receive.message.max.bytes", "1000000000");
    }
    for (k, v) in &conn.properties {
        c.set(k, v);
    }
    c
}

pub(super) fn client_error(conn: &Connection, e: impl std::fmt::Display) -> KafkaError {
    KafkaError::Client {
        brokers: conn.brokers.clone(),
        message: e.to_string(),
    }
}

/// A consumer for `group`.
pub(super) fn consumer(conn: &Connection, group: &str) -> Result<Arc<Consumer_>, KafkaError> {
    let consumer: Consumer_ = config(conn, Some(group))
        .create_with_context(SourceContext::default())
        .map_err(|e| client_error(conn, e))?;
    Ok(Arc::new(consumer))
}

/// Retries `call` until it succeeds or `conn.connect_timeout` has passed, logging what it
/// waits for. Used only while a job starts.
pub(super) fn with_retries<T>(
    conn: &Connection,
    what: &str,
    mut call: impl FnMut(Duration) -> Result<T, String>,
) -> Result<T, KafkaError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        let left = conn.connect_timeout.saturating_sub(started.elapsed());
        match call(left.clamp(Duration::from_millis(200), Duration::from_secs(1))) {
            Ok(v) => return Ok(v),
            Err(e) if started.elapsed() + pause >= conn.connect_timeout => {
                return Err(KafkaError::Unreachable {
                    brokers: conn.brokers.clone(),
                    waited: started.elapsed(),
                    last: format!("{what}: {e}"),
                })
            }
            Err(e) => {
                tracing::warn!(
                    "Kafka at {}: {what} failed ({e}); retrying in {pause:?} (attempt {attempt}, giving up after {:?})",
                    conn.brokers,
                    conn.connect_timeout
                );
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(2));
                attempt += 1;
            }
        }
    }
}

/// The partitions of `topic`, waiting for the brokers if needed.
pub(super) fn partitions_of<C: rdkafka::client::ClientContext>(
    client: &rdkafka::client::Client<C>,
    conn: &Connection,
    topic: &str,
) -> Result<Vec<i32>, KafkaError> {
    let metadata = with_retries(
        conn,
        &format!("reading the metadata of topic `{topic}`"),
        |timeout| {
            client
                .fetch_metadata(Some(topic), timeout)
                .map_err(|e| e.to_string())
        },
    )?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(KafkaError::Topic {
            topic: topic.into(),
            brokers: conn.brokers.clone(),
            message: "not in the metadata".into(),
        });
    };
    if let Some(err) = t.error() {
        let message = match err {
            rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART => {
                "does not exist (create it, e.g. with `weir gen ... --topic`, or with your Kafka tools)".to_string()
            }
            other => format!("{other:?}"),
        };
        return Err(KafkaError::Topic {
            topic: topic.into(),
            brokers: conn.brokers.clone(),
            message,
        });
    }
    let mut partitions: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    partitions.sort_unstable();
    Ok(partitions)
}

/// Low and high watermarks of every partition of `topic`.
pub fn fetch_high_watermarks(
    conn: &Connection,
    topic: &str,
) -> Result<BTreeMap<i32, (i64, i64)>, KafkaError> {
    let consumer = consumer(conn, "weir-admin")?;
    let partitions = partitions_of(consumer.client(), conn, topic)?;
    let mut out = BTreeMap::new();
    for p in partitions {
        let marks = with_retries(
            conn,
            &format!("reading the offsets of {topic}[{p}]"),
            |timeout| {
                consumer
                    .fetch_watermarks(topic, p, timeout)
                    .map_err(|e| e.to_string())
            },
        )?;
        out.insert(p, marks);
    }
    Ok(out)
}

/// Deletes the records of `topic` below the given offset of each partition (Kafka's
/// DeleteRecords: the partition's start moves up to that offset). Returns each partition's
/// new start offset as the broker reports it.
pub fn delete_records_before(
    conn: &Connection,
    topic: &str,
    before: &BTreeMap<i32, i64>,
) -> Result<BTreeMap<i32, i64>, KafkaError> {
    let admin: AdminClient<DefaultClientContext> = config(conn, None)
        .create()
        .map_err(|e| client_error(conn, e))?;
    let mut list = TopicPartitionList::new();
    for (p, offset) in before {
        list.add_partition_offset(topic, *p, Offset::Offset(*offset))
            .map_err(|e| client_error(conn, e))?;
    }
    let options = AdminOptions::new()
        .operation_timeout(Some(conn.connect_timeout))
        .request_timeout(Some(conn.connect_timeout));
    let result = futures_executor::block_on(admin.delete_records(&list, &options))
        .map_err(|e| client_error(conn, e))?;
    let mut out = BTreeMap::new();
    for e in result.elements() {
        if let Err(code) = e.error() {
            return Err(KafkaError::Topic {
                topic: topic.into(),
                brokers: conn.brokers.clone(),
                message: format!(
                    "deleting the records of partition {} failed: {code}",
                    e.partition()
                ),
            });
        }
        if let Offset::Offset(o) = e.offset() {
            out.insert(e.partition(), o);
        }
    }
    Ok(out)
}

/// Creates `topic` with `partitions` partitions and the given topic configs (e.g.
/// `retention.ms`); `Ok(false)` when it already exists. Waits for the brokers at most the
/// connection's timeout.
pub fn create_topic(
    conn: &Connection,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Result<bool, KafkaError> {
    let admin: AdminClient<DefaultClientContext> = config(conn, None)
        .create()
        .map_err(|e| client_error(conn, e))?;
    // Reach the brokers first: a clear, bounded error when they are not there.
    match partitions_of(admin.inner(), conn, topic) {
        Ok(_) => return Ok(false),
        Err(KafkaError::Topic { .. }) => {}
        Err(e) => return Err(e),
    }
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let options = AdminOptions::new()
        .operation_timeout(Some(conn.connect_timeout))
        .request_timeout(Some(conn.connect_timeout));
    let results = futures_executor::block_on(admin.create_topics([&new], &options))
        .map_err(|e| client_error(conn, e))?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(true),
        Some(Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists))) | None => Ok(false),
        Some(Err((_, code))) => Err(KafkaError::Topic {
            topic: topic.into(),
            brokers: conn.brokers.clone(),
            message: format!("cannot create it: {code}"),
        }),
    }
}

/// Makes sure `topic` exists, creating it with `partitions` partitions if it does not;
/// waits for the brokers up to the connection's timeout. Returns whether it was created.
pub fn ensure_topic(conn: &Connection, topic: &str, partitions: i32) -> Result<bool, KafkaError> {
    create_topic(conn, topic, partitions, &[])
}

/// A message read back by [`read_topic`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicMessage {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Payload.
    pub payload: Option<Vec<u8>>,
    /// Message timestamp, ms.
    pub timestamp: Option<i64>,
}

/// Reads every message of `topic` up to the high watermarks at the time of the call
/// (committed messages only: the reader is `read_committed`, librdkafka's default).
pub fn read_topic(conn: &Connection, topic: &str) -> Result<Vec<TopicMessage>, KafkaError> {
    let ends = fetch_high_watermarks(conn, topic)?;
    let consumer = consumer(conn, "weir-reader")?;
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0;
    for (&p, &(low, high)) in &ends {
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Offset(low))
                .map_err(|e| client_error(conn, e))?;
            remaining += 1;
        }
    }
    let mut out = Vec::new();
    if remaining == 0 {
        return Ok(out);
    }
    consumer.assign(&tpl).map_err(|e| client_error(conn, e))?;
    let deadline = Instant::now() + conn.connect_timeout.max(Duration::from_secs(30));
    let mut done: BTreeMap<i32, bool> = BTreeMap::new();
    while done.len() < remaining {
        if Instant::now() > deadline {
            return Err(KafkaError::Topic {
                topic: topic.into(),
                brokers: conn.brokers.clone(),
                message: format!(
                    "read {} messages, then nothing more arrived before the deadline",
                    out.len()
                ),
            });
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            // The end as a read_committed reader sees it: the last offsets may be transaction
            // markers, which are never delivered.
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                done.insert(p, true);
            }
            Some(Err(e)) => tracing::warn!("reading topic `{topic}`: {e}"),
            Some(Ok(m)) => {
                let (p, o) = (m.partition(), m.offset());
                let high = ends[&p].1;
                if o < high {
                    out.push(TopicMessage {
                        partition: p,
                        offset: o,
                        key: m.key().map(<[u8]>::to_vec),
                        payload: m.payload().map(<[u8]>::to_vec),
                        timestamp: m.timestamp().to_millis(),
                    });
                }
                if o + 1 >= high {
                    done.insert(p, true);
                }
            }
        }
    }
    out.sort_by_key(|m| (m.partition, m.offset));
    Ok(out)
}

/// Produces messages outside a dataflow (`weir gen`), waiting when the queue is full and
/// counting deliveries.
pub struct MessageProducer {
    producer: rdkafka::producer::ThreadedProducer<CountingContext>,
    context: Arc<Counts>,
    topic: String,
    brokers: String,
}

#[derive(Default)]
struct Counts {
    delivered: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

struct CountingContext(Arc<Counts>);

impl rdkafka::client::ClientContext for CountingContext {}

impl rdkafka::producer::ProducerContext for CountingContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        use std::sync::atomic::Ordering::Relaxed;
        match result {
            Ok(_) => self.0.delivered.fetch_add(1, Relaxed),
            Err((e, _)) => {
                self.0
                    .first_error
                    .lock()
                    .expect("lock")
                    .get_or_insert_with(|| e.to_string());
                self.0.failed.fetch_add(1, Relaxed)
            }
        };
    }
}

impl MessageProducer {
    /// A producer to `topic`, with `linger.ms` batching and lz4 compression unless the
    /// connection's properties say otherwise.
    pub fn new(conn: &Connection, topic: &str) -> Result<Self, KafkaError> {
        let counts = Arc::new(Counts::default());
        let mut c = config(conn, None);
        if !conn.properties.contains_key("linger.ms") {
            c.set("linger.ms", "20");
        }
        if !conn.properties.contains_key("compression.type") {
            c.set("compression.type", "lz4");
        }
        let producer = c
            .create_with_context(CountingContext(counts.clone()))
            .map_err(|e| client_error(conn, e))?;
        Ok(MessageProducer {
            producer,
            context: counts,
            topic: topic.to_string(),
            brokers: conn.brokers.clone(),
        })
    }

    /// Queues one message, waiting while the producer's queue is full.
    pub fn send(
        &self,
        key: Option<&str>,
        payload: &[u8],
        timestamp: Option<i64>,
    ) -> Result<(), KafkaError> {
        self.send_to(None, key, payload, timestamp)
    }

    /// Queues one message to a chosen partition (`None`: by key), waiting while the queue is
    /// full.
    pub fn send_to(
        &self,
        partition: Option<i32>,
        key: Option<&str>,
        payload: &[u8],
        timestamp: Option<i64>,
    ) -> Result<(), KafkaError> {
        use rdkafka::producer::BaseRecord;
        loop {
            let mut record: BaseRecord<'_, str, [u8]> =
                BaseRecord::to(&self.topic).payload(payload);
            if let Some(p) = partition {
                record = record.partition(p);
            }
            if let Some(k) = key {
                record = record.key(k);
            }
            if let Some(ts) = timestamp {
                record = record.timestamp(ts);
            }
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((e, _))
                    if matches!(
                        e.rdkafka_error_code(),
                        Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                    ) =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => {
                    return Err(KafkaError::Topic {
                        topic: self.topic.clone(),
                        brokers: self.brokers.clone(),
                        message: e.to_string(),
                    })
                }
            }
        }
    }

    /// Messages acknowledged so far.
    pub fn delivered(&self) -> u64 {
        self.context
            .delivered
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits for every queued message; fails if any could not be delivered.
    pub fn finish(self, timeout: Duration) -> Result<u64, KafkaError> {
        use rdkafka::producer::Producer;
        let flushed = self.producer.flush(timeout);
        let failed = self
            .context
            .failed
            .load(std::sync::atomic::Ordering::Relaxed);
        let err = |message: String| KafkaError::Topic {
            topic: self.topic.clone(),
            brokers: self.brokers.clone(),
            message,
        };
        if failed > 0 {
            let first = self
                .context
                .first_error
                .lock()
                .expect("lock")
                .clone()
                .unwrap_or_default();
            return Err(err(format!(
                "{failed} message(s) could not be delivered: {first}"
            )));
        }
        flushed.map_err(|e| {
            err(format!(
                "{} message(s) still unacknowledged after {timeout:?}: {e}",
                self.producer.in_flight_count()
            ))
        })?;
        Ok(self.delivered())
    }
}
