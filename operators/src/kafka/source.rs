//! The Kafka source: each worker's consumer reads the partitions `p` with `p % workers ==
//! worker`, one [`PartitionReader`] per partition over its own librdkafka queue.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use weir_engine::data::{JsonDecoder, SchemaRef};
use weir_engine::event::Epoch;

use super::client::{consumer, partitions_of, with_retries, Consumer_, KafkaError};
use super::{Connection, EndMode, MetadataColumns, StartMode};
use crate::source::{Emitter, PartitionDiscovery, PartitionReader, Partitions, ReadStatus, Waker};

/// A Kafka source.
#[derive(Clone, Debug)]
pub struct KafkaSourceConfig {
    /// Source name.
    pub name: String,
    /// Brokers and client properties.
    pub connection: Connection,
    /// Topic.
    pub topic: String,
    /// Consumer group: where `start: group` reads from and positions are mirrored to.
    pub group: String,
    /// Where to start.
    pub start: StartMode,
    /// Where to stop; `None` reads forever.
    pub until: Option<EndMode>,
    /// How often to look for new partitions (unbounded sources only).
    pub discovery: Option<Duration>,
    /// Where a restored run resumes, per partition: overrides `start`.
    pub resume: BTreeMap<i32, i64>,
    /// Decoded schema (with any metadata columns).
    pub schema: SchemaRef,
    /// Messages are Debezium change events.
    pub debezium: bool,
    /// Event-time column.
    pub ts_column: usize,
    /// Metadata columns.
    pub metadata: MetadataColumns,
    /// Fail, rather than read on, when the broker deleted records before they were read.
    pub fail_on_deleted: bool,
}

/// Connects, resolves start (and end) offsets, and opens the readers of `worker`'s partitions.
/// Blocks for the brokers, up to `connect_timeout`: call it while building the dataflow.
pub fn open_partitions(
    config: &KafkaSourceConfig,
    worker: usize,
    peers: usize,
) -> Result<Partitions, KafkaError> {
    let conn = &config.connection;
    let consumer = consumer(conn, &config.group)?;
    let all = partitions_of(consumer.client(), conn, &config.topic)?;
    let mine: Vec<i32> = all
        .iter()
        .copied()
        .filter(|p| *p as usize % peers == worker)
        .collect();
    let mut starts = start_offsets(config, &consumer, &mine)?;
    for (p, offset) in &config.resume {
        if let Some(start) = starts.get_mut(p) {
            *start = Offset::Offset(*offset);
        }
    }
    let ends = match &config.until {
        None => BTreeMap::new(),
        Some(end) => end_offsets(config, &consumer, &mine, end)?,
    };
    let mut tpl = TopicPartitionList::new();
    for &p in &mine {
        tpl.add_partition_offset(&config.topic, p, starts[&p])
            .map_err(|e| super::client::client_error(conn, e))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| super::client::client_error(conn, e))?;
    let strays = Arc::new(Strays::default());
    let mut readers: Vec<Box<dyn PartitionReader>> = Vec::new();
    for &p in &mine {
        let start = match starts[&p] {
            Offset::Offset(o) => Some(o),
            _ => None,
        };
        readers.push(Box::new(KafkaReader::new(
            config,
            consumer.clone(),
            strays.clone(),
            p,
            start,
            ends.get(&p).copied(),
        )?));
    }
    tracing::info!(
        "source `{}`: worker {worker} reads {} of {} partition(s) of `{}` from offsets {:?}",
        config.name,
        mine.len(),
        all.len(),
        config.topic,
        mine.iter()
            .map(|p| (*p, starts[p].to_raw().unwrap_or(-1)))
            .collect::<Vec<_>>()
    );
    let discovery: Option<Box<dyn PartitionDiscovery>> =
        match (config.until.is_none(), config.discovery) {
            (true, Some(every)) => Some(Box::new(Discovery::start(
                config.clone(),
                consumer,
                strays,
                all,
                worker,
                peers,
                every,
            ))),
            _ => None,
        };
    Ok(Partitions { readers, discovery })
}

