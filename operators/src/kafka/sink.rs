//! The Kafka sink: JSON rows produced by every worker, an epoch reported done once all its
//! messages are acknowledged by the brokers.

use std::collections::BTreeMap;
use std::sync::Arc;

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
use super::outbox::Outbox;
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
    /// How messages are delivered.
    pub delivery: super::Delivery,
    /// Where commit records go (exactly-once and idempotent delivery).
    pub commit_topic: String,
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
    let stats = stats.sink(&config.name, scope.index());
    let info = builder.operator_info();
    let activator = scope.activator_for(info.address.clone());
    let sync = scope.worker().sync_activator_for(info.address.to_vec());
    let mut producer_config = client_config(&config.connection, None);
    // Retries after a broker outage must not write a message twice (unless told otherwise).
    if !config
        .connection
        .properties
        .contains_key("enable.idempotence")
    {
        producer_config.set("enable.idempotence", "true");
    }
    let mut outbox = Outbox::new(
        producer_config,
        &config.name,
        &config.topic,
        &config.job,
        config.connection.connect_timeout,
        Box::new(move || {
            let _ = sync.activate();
        }),
    )
    .map_err(|e| client_error(&config.connection, e))?;
    let mut input = builder.new_input(stream, Pipeline);
    let (output, done) = builder.new_output();
    let mut output: OutputBuilder<_, CapacityContainerBuilder<Vec<()>>> =
        OutputBuilder::from(output);

    builder.build_reschedule(move |_initial| {
        let mut held: BTreeMap<Epoch, Capability<Epoch>> = BTreeMap::new();
        let mut line = String::new();
        let mut failed = false;
        move |frontiers| {
            // The done stream carries no data: only the capabilities held below.
            let _ = &mut output;
            if failed {
                return false;
            }
            input.for_each_stamp(|cap, data| {
                let Some(&epoch) = cap.least() else { return };
                held.entry(epoch)
                    .or_insert_with(|| cap.retain_least(0).expect("a message has a time"));
                for batch in data {
                    stats.written(epoch, batch.iter().map(|e| e.ts));
                    for event in batch.drain(..) {
                        line.clear();
                        encode_row(&event.row, &config.columns, config.format, &mut line);
                        let key = config.key.as_ref().and_then(|k| match k.eval(&event.row) {
                            Value::Null => None,
                            Value::Str(s) => Some(s.into_owned()),
                            other => Some(other.to_string()),
                        });
                        outbox.push(epoch, key, line.clone());
                    }
                }
            });
            if let Err(e) = outbox.pump() {
                failures.report(format!(
                    "sink `{}`: delivery to topic `{}` failed: {e}",
                    config.name, config.topic
                ));
                failed = true;
                held.clear();
                return false;
            }
            // An epoch is done when no more of it can arrive and all of it is acknowledged.
            held.retain(|epoch, _| {
                frontiers[0].less_equal(epoch) || !outbox.is_acknowledged(epoch)
            });
            if let Some(after) = outbox.wake_after() {
                activator.activate_after(after);
            }
            !held.is_empty() || !outbox.is_empty()
        }
    });
    Ok(done)
}
