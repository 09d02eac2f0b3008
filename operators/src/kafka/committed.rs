//! The Kafka sink of a job with checkpoints: a [`TwoPhase`] sink that writes each checkpoint's
//! messages in one transaction, together with a commit record.
//!
//! **Commit record.** Every batch ends with a message to the commit topic (default
//! `weir-commits`), key `<job>/<sink>/w<worker>`, value the batch id (its checkpoint epoch).
//! In `exactly_once` mode it is in the same transaction as the batch: the batch is visible to
//! `read_committed` readers if and only if its record is.
//!
//! **Recovery decision** (a crash at any point, then a restore of checkpoint `c`): the restored
//! checkpoint lists the batches each worker had prepared and not yet seen committed. For each
//! such worker `w` (the new run's worker `w % workers` takes it on) the sink opens a producer
//! with `w`'s transactional id — `init_transactions` fences the dead process and aborts any
//! transaction it left open — then reads the commit topic (read_committed) for `w`'s newest
//! record `r`, and commits again exactly the batches with ids above `r`, each with its record.
//! A crash *during* a commit therefore ends one of two ways: the broker committed it (the
//! record is there, the batch is skipped) or it did not (the transaction was aborted, the
//! batch is committed now). Batches of the new run get ids above every checkpoint in the store,
//! so they never collide with old records.
//!
//! `idempotent` mode (brokers without transactions): the same batches and records without a
//! transaction; the record is sent after the batch is acknowledged. A crash between the two
//! writes the batch again on recovery — at least once, and every message carries
//! `weir-checkpoint` and `weir-worker` headers and a deterministic key so readers can drop the
//! repeat.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError as ClientError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use serde::{Deserialize, Serialize};
use weir_engine::data::{encode_row, Value};
use weir_engine::event::{Epoch, Event};

use super::client::{client_error, config as client_config, ensure_topic, read_topic, KafkaError};
use super::{Delivery, KafkaSinkConfig};
use crate::sink::TwoPhase;

/// How many times a batch is attempted before the job fails.
const ATTEMPTS: u32 = 5;

/// A message of a batch: key and JSON payload.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Staged {
    key: Option<String>,
    payload: String,
}

#[derive(Default)]
struct Failed(Mutex<Option<String>>);

struct Context(Arc<Failed>);

impl ClientContext for Context {}

impl ProducerContext for Context {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.0
                 .0
                .lock()
                .expect("failure lock")
                .get_or_insert_with(|| e.to_string());
        }
    }
}

/// One producer, transactional or not, for the batches of one worker (of this run or of the
/// one being recovered).
struct BatchProducer {
    producer: ThreadedProducer<Context>,
    failed: Arc<Failed>,
    transactional: bool,
    worker: usize,
}

/// The Kafka sink's side of the two-phase contract.
pub struct KafkaCommitter {
    config: KafkaSinkConfig,
    worker: usize,
    producer: Option<BatchProducer>,
    line: String,
}

impl KafkaCommitter {
    /// The committer of `worker`; creates the topics when missing (on worker 0).
    pub fn new(config: KafkaSinkConfig, worker: usize) -> Result<Self, KafkaError> {
        if worker == 0 {
            for (topic, partitions) in [
                (&config.topic, config.partitions),
                (&config.commit_topic, 1),
            ] {
                if ensure_topic(&config.connection, topic, partitions)? {
                    tracing::info!("sink `{}`: created topic `{topic}`", config.name);
                }
            }
        }
        Ok(KafkaCommitter {
            config,
            worker,
            producer: None,
            line: String::new(),
        })
    }

    fn transactional(&self) -> bool {
        self.config.delivery == Delivery::ExactlyOnce
    }

    /// The record key of `worker`'s batches.
    fn record_key(&self, worker: usize) -> String {
        format!("{}/{}/w{worker}", self.config.job, self.config.name)
    }