fn start_offsets(
    config: &KafkaSourceConfig,
    consumer: &Consumer_,
    mine: &[i32],
) -> Result<BTreeMap<i32, Offset>, KafkaError> {
    let conn = &config.connection;
    let topic = &config.topic;
    let mut out = BTreeMap::new();
    // Logical starts are resolved now: every position is a concrete offset from the start,
    // and "latest" is one point every worker and every reader agrees on.
    let watermarks = |p: i32| {
        with_retries(conn, &format!("reading the offsets of {topic}[{p}]"), |t| {
            consumer
                .fetch_watermarks(topic, p, t)
                .map_err(|e| e.to_string())
        })
    };
    match &config.start {
        StartMode::Earliest => {
            for &p in mine {
                out.insert(p, Offset::Offset(watermarks(p)?.0));
            }
        }
        StartMode::Latest => {
            for &p in mine {
                out.insert(p, Offset::Offset(watermarks(p)?.1));
            }
        }
        StartMode::Group => {
            let mut tpl = TopicPartitionList::new();
            for &p in mine {
                tpl.add_partition(topic, p);
            }
            let committed = with_retries(
                conn,
                &format!("reading the offsets of group `{}`", config.group),
                |t| {
                    consumer
                        .committed_offsets(tpl.clone(), t)
                        .map_err(|e| e.to_string())
                },
            )?;
            for &p in mine {
                let offset = committed.find_partition(topic, p).map(|e| e.offset());
                let offset = match offset {
                    Some(Offset::Offset(o)) => o,
                    _ => watermarks(p)?.0,
                };
                out.insert(p, Offset::Offset(offset));
            }
        }
        StartMode::Timestamp(ms) => {
            for (p, offset) in offsets_for_time(config, consumer, mine, *ms)? {
                out.insert(p, offset);
            }
        }
        StartMode::Offsets(map) => {
            for &p in mine {
                let offset = match map.get(&p) {
                    Some(o) => *o,
                    None => watermarks(p)?.0,
                };
                out.insert(p, Offset::Offset(offset));
            }
        }
    }
    Ok(out)
}

/// For each partition, the first offset at or after `ms` (the end when there is none).
fn offsets_for_time(
    config: &KafkaSourceConfig,
    consumer: &Consumer_,
    mine: &[i32],
    ms: i64,
) -> Result<Vec<(i32, Offset)>, KafkaError> {
    let topic = &config.topic;
    let mut tpl = TopicPartitionList::new();
    for &p in mine {
        tpl.add_partition_offset(topic, p, Offset::Offset(ms))
            .map_err(|e| super::client::client_error(&config.connection, e))?;
    }
    let found = with_retries(
        &config.connection,
        &format!("finding the offsets of {topic} at {ms} ms"),
        |t| {
            consumer
                .offsets_for_times(tpl.clone(), t)
                .map_err(|e| e.to_string())
        },
    )?;
    let mut out = Vec::new();
    for &p in mine {
        let offset = found.find_partition(topic, p).map(|e| e.offset());
        let offset = match offset {
            Some(Offset::Offset(o)) => Offset::Offset(o),
            // No message at or after the time: the end, as of now.
            _ => {
                let (_, high) = with_retries(
                    &config.connection,
                    &format!("reading the end of {topic}[{p}]"),
                    |t| {
                        consumer
                            .fetch_watermarks(topic, p, t)
                            .map_err(|e| e.to_string())
                    },
                )?;
                Offset::Offset(high)
            }
        };
        out.push((p, offset));
    }
    Ok(out)
}

fn end_offsets(
    config: &KafkaSourceConfig,
    consumer: &Consumer_,
    mine: &[i32],
    end: &EndMode,
) -> Result<BTreeMap<i32, i64>, KafkaError> {
    let topic = &config.topic;
    let mut out = BTreeMap::new();
    match end {
        EndMode::Latest => {
            for &p in mine {
                let (_, high) = with_retries(
                    &config.connection,
                    &format!("reading the end of {topic}[{p}]"),
                    |t| {
                        consumer
                            .fetch_watermarks(topic, p, t)
                            .map_err(|e| e.to_string())
                    },
                )?;
                out.insert(p, high);
            }
        }
        EndMode::Timestamp(ms) => {
            for (p, offset) in offsets_for_time(config, consumer, mine, *ms)? {
                if let Offset::Offset(o) = offset {
                    out.insert(p, o);
                }
            }
        }
    }
    Ok(out)
}

