//! The sink's delivery bookkeeping: every message is kept until the brokers acknowledge it, so
//! that what a broker refuses for a while (metadata lagging behind a restart) is sent again, and
//! a producer that hit a fatal error (a broker that forgot the idempotent producer's sequence
//! numbers) is replaced without losing what it held.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError as ClientError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use weir_engine::event::Epoch;

/// How many times a producer that hit a fatal error is replaced before the job fails.
const MAX_PRODUCER_RESTARTS: u32 = 5;

/// How long refused messages wait before they are sent again.
const RESEND_PAUSE: Duration = Duration::from_millis(500);

/// A message of the sink, kept until the brokers acknowledge it.
struct Message {
    id: u64,
    epoch: Epoch,
    key: Option<String>,
    payload: String,
}

/// What librdkafka's polling thread reports back: the message id and whether it arrived.
struct Deliveries {
    outcomes: Mutex<Vec<(u64, Option<ClientError>)>>,
    wake: Box<dyn Fn() + Send + Sync>,
}

impl Deliveries {
    fn take(&self) -> Vec<(u64, Option<ClientError>)> {
        std::mem::take(&mut *self.outcomes.lock().expect("deliveries lock"))
    }
}

struct Context(Arc<Deliveries>);

impl ClientContext for Context {}

impl ProducerContext for Context {
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, id: Box<u64>) {
        let error = result.as_ref().err().map(|(e, _)| e.clone());
        self.0
            .outcomes
            .lock()
            .expect("deliveries lock")
            .push((*id, error));
        (self.0.wake)();
    }
}

/// Refusals that a broker coming back (or a topic being created) produces for a while.
fn transient(e: &ClientError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::UnknownPartition
                | C::UnknownTopic
                | C::UnknownTopicOrPartition
                | C::LeaderNotAvailable
                | C::NotLeaderForPartition
                | C::NotEnoughReplicas
                | C::NotEnoughReplicasAfterAppend
        )
    )
}

/// The messages of one sink on one worker, from hand-over to acknowledgement.
pub(super) struct Outbox {
    /// The sink, for logs.
    sink: String,
    topic: String,
    headers: OwnedHeaders,
    config: ClientConfig,
    deliveries: Arc<Deliveries>,
    producer: ThreadedProducer<Context>,
    /// How long refusals are retried without any message getting through.
    patience: Duration,
    next_id: u64,
    /// Messages not yet acknowledged, per epoch.
    unacked: BTreeMap<Epoch, u64>,
    /// Handed to the producer, not yet acknowledged, by id (= send order).
    in_flight: BTreeMap<u64, Message>,
    /// Waiting for room in the producer's queue, in order.
    waiting: VecDeque<Message>,
    /// Refused for a transient reason, sent again at `resend_at`.
    refused: Vec<Message>,
    resend_at: Option<Instant>,
    /// Since when deliveries have failed without any succeeding.
    troubled_since: Option<Instant>,
    restarts: u32,
}

impl Outbox {
    /// A producer for `topic` that calls `wake` whenever an acknowledgement arrives.
    pub(super) fn new(
        config: ClientConfig,
        sink: &str,
        topic: &str,
        job: &str,
        patience: Duration,
        wake: Box<dyn Fn() + Send + Sync>,
    ) -> Result<Self, ClientError> {
        let deliveries = Arc::new(Deliveries {
            outcomes: Mutex::new(Vec::new()),
            wake,
        });
        let producer = config.create_with_context(Context(deliveries.clone()))?;
        Ok(Outbox {
            sink: sink.to_string(),
            topic: topic.to_string(),
            headers: OwnedHeaders::new().insert(Header {
                key: "weir-job",
                value: Some(job),
            }),
            config,
            deliveries,
            producer,
            patience,
            next_id: 0,
            unacked: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            waiting: VecDeque::new(),
            refused: Vec::new(),
            resend_at: None,
            troubled_since: None,
            restarts: 0,
        })
    }

    /// Queues a message of `epoch`; [`Outbox::pump`] sends it.
    pub(super) fn push(&mut self, epoch: Epoch, key: Option<String>, payload: String) {
        *self.unacked.entry(epoch).or_default() += 1;
        self.waiting.push_back(Message {
            id: self.next_id,
            epoch,
            key,
            payload,
        });
        self.next_id += 1;
    }

    /// Whether every message of `epoch` handed over so far is acknowledged.
    pub(super) fn is_acknowledged(&self, epoch: &Epoch) -> bool {
        !self.unacked.contains_key(epoch)
    }

    /// Whether no message is waiting for anything.
    pub(super) fn is_empty(&self) -> bool {
        self.unacked.is_empty()
    }

