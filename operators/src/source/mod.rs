//! Sources: the operator that turns partition readers into timestamped streams.
//!
//! A source is a set of partitions (file splits, generator partitions, Kafka partitions),
//! spread over workers deterministically. On each worker the source operator:
//! - reads its partitions in bounded batches and yields, so downstream operators keep up;
//! - stamps each record with its partition's watermark (see [`Event::wm`]);
//! - advances its epoch on the computation's [`EpochClock`] (the same instants on every
//!   worker and process), and reports its local watermark
//!   (minimum over live, non-idle partitions) to the global watermark stream;
//! - turns unreadable input into dead letters (or skips it, or fails the job: `on_error`);
//! - stops reading while more than `max_inflight_epochs` epochs are unfinished downstream;
//! - when every partition has ended, reports the end-of-stream watermark and finishes.

pub mod file;
pub mod generator;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::Capability;
use timely::dataflow::{ProbeHandle, Scope, StreamVec};
use weir_engine::checkpoint::{names, CheckpointRun};
use weir_engine::clock::EpochClock;
use weir_engine::data::Row;
use weir_engine::event::{dead_letter_event, Epoch, Event, WATERMARK_END};
use weir_engine::failure::Failures;
use weir_engine::metrics::IntGauge;
use weir_engine::stats::JobStats;
use weir_engine::watermark::{GlobalWatermark, LocalWatermark, PartitionWatermark};

/// What to do with input that cannot be decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnError {
    /// Send it to `<source>.dead_letter` (and count it).
    #[default]
    DeadLetter,
    /// Count it and drop it.
    Skip,
    /// Stop the job with an error naming the input.
    Fail,
}

/// A reader's failure (I/O, unreachable system).
#[derive(Debug, thiserror::Error)]
#[error("source `{source_name}`, {location}: {message}")]
pub struct SourceError {
    /// Source name.
    pub source_name: String,
    /// File, partition...
    pub location: String,
    /// What failed.
    pub message: String,
}

/// How a partition stands after a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadStatus {
    /// More input is available now.
    More,
    /// Nothing now; ask again after this long.
    Waiting(Duration),
    /// The partition has ended.
    Done,
}

/// Collects what a reader read: records stamped with the partition watermark, and bad input.
pub struct Emitter<'a> {
    watermark: &'a mut PartitionWatermark,
    events: &'a mut Vec<Event>,
    bad: &'a mut Vec<BadInput>,
}

/// Input that could not be decoded.
#[derive(Debug)]
pub struct BadInput {
    /// Byte offset, message offset or event index.
    pub offset: i64,
    /// What was wrong.
    pub error: String,
    /// The raw input.
    pub raw: Vec<u8>,
    /// The partition watermark when it was read.
    pub wm: i64,
}

impl<'a> Emitter<'a> {
    /// An emitter stamping records with `watermark` into `events`, bad input into `bad`.
    pub fn new(
        watermark: &'a mut PartitionWatermark,
        events: &'a mut Vec<Event>,
        bad: &'a mut Vec<BadInput>,
    ) -> Self {
        Emitter {
            watermark,
            events,
            bad,
        }
    }

    /// Emits a record with event time `ts`.
    #[inline]
    pub fn record(&mut self, ts: i64, row: Row) {
        let wm = self.watermark.current();
        self.watermark.observe(ts);
        self.events.push(Event::new(ts, wm, row));
    }

    /// Emits a decoded JSON record, or the input as bad when it did not decode or its event
    /// time (column `ts_column`, named `ts_name`) is outside the years weir accepts.
    #[inline]
    pub fn decoded(
        &mut self,
        decoded: Result<Row, String>,
        ts_column: usize,
        ts_name: &str,
        offset: i64,
        raw: &[u8],
    ) {
        match decoded {
            Ok(row) => {
                let ts = row
                    .get_i64(ts_column)
                    .expect("the event-time column is required");
                if weir_engine::event::EVENT_TIME_RANGE.contains(&ts) {
                    self.record(ts, row);
                } else {
                    let error =
                        format!("event time `{ts_name}` = {ts} ms is outside years 1 to 9999");
                    self.bad(offset, error, raw);
                }
            }
            Err(error) => self.bad(offset, error, raw),
        }
    }