/// How long a seek to a checkpointed offset may take.
const SEEK_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a reader mirrors its position to the consumer group.
const COMMIT_EVERY: Duration = Duration::from_secs(1);

/// How long a reader whose queue is empty waits before looking again. Arrivals do not wait
/// for it: the queue's callback wakes the source and marks the partition; this is the fallback.
const EMPTY_QUEUE_PAUSE: Duration = Duration::from_millis(2);
/// A partition's first and next offsets as the broker reports them, or why they are missing.
type PartitionOffsets = Result<(i64, i64), String>;

/// How long a reader waiting for its partition's offsets from the broker sleeps at most
/// between looks (it is woken when they are in).
const OFFSETS_PAUSE: Duration = Duration::from_millis(20);

/// Reads one partition.
struct KafkaReader {
    consumer: Arc<Consumer_>,
    queue: rdkafka::consumer::base_consumer::PartitionQueue<super::client::SourceContext>,
    topic: String,
    partition: i32,
    location: String,
    cursor: Cursor,
    /// Position at the close of each epoch not yet done downstream.
    closed: VecDeque<(Epoch, i64)>,
    /// Latest position whose epoch is done downstream, and when it was last committed.
    done: Option<i64>,
    committed: Option<(i64, Instant)>,
    warned: Option<Instant>,
    strays: Arc<Strays>,
    /// The main queue's out-of-range reports this reader has checked its position for.
    resets_seen: u64,
    /// What the partition's queue calls when messages arrive (kept to set it again on a new
    /// queue).
    waker: Option<Waker>,
    /// Records deleted by the broker before this reader got to them, not yet counted.
    lost: u64,
    /// Such a loss is an error that ends the job.
    fail_on_deleted: bool,
    /// The partition's offsets being read from the broker off this thread, after an
    /// out-of-range report: `true` when the report named this partition.
    pending: Option<(Receiver<PartitionOffsets>, bool)>,
}

/// Where a partition reader is, and how it turns messages into rows.
struct Cursor {
    partition: i32,
    decoder: JsonDecoder,
    ts_column: usize,
    metadata: MetadataColumns,
    /// Stop before this offset (bounded sources).
    end: Option<i64>,
    /// The next offset to read.
    position: Option<i64>,
}

impl Cursor {
    /// At the partition's end. A bounded reader is then past its own end (taken at start; the
    /// end only grows), even when its last offsets are a gap that no message fills
    /// (compaction, transaction markers).
    fn at_eof(&mut self) -> Option<ReadStatus> {
        let end = self.end?;
        self.position = Some(self.position.map_or(end, |p| p.max(end)));
        Some(ReadStatus::Done)
    }

    /// Decodes one message into `out`; `Some(Done)` once the bounded end is reached.
    fn handle<M: Message>(&mut self, message: &M, out: &mut Emitter<'_>) -> Option<ReadStatus> {
        let offset = message.offset();
        if self.end.is_some_and(|end| offset >= end) {
            self.position = Some(offset);
            return Some(ReadStatus::Done);
        }
        if self.position.is_some_and(|p| offset < p) {
            // Already read (a stray seen twice cannot happen, but a duplicate must not count).
            return None;
        }
        self.position = Some(offset + 1);
        let payload = message.payload().unwrap_or(b"");
        let key = message.key();
        let timestamp = message.timestamp().to_millis();
        let meta = self.metadata;
        let partition = self.partition;
        let decoded = self.decoder.decode_with(payload, |b| {
            if let Some(c) = meta.key {
                match key {
                    Some(k) => b.set_str(c, &String::from_utf8_lossy(k)),
                    None => b.set_null(c),
                }
            }
            if let Some(c) = meta.partition {
                b.set_int(c, partition as i64);
            }
            if let Some(c) = meta.offset {
                b.set_int(c, offset);
            }
            if let Some(c) = meta.timestamp {
                match timestamp {
                    Some(ms) => b.set_ts(c, ms),
                    None => b.set_null(c),
                }
            }
        });
        let name = &self.decoder.schema().field(self.ts_column).name;
        out.decoded(decoded, self.ts_column, name, offset, payload);
        self.end
            .is_some_and(|end| offset + 1 >= end)
            .then_some(ReadStatus::Done)
    }
}