    /// A producer for `worker`'s batches; a transactional one fences every earlier producer
    /// with the same id (and aborts what it left open).
    fn open(&self, worker: usize) -> Result<BatchProducer, String> {
        let conn = &self.config.connection;
        let mut c: ClientConfig = client_config(conn, None);
        c.set("enable.idempotence", "true");
        let transactional = self.transactional();
        if transactional {
            c.set(
                "transactional.id",
                format!("weir-{}", self.record_key(worker)),
            );
        }
        let failed = Arc::new(Failed::default());
        let producer: ThreadedProducer<Context> = c
            .create_with_context(Context(failed.clone()))
            .map_err(|e| client_error(conn, e).to_string())?;
        if transactional {
            producer
                .init_transactions(conn.connect_timeout)
                .map_err(|e| {
                    format!(
                        "cannot start transactions on {} (does the broker support them? \
                         `delivery: idempotent` works without): {e}",
                        conn.brokers
                    )
                })?;
        }
        Ok(BatchProducer {
            producer,
            failed,
            transactional,
            worker,
        })
    }

    /// Fences `worker`'s transactional producer of an earlier run: a transaction it left open
    /// is aborted, so that readers of the commit topic are not held up by it. Every worker
    /// fences the earlier workers it stands in for, for every sink, before any sink recovers.
    pub fn fence(&self, worker: usize) -> Result<(), String> {
        if self.transactional() {
            self.open(worker)?;
        }
        Ok(())
    }

    /// The newest batch id `worker` committed, from the commit topic.
    fn committed_up_to(&self, worker: usize) -> Result<Option<Epoch>, String> {
        let key = self.record_key(worker);
        // A consumer: without the producer's tuning, with the security settings.
        let mut conn = self.config.connection.clone();
        conn.properties.retain(|k, _| {
            ["security.", "sasl.", "ssl.", "client."]
                .iter()
                .any(|p| k.starts_with(p))
        });
        let records = read_topic(&conn, &self.config.commit_topic).map_err(|e| e.to_string())?;
        Ok(records
            .iter()
            .filter(|m| m.key.as_deref() == Some(key.as_bytes()))
            .filter_map(|m| {
                std::str::from_utf8(m.payload.as_deref()?)
                    .ok()?
                    .parse()
                    .ok()
            })
            .max())
    }

    /// Writes batch `id` and its commit record through `p`, retrying what can be retried.
    fn write(&self, p: &mut BatchProducer, id: Epoch, batch: &[Staged]) -> Result<(), String> {
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            match self.attempt(p, id, batch) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(
                        "sink `{}`: batch {id} of worker {} not committed (attempt {attempt} of \
                         {ATTEMPTS}): {e}",
                        self.config.name,
                        p.worker
                    );
                    last = e;
                    if p.transactional {
                        let _ = p
                            .producer
                            .abort_transaction(self.config.connection.connect_timeout);
                    }
                    std::thread::sleep(Duration::from_millis(200 * attempt as u64));
                    if p.producer.client().fatal_error().is_some() || p.transactional {
                        // A fresh producer: fences and aborts whatever the old one left.
                        *p = self.open(p.worker)?;
                    }
                    if p.transactional && self.committed_up_to(p.worker)?.is_some_and(|d| d >= id) {
                        // The commit went through after all (its outcome was unknown).
                        return Ok(());
                    }
                }
            }
        }
        Err(format!(
            "batch {id} failed {ATTEMPTS} times; the last error: {last}"
        ))
    }

    fn attempt(&self, p: &BatchProducer, id: Epoch, batch: &[Staged]) -> Result<(), String> {
        let timeout = self.config.connection.connect_timeout;
        *p.failed.0.lock().expect("failure lock") = None;
        if p.transactional {
            p.producer.begin_transaction().map_err(|e| e.to_string())?;
        }
        let (id_text, worker_text) = (id.to_string(), p.worker.to_string());
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "weir-job",
                value: Some(self.config.job.as_str()),
            })
            .insert(Header {
                key: "weir-checkpoint",
                value: Some(id_text.as_str()),
            })
            .insert(Header {
                key: "weir-worker",
                value: Some(worker_text.as_str()),
            });
        for m in batch {
            let mut record = BaseRecord::to(&self.config.topic)
                .payload(m.payload.as_str())
                .headers(headers.clone());
            if let Some(k) = &m.key {
                record = record.key(k.as_str());
            }
            send(&p.producer, record)?;
        }
        let key = self.record_key(p.worker);
        let record_of = || {
            BaseRecord::to(&self.config.commit_topic)
                .key(key.as_str())
                .payload(id_text.as_str())
                .headers(headers.clone())
        };
        if p.transactional {
            send(&p.producer, record_of())?;
            p.producer
                .flush(timeout)
                .map_err(|e| format!("not acknowledged in {timeout:?}: {e}"))?;
            weir_engine::crash::point("kafka.before_commit");
            p.producer
                .commit_transaction(timeout)
                .map_err(|e| format!("commit failed: {e}"))?;
            weir_engine::crash::point("kafka.after_commit");
        } else {
            flush(p, timeout)?;
            send(&p.producer, record_of())?;
            flush(p, timeout)?;
        }
        match p.failed.0.lock().expect("failure lock").take() {
            Some(e) => Err(format!("a message was not delivered: {e}")),
            None => Ok(()),
        }
    }
}