    /// Emits input that could not be decoded.
    pub fn bad(&mut self, offset: i64, error: String, raw: &[u8]) {
        let wm = self.watermark.current();
        self.bad.push(BadInput {
            offset,
            error,
            raw: raw.to_vec(),
            wm,
        });
    }
}

/// Wakes the source operator from another thread (a client library's callback).
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// One partition of a source, read on one worker.
pub trait PartitionReader {
    /// Where this partition reads from (file and byte range, partition number).
    fn location(&self) -> &str;
    /// Reads up to about `max` records into `out`. Never blocks: with nothing to read it
    /// returns [`ReadStatus::Waiting`].
    fn read(&mut self, max: usize, out: &mut Emitter<'_>) -> Result<ReadStatus, String>;
    /// Gives the reader a way to wake the source when input arrives, instead of being polled.
    fn set_waker(&mut self, _waker: Waker) {}
    /// The source closed `epoch`: everything read so far belongs to it or earlier ones. Readers
    /// remember their position here.
    fn epoch_closed(&mut self, _epoch: Epoch) {}
    /// Every operator downstream has finished `epoch` and the sinks have made it durable.
    fn epoch_done(&mut self, _epoch: Epoch) {}
    /// Where the reader stands (the next record it will read), for checkpoints; `None` for a
    /// reader that cannot resume.
    fn position(&self) -> Option<Vec<u8>> {
        None
    }
    /// Resumes at a [`position`](Self::position) of an earlier run, before the first read.
    fn seek(&mut self, position: &[u8]) -> Result<(), String> {
        let _ = position;
        Err("this source cannot resume from a checkpoint".into())
    }
    /// How far behind the end of its partition the reader is, for a broker-backed source:
    /// `(topic, partition, records)`, as last heard from the broker.
    fn lag(&self) -> Option<(String, i32, i64)> {
        None
    }
    /// Records of a broker-backed partition deleted before they were read, since the last
    /// call: `(topic, partition, records)`.
    fn take_lost(&mut self) -> Option<(String, i32, u64)> {
        None
    }
}

/// Partitions that appear while a source runs (new Kafka partitions).
pub trait PartitionDiscovery {
    /// Readers for partitions found since the last call, that this worker reads. Never blocks.
    fn poll(&mut self) -> Vec<Box<dyn PartitionReader>>;
}

/// What one worker of a source reads.
#[derive(Default)]
pub struct Partitions {
    /// Readers of the partitions known at start.
    pub readers: Vec<Box<dyn PartitionReader>>,
    /// Where later partitions come from; a source with discovery never ends on its own.
    pub discovery: Option<Box<dyn PartitionDiscovery>>,
}

impl Partitions {
    /// A fixed set of partitions.
    pub fn fixed(readers: Vec<Box<dyn PartitionReader>>) -> Self {
        Partitions {
            readers,
            discovery: None,
        }
    }
}

/// Source settings shared by every kind of source.
#[derive(Clone, Debug)]
pub struct SourceConfig {
    /// Source name (operator name, dead-letter `source` column).
    pub name: String,
    /// When epochs open and close (shared by every source of the computation).
    pub clock: EpochClock,
    /// Allowed disorder within a partition, ms.
    pub max_out_of_orderness: i64,
    /// A partition without input for this long stops holding the watermark back.
    pub idle_timeout: Option<Duration>,
    /// Bad input handling.
    pub on_error: OnError,
    /// Unfinished epochs downstream before the source pauses.
    pub max_inflight_epochs: u64,
    /// Durable checkpoints: positions written at checkpoint epochs, resumed on restore.
    pub checkpoints: Option<CheckpointRun>,
}

/// A partition's checkpointed position: its location, the reader's position and the highest
/// event time it had seen (its watermark).
type Position = (String, Vec<u8>, i64);

/// Every position of source `name` in the checkpoint `run` resumes from, by location (the
/// reader's position and the partition's highest event time).
pub fn restored_positions(
    run: &CheckpointRun,
    name: &str,
) -> Result<HashMap<String, (Vec<u8>, i64)>, String> {
    let mut all = HashMap::new();
    let Some(restore) = &run.restore else {
        return Ok(all);
    };
    for file in restore.files_under(&names::source_dir(name)) {
        let bytes = restore.read(&file)?.unwrap_or_default();
        let positions: Vec<Position> = bincode::deserialize(&bytes)
            .map_err(|e| format!("{file} of checkpoint {} is damaged: {e}", restore.epoch()))?;
        for (location, position, max_seen) in positions {
            all.insert(location, (position, max_seen));
        }
    }
    Ok(all)
}

/// Writes the positions of `partitions` as of the end of checkpoint epoch `epoch`.
fn write_positions(
    run: &CheckpointRun,
    name: &str,
    worker: usize,
    epoch: Epoch,
    partitions: &[Partition],
) -> Result<(), String> {
    let mut positions: Vec<Position> = Vec::with_capacity(partitions.len());
    for p in partitions {
        let position = p.reader.position().ok_or_else(|| {
            format!(
                "partition {} cannot report its position",
                p.reader.location()
            )
        })?;
        positions.push((
            p.reader.location().to_string(),
            position,
            p.watermark.max_seen(),
        ));
    }
    let bytes = bincode::serialize(&positions).expect("positions serialise");
    run.checkpoints
        .write(epoch, &names::source_file(name, worker), &bytes)
        .map_err(|e| e.to_string())?;
    run.checkpoints
        .done(epoch, &names::source(name), worker)
        .map_err(|e| e.to_string())
}

/// The streams of one source.
pub struct SourceStreams<'scope> {
    /// Decoded records.
    pub events: StreamVec<'scope, Epoch, Event>,
    /// `<source>.dead_letter`: input that could not be decoded.
    pub dead_letters: StreamVec<'scope, Epoch, Event>,
    /// The source's global watermark, identical on every worker.
    pub watermarks: StreamVec<'scope, Epoch, i64>,
}