/// Messages and end-of-partition events that arrived on a consumer's main queue, by partition.
#[derive(Default)]
pub(super) struct Strays {
    messages: Mutex<BTreeMap<i32, Vec<OwnedMessage>>>,
    eof: Mutex<BTreeSet<i32>>,
    /// Counts out-of-range reports that reached the main queue, where they name no partition:
    /// every reader then checks its own position.
    resets: std::sync::atomic::AtomicU64,
}

impl Strays {
    fn reset(&self) {
        self.resets
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn resets(&self) -> u64 {
        self.resets.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn add(&self, partition: i32, message: OwnedMessage) {
        self.messages
            .lock()
            .expect("lock")
            .entry(partition)
            .or_default()
            .push(message);
    }

    fn eof(&self, partition: i32) {
        self.eof.lock().expect("lock").insert(partition);
    }

    /// Takes what is kept for `partition`, in arrival order.
    fn take(&self, partition: i32) -> (Vec<OwnedMessage>, bool) {
        let messages = self
            .messages
            .lock()
            .expect("lock")
            .remove(&partition)
            .unwrap_or_default();
        (messages, self.eof.lock().expect("lock").remove(&partition))
    }
}

impl KafkaReader {
    fn new(
        config: &KafkaSourceConfig,
        consumer: Arc<Consumer_>,
        strays: Arc<Strays>,
        partition: i32,
        start: Option<i64>,
        end: Option<i64>,
    ) -> Result<Self, KafkaError> {
        let Some(queue) = consumer.split_partition_queue(&config.topic, partition) else {
            return Err(KafkaError::Topic {
                topic: config.topic.clone(),
                brokers: config.connection.brokers.clone(),
                message: format!("cannot open a queue for partition {partition}"),
            });
        };
        Ok(KafkaReader {
            consumer,
            queue,
            topic: config.topic.clone(),
            partition,
            location: format!("{}[{partition}]", config.topic),
            cursor: Cursor {
                partition,
                decoder: if config.debezium {
                    JsonDecoder::new(config.schema.clone()).debezium()
                } else {
                    JsonDecoder::new(config.schema.clone())
                },
                ts_column: config.ts_column,
                metadata: config.metadata,
                end,
                position: start,
            },
            closed: VecDeque::new(),
            done: None,
            committed: None,
            warned: None,
            resets_seen: 0,
            waker: None,
            lost: 0,
            fail_on_deleted: config.fail_on_deleted,
            pending: None,
            strays,
        })
    }

    /// Mirrors the done position to the group: asynchronously and at most every second while
    /// running, synchronously at the end.
    fn commit(&mut self, mode: CommitMode) {
        let Some(position) = self.done else { return };
        let asynchronous = matches!(mode, CommitMode::Async);
        if self
            .committed
            .is_some_and(|(c, at)| c == position || (asynchronous && at.elapsed() < COMMIT_EVERY))
        {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition_offset(&self.topic, self.partition, Offset::Offset(position))
            .is_ok()
        {
            // The group only mirrors progress for lag monitoring; failures are not fatal.
            if let Err(e) = self.consumer.commit(&tpl, mode) {
                tracing::debug!(
                    "{}: committing offset {position} to the group: {e}",
                    self.location
                );
            }
            self.committed = Some((position, Instant::now()));
        }
    }

    /// Drains the consumer's main queue: errors are logged, and messages or end-of-partition
    /// events that arrived there (before a partition's queue was split off) are kept for the
    /// reader of their partition — never dropped.
    fn serve_main_queue(&mut self) {
        loop {
            match self.consumer.poll(Duration::ZERO) {
                None => return,
                Some(Ok(m)) => self.strays.add(m.partition(), m.detach()),
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => self.strays.eof(p),
                Some(Err(rdkafka::error::KafkaError::MessageConsumption(
                    rdkafka::types::RDKafkaErrorCode::AutoOffsetReset,
                ))) => self.strays.reset(),
                Some(Err(e)) => self.warn(e),
            }
        }
    }

    /// Asks the broker for the partition's first and next offsets on a thread of its own (the
    /// source's worker does not wait on the network); the reader is woken when they are in.
    /// `named`: the out-of-range report was this partition's (else it came without one, and
    /// the offsets tell whether this reader's position is still on the broker).
    fn request_offsets(&mut self, named: bool) {
        let (tx, rx) = mpsc::channel();
        let consumer = self.consumer.clone();
        let (topic, partition) = (self.topic.clone(), self.partition);
        let location = self.location.clone();
        let waker = self.waker.clone();
        std::thread::spawn(move || {
            let offsets = consumer
                .fetch_watermarks(&topic, partition, SEEK_TIMEOUT)
                .map_err(|e| format!("{location}: cannot read the partition's offsets: {e}"));
            let _ = tx.send(offsets);
            if let Some(wake) = waker {
                wake();
            }
        });
        self.pending = Some((rx, named));
    }

    /// Acts on the offsets [`Self::request_offsets`] asked for, once they are in: `false`
    /// while they are not.
    fn offsets_arrived(&mut self) -> Result<bool, String> {
        let Some((rx, named)) = &self.pending else {
            return Ok(true);
        };
        let named = *named;
        let (low, high) = match rx.try_recv() {
            Ok(offsets) => offsets?,
            Err(mpsc::TryRecvError::Empty) => return Ok(false),
            Err(mpsc::TryRecvError::Disconnected) => {
                return Err(format!(
                    "{}: reading the partition's offsets failed",
                    self.location
                ))
            }
        };
        self.pending = None;
        match self.cursor.position {
            Some(at) if at < low || at > high => self.offset_out_of_range(low, high)?,
            None if named => self.offset_out_of_range(low, high)?,
            // Reported for this partition, yet its offset is on the broker (it moved between
            // the report and the look): librdkafka stopped fetching it all the same.
            Some(at) if named => {
                tracing::warn!(
                    "{}: the broker reported offset {at} out of range, but holds offsets \
                     {low}..{high}; reading on at {at}",
                    self.location
                );
                self.resume_at(at)?;
            }
            _ => {}
        }
        Ok(true)
    }

    /// The broker no longer holds the offset this reader is at: retention or DeleteRecords
    /// removed it before the job read it (a restore from an old checkpoint, a job stopped for
    /// longer than the topic's retention), or the topic was recreated. Those records are gone;
    /// the reader says so — which offsets, how many records — and goes on at the partition's
    /// earliest offset `low` (`high`: its end). (The consumers run with `auto.offset.reset:
    /// error`, so librdkafka reports this instead of jumping silently.)
    fn offset_out_of_range(&mut self, low: i64, high: i64) -> Result<(), String> {
        match self.cursor.position {
            Some(at) if at < low => {
                let what = format!(
                    "{}: offset {at} is no longer on the broker (it holds offsets {low}..{high}): \
                     {} record(s) were deleted (retention or DeleteRecords) before this job read \
                     them",
                    self.location,
                    low - at
                );
                if self.fail_on_deleted {
                    return Err(format!("{what}; the source has `on_deleted_records: fail`"));
                }
                self.lost += (low - at) as u64;
                tracing::error!("{what}; continuing at offset {low}");
            }
            Some(at) => tracing::error!(
                "{}: offset {at} is past the partition's end ({high}): the topic was recreated \
                 or truncated; continuing at its earliest offset {low}",
                self.location
            ),
            None => tracing::warn!(
                "{}: the broker reset the read position; continuing at offset {low}",
                self.location
            ),
        }
        self.resume_at(low)
    }

    /// Reads on at `offset` after librdkafka stopped fetching the partition on an out-of-range
    /// report (a seek is refused in that state): the partition is assigned afresh there and its
    /// queue split off again (what arrives on the main queue meanwhile is kept for this
    /// reader, as at the start).
    fn resume_at(&mut self, offset: i64) -> Result<(), String> {
        let restart = || -> rdkafka::error::KafkaResult<()> {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&self.topic, self.partition);
            self.consumer.incremental_unassign(&tpl)?;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&self.topic, self.partition, Offset::Offset(offset))?;
            self.consumer.incremental_assign(&tpl)
        };
        restart().map_err(|e| {
            format!(
                "{}: cannot resume reading at offset {offset}: {e}",
                self.location
            )
        })?;
        self.queue = self
            .consumer
            .split_partition_queue(&self.topic, self.partition)
            .ok_or_else(|| format!("{}: cannot open a queue for the partition", self.location))?;
        if let Some(waker) = self.waker.clone() {
            self.set_waker(waker);
        }
        self.cursor.position = Some(offset);
        Ok(())
    }

    /// Logs a client-side problem at most every few seconds.
    fn warn(&mut self, message: impl std::fmt::Display) {
        if self
            .warned
            .is_none_or(|t| t.elapsed() > Duration::from_secs(5))
        {
            tracing::warn!("{}: {message}; librdkafka keeps retrying", self.location);
            self.warned = Some(Instant::now());
        }
    }
}

impl PartitionReader for KafkaReader {
    fn location(&self) -> &str {
        &self.location
    }

