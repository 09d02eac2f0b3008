//! The Kafka sink: JSON rows produced by every worker, an epoch reported done once all its
//! messages are acknowledged by the brokers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rdkafka::client::ClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::Capability;
use timely::dataflow::StreamVec;
use weir_engine::data::{encode_row, TimestampFormat, Value};
use weir_engine::event::{Epoch, Event};
use weir_engine::failure::Failures;
use weir_engine::stats::JobStats;

use super::client::{client_error, config as client_config, KafkaError};
use super::Connection;
use crate::expr::Expr;
use crate::sink::Done;

/// A Kafka sink.
#[derive(Clone, Debug)]
pub struct KafkaSinkConfig {
    /// Sink name.
    pub name: String,
    /// The job (sent in a `weir-job` header).
    pub job: String,
    /// Brokers and producer properties (batching, compression, security).
    pub connection: Connection,
    /// Topic.
    pub topic: String,
    /// Message key, an expression over the row; none for unkeyed messages.
    pub key: Option<Expr>,
    /// Column names of the rows.
    pub columns: Vec<String>,
    /// Timestamp encoding in the JSON.
    pub format: TimestampFormat,
    /// Partitions of the topic if the sink has to create it.
    pub partitions: i32,
}

/// Delivery bookkeeping shared with librdkafka's polling thread.
struct Deliveries {
    /// Messages sent and not yet acknowledged, per epoch.
    pending: Mutex<BTreeMap<Epoch, u64>>,
    failure: Mutex<Option<String>>,
    wake: Box<dyn Fn() + Send + Sync>,
}

struct SinkContext(Arc<Deliveries>);

impl ClientContext for SinkContext {}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = Box<Epoch>;

    fn delivery(&self, result: &DeliveryResult<'_>, epoch: Box<Epoch>) {
        if let Err((e, _)) = result {
            let mut failure = self.0.failure.lock().expect("lock");
            failure.get_or_insert_with(|| e.to_string());
        }
        let mut pending = self.0.pending.lock().expect("lock");
        if let Some(n) = pending.get_mut(&epoch) {
            *n -= 1;
            if *n == 0 {
                pending.remove(&epoch);
            }
        }
        drop(pending);
        (self.0.wake)();
    }
}

/// A message waiting for room in the producer's queue.
struct Unsent {
    epoch: Epoch,
    key: Option<String>,
    payload: String,
    timestamp: i64,
}