struct Partition {
    reader: Box<dyn PartitionReader>,
    watermark: PartitionWatermark,
    done: bool,
    waiting_until: Option<Instant>,
    /// Set by the reader's client library when input arrived: a waiting partition is read
    /// at once instead of at `waiting_until`.
    woken: Arc<AtomicBool>,
    last_input: Instant,
    /// The partition's consumer-lag gauge, once it reports a lag.
    lag: Option<IntGauge>,
}

impl Partition {
    /// Until when the partition waits, as of `now`: `None` when it is to be read (its wait is
    /// over, or its client said input arrived).
    fn waiting(&self, now: Instant) -> Option<Instant> {
        self.waiting_until
            .filter(|&t| t > now && !self.woken.load(Ordering::Acquire))
    }
}

/// Records read per activation before yielding to the rest of the dataflow.
const BATCH: usize = 4096;
/// Time spent reading per activation before yielding.
const SLICE: Duration = Duration::from_millis(2);

/// Builds the source operator over this worker's `readers`.
///
/// `progress`, when given, is probed for backpressure: the operator pauses while the probe is
/// more than `max_inflight_epochs` behind its epoch.
pub fn source<'scope>(
    scope: Scope<'scope, Epoch>,
    config: SourceConfig,
    partitions: Partitions,
    progress: Option<ProbeHandle<Epoch>>,
    stats: Arc<JobStats>,
    failures: Failures,
) -> SourceStreams<'scope> {
    let worker = scope.index() as u32;
    let operator_stats = stats.source(&format!("source.{}", config.name), worker as usize);
    let metrics_stats = stats.clone();
    let stats = operator_stats;
    let mut builder = OperatorBuilder::new(format!("source.{}", config.name), scope);
    let info = builder.operator_info();
    let activator = scope.activator_for(info.address.clone());
    let (events_out, events) = builder.new_output();
    let (dead_out, dead_letters) = builder.new_output();
    let (wm_out, local_watermarks) = builder.new_output();
    let mut events_out: OutputBuilder<_, CapacityContainerBuilder<Vec<Event>>> =
        OutputBuilder::from(events_out);
    let mut dead_out: OutputBuilder<_, CapacityContainerBuilder<Vec<Event>>> =
        OutputBuilder::from(dead_out);
    let mut wm_out: OutputBuilder<_, CapacityContainerBuilder<Vec<LocalWatermark>>> =
        OutputBuilder::from(wm_out);

    let watermark_name = format!("watermark.{}", config.name);
    let sync = scope.worker().sync_activator_for(info.address.to_vec());
    let waker: Waker = Arc::new(move || {
        // The dataflow may be gone when a client library calls back late: nothing to wake.
        let _ = sync.activate();
    });
    let start = Instant::now();
    let ooo = config.max_out_of_orderness;
    let new_partition = move |mut reader: Box<dyn PartitionReader>, waker: &Waker| {
        let woken = Arc::new(AtomicBool::new(false));
        let (flag, wake) = (woken.clone(), waker.clone());
        reader.set_waker(Arc::new(move || {
            flag.store(true, Ordering::Release);
            wake();
        }));
        Partition {
            reader,
            watermark: PartitionWatermark::new(ooo),
            done: false,
            waiting_until: None,
            woken,
            last_input: start,
            lag: None,
        }
    };
    let Partitions {
        readers,
        mut discovery,
    } = partitions;
    let mut partitions: Vec<Partition> = readers
        .into_iter()
        .map(|r| new_partition(r, &waker))
        .collect();
    // Resume where the restored checkpoint left each partition.
    let restored = match &config.checkpoints {
        Some(c) => restored_positions(c, &config.name).unwrap_or_else(|e| {
            failures.report(format!("source `{}` cannot restore: {e}", config.name));
            HashMap::new()
        }),
        None => HashMap::new(),
    };
    let resume = move |p: &mut Partition, failures: &Failures, name: &str| {
        if let Some((position, max_seen)) = restored.get(p.reader.location()) {
            if let Err(e) = p.reader.seek(position) {
                failures.report(format!(
                    "source `{name}`, {}: cannot resume from the checkpoint: {e}",
                    p.reader.location()
                ));
            }
            p.watermark.resume(*max_seen);
        }
    };
    for p in partitions.iter_mut() {
        resume(p, &failures, &config.name);
    }
    let first_epoch = config.checkpoints.as_ref().map_or(0, |c| c.first_epoch);
    let clock = config.clock;

    builder.build_reschedule(move |mut initial| {
        let mut epoch: Epoch = clock.epoch_now(first_epoch);
        for cap in initial.iter_mut() {
            cap.downgrade(&epoch);
        }
        let mut caps: Option<Vec<Capability<Epoch>>> = Some(initial);
        // The last checkpoint epoch this source closed.
        let mut in_flight: Option<Epoch> = None;
        // A source that starts after some of the run's checkpoint epochs (its worker built
        // the dataflow late: a slow restore, a slow broker) read nothing in them: it takes
        // part in them with the positions it starts from, or they could never complete.
        if let Some(c) = &config.checkpoints {
            let mut at = first_epoch;
            while let Some(skipped) = c.next_at_or_after(at).filter(|e| *e < epoch) {
                if let Err(e) = write_positions(c, &config.name, worker as usize, skipped, &partitions) {
                    tracing::warn!("source `{}`: checkpoint {skipped}, before it started: {e}", config.name);
                }
                in_flight = Some(skipped);
                at = skipped + 1;
            }
        }
        let metrics = metrics_stats;
        metrics.metrics().epoch_opened(epoch);
        let mut reported = i64::MIN;
        let mut events_buf: Vec<Event> = Vec::with_capacity(BATCH);
        let mut bad_buf: Vec<BadInput> = Vec::new();
        let mut next = 0usize;
        // Closed epochs whose completion downstream the readers have not heard of yet.
        let mut closed: VecDeque<Epoch> = VecDeque::new();
        // Checkpoint epochs done downstream, waiting for their checkpoint to complete.
        let mut awaiting: VecDeque<Epoch> = VecDeque::new();
        // A stop with savepoint was asked for: no more reading, epochs go on.
        let mut stopped = false;

        move |_frontiers| {
            // Tell readers which epochs the sinks have finished, for committing positions to
            // the consumer group. With checkpoints, only positions of complete checkpoints
            // (and the very end of the input): a restore never goes back behind the group.
            if let Some(probe) = &progress {
                while let Some(&e) = closed.front() {
                    if probe.less_equal(&e) {
                        break;
                    }
                    closed.pop_front();
                    match &config.checkpoints {
                        Some(c) if c.is_checkpoint(e) => awaiting.push_back(e),
                        Some(_) if caps.is_some() || !closed.is_empty() => {}
                        _ => partitions.iter_mut().for_each(|p| p.reader.epoch_done(e)),
                    }
                }
                if let Some(c) = &config.checkpoints {
                    while let Some(&e) = awaiting.front() {
                        if !c.is_complete(e) {
                            break;
                        }
                        awaiting.pop_front();
                        partitions.iter_mut().for_each(|p| p.reader.epoch_done(e));
                    }
                }
            } else {
                closed.clear();
            }
            let Some(held) = caps.as_mut() else {
                // Finished reading: stay until downstream has finished every closed epoch.
                if !closed.is_empty() {
                    activator.activate_after(Duration::from_millis(10));
                }
                return !closed.is_empty();
            };
            if let Some(d) = discovery.as_mut() {
                for reader in d.poll() {
                    let mut p = new_partition(reader, &waker);
                    resume(&mut p, &failures, &config.name);
                    partitions.push(p);
                }
            }
            if !stopped && weir_engine::stop::requested() {
                if let Some(c) = &config.checkpoints {
                    // Stop reading, without ending the input (no end-of-stream watermark: no
                    // window is flushed); the savepoint after every source's stop ends the run.
                    stopped = true;
                    tracing::info!("source `{}` stopped reading in epoch {epoch} (stop with savepoint)", config.name);
                    if let Err(e) = c.stopped(&names::source(&config.name), worker as usize, epoch) {
                        failures.report(format!("source `{}`: cannot record its stop: {e}", config.name));
                    }
                }
            }
            let now = Instant::now();
            let behind = progress.as_ref().is_some_and(|p| {
                p.less_than(&epoch.saturating_sub(config.max_inflight_epochs))
            });
            let mut failed = false;
            if !behind && !partitions.is_empty() && !stopped {
                let mut read = 0usize;
                let mut visited = 0;
                while read < BATCH && visited < partitions.len() && now.elapsed() < SLICE {
                    let index = next % partitions.len();
                    next += 1;
                    visited += 1;
                    let p = &mut partitions[index];
                    if p.done || p.waiting(now).is_some() {
                        continue;
                    }
                    // Cleared before reading: input that arrives during the read wakes it again.
                    p.woken.store(false, Ordering::Release);
                    let mut emitter = Emitter {
                        watermark: &mut p.watermark,
                        events: &mut events_buf,
                        bad: &mut bad_buf,
                    };
                    let status = p.reader.read(BATCH - read, &mut emitter);
                    let got = events_buf.len() + bad_buf.len();
                    if got > 0 {
                        p.last_input = now;
                        visited = 0;
                    }
                    read += got;
                    match status {
                        Ok(ReadStatus::More) => p.waiting_until = None,
                        Ok(ReadStatus::Waiting(d)) => p.waiting_until = Some(now + d),
                        Ok(ReadStatus::Done) => p.done = true,
                        Err(message) => {
                            failures.report(
                                SourceError {
                                    source_name: config.name.clone(),
                                    location: p.reader.location().to_string(),
                                    message,
                                }
                                .to_string(),
                            );
                            failed = true;
                        }
                    }
                    stats.add_in(got as u64);
                    if !events_buf.is_empty() {
                        stats.read(events_buf.iter().map(|e| e.ts));
                        events_out.activate().session(&held[0]).give_iterator(events_buf.drain(..));
                    }
                    if !bad_buf.is_empty() {
                        let location = p.reader.location().to_string();
                        match config.on_error {
                            OnError::DeadLetter => {
                                stats.add_dead_letters(bad_buf.len() as u64);
                                let mut out = dead_out.activate();
                                let mut session = out.session(&held[1]);
                                for bad in bad_buf.drain(..) {
                                    session.give(dead_letter_event(&config.name, &location, bad.offset, &bad.error, &bad.raw, bad.wm));
                                }
                            }
                            OnError::Skip => {
                                stats.add_dead_letters(bad_buf.len() as u64);
                                bad_buf.clear();
                            }
                            OnError::Fail => {
                                let bad = &bad_buf[0];
                                failures.report(format!(
                                    "source `{}`, {location} at offset {}: {} (on_error: fail); input: {}",
                                    config.name,
                                    bad.offset,
                                    bad.error,
                                    String::from_utf8_lossy(&bad.raw[..bad.raw.len().min(200)])
                                ));
                                bad_buf.clear();
                                failed = true;
                            }
                        }
                    }
                    if failed {
                        break;
                    }
                }
            }
            if failed {
                // Stop without the end-of-stream watermark: windows are not flushed.
                caps = None;
                return false;
            }

            // The local watermark: minimum over live partitions that are not idle.
            let live: Vec<&Partition> = partitions.iter().filter(|p| !p.done).collect();
            let active: Vec<&&Partition> = live
                .iter()
                .filter(|p| config.idle_timeout.is_none_or(|t| now.duration_since(p.last_input) < t))
                .collect();
            let ended = live.is_empty() && discovery.is_none();
            let (local, idle) = if ended {
                (WATERMARK_END, false)
            } else if active.is_empty() {
                (reported, true)
            } else {
                (active.iter().map(|p| p.watermark.current()).min().unwrap_or(WATERMARK_END), false)
            };
            reported = reported.max(local);
            let report = LocalWatermark { worker, watermark: reported, idle };
            if ended {
                // The last report, at the open epoch (no other report is made at it).
                if !stopped {
                    wm_out.activate().session(&held[2]).give(report);
                }
                if let Some(c) = &config.checkpoints {
                    // Where the input ended goes into the run's final checkpoint; scheduled
                    // checkpoints after this are not taken.
                    let f = c.final_checkpoint();
                    if let Err(e) = write_positions(c, &config.name, worker as usize, f, &partitions) {
                        tracing::error!("source `{}`: the final checkpoint failed: {e}", config.name);
                    }
                }
                partitions.iter_mut().for_each(|p| p.reader.epoch_closed(epoch));
                closed.push_back(epoch);
                caps = None;
                activator.activate();
                return true;
            }
            // Close every epoch the clock has passed (several when the worker was busy or
            // the source started late), each with its checkpoint positions when it is one.
            // At most one checkpoint is in flight: while downstream has not finished the
            // previous one, the source stays in the next checkpoint epoch (and reads on into
            // it) instead of closing it — a run that fell behind would otherwise close a burst
            // of checkpoint epochs at once and snapshot the same state for each.
            let open = clock.epoch_now(first_epoch);
            let from = epoch;
            while epoch < open {
                if let Some(c) = config.checkpoints.as_ref().filter(|c| c.is_checkpoint(epoch)) {
                    let busy = in_flight.is_some_and(|prev| progress.as_ref().is_some_and(|p| p.less_equal(&prev)));
                    if busy {
                        break;
                    }
                    // Positions as of the end of the checkpoint epoch, before the capability
                    // moves past it.
                    if let Err(e) = write_positions(c, &config.name, worker as usize, epoch, &partitions) {
                        tracing::error!("source `{}`: checkpoint {epoch} failed: {e}", config.name);
                    }
                    in_flight = Some(epoch);
                }
                // One report per epoch, when it closes: the global watermark completes an epoch
                // as soon as every worker's report for it is in.
                if !stopped {
                    wm_out.activate().session(&held[2]).give(report);
                }
                closed.push_back(epoch);
                epoch += 1;
                held[2].downgrade(&epoch);
            }
            if epoch > from {
                for p in partitions.iter_mut() {
                    p.reader.epoch_closed(from);
                }
                metrics.metrics().epoch_opened(epoch);
                for p in partitions.iter_mut() {
                    if let Some((topic, partition, lag)) = p.reader.lag() {
                        p.lag
                            .get_or_insert_with(|| metrics.metrics().kafka_lag(&config.name, &topic, partition))
                            .set(lag);
                    }
                    if let Some((topic, partition, lost)) = p.reader.take_lost() {
                        metrics.metrics().kafka_lost(&config.name, &topic, partition).inc_by(lost);
                    }
                }
                for cap in held.iter_mut() {
                    cap.downgrade(&epoch);
                }
            }
            let until_tick = clock.until_next();
            let now = Instant::now();
            let mut ready = false;
            let mut wake: Option<Duration> = None;
            for p in partitions.iter().filter(|p| !p.done) {
                match p.waiting(now) {
                    Some(t) => wake = Some(wake.map_or(t - now, |w| w.min(t - now))),
                    None => ready = true,
                }
            }
            if ready && !behind && !stopped {
                activator.activate();
            } else {
                let pause = if behind { Duration::from_millis(1) } else { wake.unwrap_or(until_tick) };
                activator.activate_after(pause.min(until_tick).max(Duration::from_micros(100)));
            }
            true
        }
    });

    let watermarks = local_watermarks.global_watermark(&watermark_name);
    SourceStreams {
        events,
        dead_letters,
        watermarks,
    }
}