    fn set_waker(&mut self, waker: Waker) {
        let wake = waker.clone();
        self.queue.set_nonempty_callback(move || wake());
        self.waker = Some(waker);
    }

    fn read(&mut self, max: usize, out: &mut Emitter<'_>) -> Result<ReadStatus, String> {
        self.serve_main_queue();
        let resets = self.strays.resets();
        if resets != self.resets_seen {
            self.resets_seen = resets;
            self.request_offsets(false);
        }
        if !self.offsets_arrived()? {
            return Ok(ReadStatus::Waiting(OFFSETS_PAUSE));
        }
        if self
            .cursor
            .end
            .is_some_and(|end| self.cursor.position.is_some_and(|p| p >= end))
        {
            return Ok(ReadStatus::Done);
        }
        // What reached the main queue before this partition's queue was split comes first.
        let (strays, eof) = self.strays.take(self.cursor.partition);
        for message in &strays {
            if let Some(status) = self.cursor.handle(message, out) {
                return Ok(status);
            }
        }
        if eof {
            if let Some(status) = self.cursor.at_eof() {
                return Ok(status);
            }
        }
        for _ in 0..max {
            let message = match self.queue.poll(Duration::ZERO) {
                // An empty queue is polled again soon: a live partition refills it within
                // milliseconds, and a poll costs a microsecond.
                None => return Ok(ReadStatus::Waiting(EMPTY_QUEUE_PAUSE)),
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => {
                    return Ok(self
                        .cursor
                        .at_eof()
                        .unwrap_or(ReadStatus::Waiting(EMPTY_QUEUE_PAUSE)));
                }
                Some(Err(rdkafka::error::KafkaError::MessageConsumption(
                    rdkafka::types::RDKafkaErrorCode::AutoOffsetReset,
                ))) => {
                    self.request_offsets(true);
                    return Ok(ReadStatus::Waiting(OFFSETS_PAUSE));
                }
                Some(Err(e)) => {
                    self.warn(e);
                    return Ok(ReadStatus::Waiting(Duration::from_millis(100)));
                }
                Some(Ok(m)) => m,
            };
            if let Some(status) = self.cursor.handle(&message, out) {
                return Ok(status);
            }
        }
        Ok(ReadStatus::More)
    }