/// Sends one record, waiting while the producer's queue is full.
fn send(
    producer: &ThreadedProducer<Context>,
    mut record: BaseRecord<'_, str, str>,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((e, r)) if is_queue_full(&e) && Instant::now() < deadline => {
                record = r;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(e.to_string()),
        }
    }
}

fn is_queue_full(e: &ClientError) -> bool {
    e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull)
}

fn flush(p: &BatchProducer, timeout: Duration) -> Result<(), String> {
    p.producer
        .flush(timeout)
        .map_err(|e| format!("not acknowledged in {timeout:?}: {e}"))?;
    match p.failed.0.lock().expect("failure lock").take() {
        Some(e) => Err(format!("a message was not delivered: {e}")),
        None => Ok(()),
    }
}

impl TwoPhase for KafkaCommitter {
    type Record = Event;

    fn event_time(record: &Event) -> Option<i64> {
        Some(record.ts)
    }
    type Item = Staged;
    type Prepared = Vec<Staged>;

    fn item(&mut self, event: Event) -> Result<Staged, String> {
        self.line.clear();
        encode_row(
            &event.row,
            &self.config.columns,
            self.config.format,
            &mut self.line,
        );
        let key = self
            .config
            .key
            .as_ref()
            .and_then(|k| match k.eval(&event.row) {
                Value::Null => None,
                Value::Str(s) => Some(s.into_owned()),
                other => Some(other.to_string()),
            });
        Ok(Staged {
            key,
            payload: self.line.clone(),
        })
    }

    fn prepare(&mut self, _id: Epoch, items: Vec<Staged>) -> Result<Vec<Staged>, String> {
        // The messages themselves go into the checkpoint: a batch is written to Kafka only
        // once its checkpoint is complete, so a restore can always write it again.
        Ok(items)
    }

    fn commit(&mut self, id: Epoch, batch: &Vec<Staged>) -> Result<(), String> {
        let mut p = match self.producer.take() {
            Some(p) => p,
            None => self.open(self.worker)?,
        };
        let result = self.write(&mut p, id, batch);
        self.producer = Some(p);
        result
    }

    fn recover(&mut self, owner: usize, batches: Vec<(Epoch, Vec<Staged>)>) -> Result<(), String> {
        // Fence first (which aborts an open transaction), then read what is committed.
        let mut p = self.open(owner)?;
        let done = self.committed_up_to(owner)?;
        let mut again = 0;
        for (id, batch) in batches
            .iter()
            .filter(|(id, _)| done.is_none_or(|d| *id > d))
        {
            self.write(&mut p, *id, batch)?;
            again += 1;
        }
        tracing::info!(
            "sink `{}`: recovered worker {owner}'s batches: {} already committed (up to {}), {again} committed now",
            self.config.name,
            batches.len() - again,
            done.map_or("none".into(), |d| d.to_string()),
        );
        if owner == self.worker {
            self.producer = Some(p);
        }
        Ok(())
    }
}