    /// When the operator should look again even if no acknowledgement wakes it.
    pub(super) fn wake_after(&self) -> Option<Duration> {
        if !self.waiting.is_empty() {
            Some(Duration::from_millis(1))
        } else {
            self.resend_at
                .map(|at| at.saturating_duration_since(Instant::now()))
        }
    }

    /// Takes in acknowledgements, then sends what waits, as far as the producer's queue allows.
    /// An error is a message that cannot be delivered: the job must fail.
    pub(super) fn pump(&mut self) -> Result<(), String> {
        self.settle()?;
        if self.resend_at.is_some_and(|at| at <= Instant::now()) {
            self.resend_at = None;
            let mut refused = std::mem::take(&mut self.refused);
            refused.sort_by_key(|m| std::cmp::Reverse(m.id));
            for m in refused {
                self.waiting.push_front(m);
            }
        }
        while let Some(m) = self.waiting.pop_front() {
            let epoch = m.epoch.to_string();
            let headers = self.headers.clone().insert(Header {
                key: "weir-epoch",
                value: Some(epoch.as_str()),
            });
            // The message timestamp is the producer's clock (as Flink's sink does by default):
            // event time travels in the row, and old event times would fall to retention.
            let mut record = BaseRecord::with_opaque_to(&self.topic, Box::new(m.id))
                .payload(m.payload.as_str())
                .headers(headers);
            if let Some(k) = &m.key {
                record = record.key(k.as_str());
            }
            match self.producer.send(record) {
                Ok(()) => {
                    self.in_flight.insert(m.id, m);
                }
                Err((e, _)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    self.waiting.push_front(m);
                    break;
                }
                Err((e, _)) => self.refuse(m, e)?,
            }
        }
        Ok(())
    }

    /// Applies the acknowledgements that arrived; replaces the producer after a fatal error.
    fn settle(&mut self) -> Result<(), String> {
        let mut errors = Vec::new();
        for (id, error) in self.deliveries.take() {
            match error {
                None => self.acknowledged(id),
                Some(e) => errors.push((id, e)),
            }
        }
        if errors.is_empty() {
            return Ok(());
        }
        if let Some((_, reason)) = self.producer.client().fatal_error() {
            return self.restart(reason);
        }
        for (id, e) in errors {
            if let Some(m) = self.in_flight.remove(&id) {
                self.refuse(m, e)?;
            }
        }
        Ok(())
    }

    fn acknowledged(&mut self, id: u64) {
        self.troubled_since = None;
        if let Some(m) = self.in_flight.remove(&id) {
            if let Some(n) = self.unacked.get_mut(&m.epoch) {
                *n -= 1;
                if *n == 0 {
                    self.unacked.remove(&m.epoch);
                }
            }
        }
    }

    /// Keeps a refused message for a later attempt if the refusal is transient and the brokers
    /// have not refused everything for longer than `patience`.
    fn refuse(&mut self, m: Message, e: ClientError) -> Result<(), String> {
        let since = *self.troubled_since.get_or_insert_with(Instant::now);
        if !transient(&e) {
            return Err(e.to_string());
        }
        if since.elapsed() > self.patience {
            return Err(format!("{e} (refused for {:?})", since.elapsed()));
        }
        if self.resend_at.is_none() {
            tracing::warn!(
                "sink `{}`: topic `{}` refused a message ({e}); resending what was refused in \
                 {RESEND_PAUSE:?}",
                self.sink,
                self.topic
            );
            self.resend_at = Some(Instant::now() + RESEND_PAUSE);
        }
        self.refused.push(m);
        Ok(())
    }

    /// Replaces a producer that hit a fatal error, sending again everything it did not get
    /// acknowledged.
    fn restart(&mut self, reason: String) -> Result<(), String> {
        if self.restarts == MAX_PRODUCER_RESTARTS {
            return Err(format!(
                "{reason} (after {} producer restarts)",
                self.restarts
            ));
        }
        self.restarts += 1;
        let fresh = self
            .config
            .create_with_context(Context(self.deliveries.clone()))
            .map_err(|e| e.to_string())?;
        // Dropping the old producer purges it and reports every message it still held; what it
        // got acknowledged before stays acknowledged.
        drop(std::mem::replace(&mut self.producer, fresh));
        for (id, error) in self.deliveries.take() {
            if error.is_none() {
                self.acknowledged(id);
            }
        }
        tracing::warn!(
            "sink `{}`: the producer for topic `{}` hit a fatal error ({reason}); started a new \
             one and resending {} unacknowledged message(s) (restart {} of {MAX_PRODUCER_RESTARTS})",
            self.sink,
            self.topic,
            self.in_flight.len(),
            self.restarts
        );
        for (_, m) in std::mem::take(&mut self.in_flight).into_iter().rev() {
            self.waiting.push_front(m);
        }
        Ok(())
    }
}