    fn lag(&self) -> Option<(String, i32, i64)> {
        // The high watermark librdkafka last heard in a fetch response (no broker round trip).
        let high = self
            .consumer
            .context()
            .high_watermark(&self.topic, self.partition)?;
        let position = self.cursor.position?;
        (high >= 0).then(|| (self.topic.clone(), self.partition, (high - position).max(0)))
    }

    fn take_lost(&mut self) -> Option<(String, i32, u64)> {
        (self.lost > 0).then(|| {
            (
                self.topic.clone(),
                self.partition,
                std::mem::take(&mut self.lost),
            )
        })
    }

    fn position(&self) -> Option<Vec<u8>> {
        // The next offset to read; `-1` for a partition found later and read from its start.
        Some(self.cursor.position.unwrap_or(-1).to_le_bytes().to_vec())
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), String> {
        let bytes: [u8; 8] = position.try_into().map_err(|_| {
            format!(
                "{}: a Kafka position is 8 bytes, not {}",
                self.location,
                position.len()
            )
        })?;
        let offset = i64::from_le_bytes(bytes);
        if offset < 0 || self.cursor.position == Some(offset) {
            return Ok(());
        }
        // Messages fetched before the seek are discarded by librdkafka (op versions); the
        // cursor skips anything below the offset regardless.
        self.consumer
            .seek(
                &self.topic,
                self.partition,
                Offset::Offset(offset),
                SEEK_TIMEOUT,
            )
            .map_err(|e| format!("{}: cannot seek to offset {offset}: {e}", self.location))?;
        self.cursor.position = Some(offset);
        tracing::info!("{}: resuming at offset {offset}", self.location);
        Ok(())
    }