/// Writes `stream` to Kafka; the returned stream's frontier passes an epoch once every message
/// of it has been acknowledged. A message that cannot be delivered after librdkafka's retries
/// (`message.timeout.ms`) fails the job: nothing is dropped silently.
pub fn kafka_sink<'scope>(
    stream: StreamVec<'scope, Epoch, Event>,
    config: KafkaSinkConfig,
    stats: Arc<JobStats>,
    failures: Failures,
) -> Result<Done<'scope>, KafkaError> {
    let scope = stream.scope();
    // Fail (or create the topic) now, not after librdkafka's message timeout.
    if scope.index() == 0
        && super::client::ensure_topic(&config.connection, &config.topic, config.partitions)?
    {
        tracing::info!(
            "sink `{}`: created topic `{}` with {} partition(s)",
            config.name,
            config.topic,
            config.partitions
        );
    }
    let mut builder = OperatorBuilder::new(format!("sink.{}", config.name), scope);
    let info = builder.operator_info();
    let activator = scope.activator_for(info.address.clone());
    let sync = scope.worker().sync_activator_for(info.address.to_vec());
    let deliveries = Arc::new(Deliveries {
        pending: Mutex::new(BTreeMap::new()),
        failure: Mutex::new(None),
        wake: Box::new(move || {
            let _ = sync.activate();
        }),
    });
    let producer: ThreadedProducer<SinkContext> = client_config(&config.connection, None)
        .create_with_context(SinkContext(deliveries.clone()))
        .map_err(|e| client_error(&config.connection, e))?;
    let mut input = builder.new_input(stream, Pipeline);
    let (output, done) = builder.new_output();
    let mut output: OutputBuilder<_, CapacityContainerBuilder<Vec<()>>> =
        OutputBuilder::from(output);

    builder.build_reschedule(move |_initial| {
        let mut held: BTreeMap<Epoch, Capability<Epoch>> = BTreeMap::new();
        let mut backlog: std::collections::VecDeque<Unsent> = Default::default();
        let mut line = String::new();
        let mut failed = false;
        move |frontiers| {
            // The done stream carries no data: only the capabilities held below.
            let _ = &mut output;
            if failed {
                return false;
            }
            let send = |u: Unsent, backlog_empty: bool| -> Result<(), Unsent> {
                if !backlog_empty {
                    return Err(u);
                }
                let epoch_text = u.epoch.to_string();
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: "weir-job",
                        value: Some(config.job.as_str()),
                    })
                    .insert(Header {
                        key: "weir-epoch",
                        value: Some(epoch_text.as_str()),
                    });
                *deliveries
                    .pending
                    .lock()
                    .expect("lock")
                    .entry(u.epoch)
                    .or_default() += 1;
                let mut record = BaseRecord::with_opaque_to(&config.topic, Box::new(u.epoch))
                    .payload(u.payload.as_str())
                    .timestamp(u.timestamp)
                    .headers(headers);
                if let Some(k) = &u.key {
                    record = record.key(k.as_str());
                }
                match producer.send(record) {
                    Ok(()) => Ok(()),
                    Err((e, _)) => {
                        let mut pending = deliveries.pending.lock().expect("lock");
                        if let Some(n) = pending.get_mut(&u.epoch) {
                            *n -= 1;
                        }
                        drop(pending);
                        if matches!(e.rdkafka_error_code(), Some(RDKafkaErrorCode::QueueFull)) {
                            Err(u)
                        } else {
                            deliveries
                                .failure
                                .lock()
                                .expect("lock")
                                .get_or_insert_with(|| e.to_string());
                            Ok(())
                        }
                    }
                }
            };
            // Messages that found the queue full go first, in order.
            while let Some(u) = backlog.pop_front() {
                if let Err(u) = send(u, true) {
                    backlog.push_front(u);
                    break;
                }
            }
            input.for_each_stamp(|cap, data| {
                let Some(&epoch) = cap.least() else { return };
                held.entry(epoch)
                    .or_insert_with(|| cap.retain_least(0).expect("a message has a time"));
                for batch in data {
                    stats.add_out(batch.len() as u64);
                    for event in batch.drain(..) {
                        line.clear();
                        encode_row(&event.row, &config.columns, config.format, &mut line);
                        let key = config.key.as_ref().and_then(|k| match k.eval(&event.row) {
                            Value::Null => None,
                            Value::Str(s) => Some(s.into_owned()),
                            other => Some(other.to_string()),
                        });
                        let unsent = Unsent {
                            epoch,
                            key,
                            payload: line.clone(),
                            timestamp: event.ts,
                        };
                        if let Err(u) = send(unsent, backlog.is_empty()) {
                            backlog.push_back(u);
                        }
                    }
                }
            });
            if let Some(e) = deliveries.failure.lock().expect("lock").take() {
                failures.report(format!(
                    "sink `{}`: delivery to topic `{}` failed: {e}",
                    config.name, config.topic
                ));
                failed = true;
                held.clear();
                return false;
            }
            // An epoch is done when no more of it can arrive and all of it is acknowledged.
            let pending = deliveries.pending.lock().expect("lock").clone();
            held.retain(|epoch, _| {
                frontiers[0].less_equal(epoch)
                    || pending.contains_key(epoch)
                    || backlog.iter().any(|u| u.epoch == *epoch)
            });
            if !backlog.is_empty() {
                activator.activate_after(std::time::Duration::from_millis(1));
            }
            !held.is_empty() || !backlog.is_empty() || !pending.is_empty()
        }
    });
    Ok(done)
}