    fn epoch_closed(&mut self, epoch: Epoch) {
        if let Some(p) = self.cursor.position {
            self.closed.push_back((epoch, p));
        }
    }

    fn epoch_done(&mut self, epoch: Epoch) {
        while self.closed.front().is_some_and(|(e, _)| *e <= epoch) {
            self.done = self.closed.pop_front().map(|(_, p)| p);
        }
        self.commit(CommitMode::Async);
    }
}

impl Drop for KafkaReader {
    fn drop(&mut self) {
        // Leave the group's offsets where the output is, for lag monitoring of the next run.
        self.commit(CommitMode::Sync);
    }
}

/// Finds partitions added while the source runs: metadata is fetched on a thread of its own.
struct Discovery {
    config: KafkaSourceConfig,
    consumer: Arc<Consumer_>,
    strays: Arc<Strays>,
    found: Receiver<i32>,
    stop: Arc<AtomicBool>,
}

impl Discovery {
    fn start(
        config: KafkaSourceConfig,
        consumer: Arc<Consumer_>,
        strays: Arc<Strays>,
        known: Vec<i32>,
        worker: usize,
        peers: usize,
        every: Duration,
    ) -> Self {
        let (tx, found) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let (watch, stopping, topic) = (consumer.clone(), stop.clone(), config.topic.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("weir-kafka-discovery-{}", config.name))
            .spawn(move || {
                let mut known: std::collections::BTreeSet<i32> = known.into_iter().collect();
                while !stopping.load(Ordering::Relaxed) {
                    let deadline = Instant::now() + every;
                    while Instant::now() < deadline && !stopping.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(100).min(every));
                    }
                    let Ok(metadata) = watch.fetch_metadata(Some(&topic), Duration::from_secs(5))
                    else {
                        continue;
                    };
                    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
                        for p in t.partitions() {
                            if known.insert(p.id())
                                && p.id() as usize % peers == worker
                                && tx.send(p.id()).is_err()
                            {
                                return;
                            }
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(
                "source `{}`: cannot start partition discovery: {e}",
                config.name
            );
        }
        Discovery {
            config,
            consumer,
            strays,
            found,
            stop,
        }
    }
}

impl PartitionDiscovery for Discovery {
    fn poll(&mut self) -> Vec<Box<dyn PartitionReader>> {
        let mut readers: Vec<Box<dyn PartitionReader>> = Vec::new();
        while let Ok(p) = self.found.try_recv() {
            let mut tpl = TopicPartitionList::new();
            let added = tpl
                .add_partition_offset(&self.config.topic, p, Offset::Beginning)
                .and_then(|_| self.consumer.incremental_assign(&tpl));
            match added.map_err(|e| e.to_string()).and_then(|_| {
                KafkaReader::new(
                    &self.config,
                    self.consumer.clone(),
                    self.strays.clone(),
                    p,
                    None,
                    None,
                )
                .map_err(|e| e.to_string())
            }) {
                Ok(reader) => {
                    tracing::info!(
                        "source `{}`: new partition {}[{p}], reading it from the beginning",
                        self.config.name,
                        self.config.topic
                    );
                    readers.push(Box::new(reader));
                }
                Err(e) => tracing::warn!(
                    "source `{}`: cannot read new partition {}[{p}]: {e}",
                    self.config.name,
                    self.config.topic
                ),
            }
        }
        readers
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
