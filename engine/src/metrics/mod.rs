//! The Prometheus metrics of one job process (DESIGN §5), served on `/metrics`.
//!
//! Every family carries the `job` label; per-operator families add `operator` and `worker`.
//! Operators take their handles once when they are built ([`Metrics::operator`],
//! [`Metrics::sink`], [`Metrics::kafka_lag`]) so the hot path is an atomic add, never a label
//! lookup. Latency histograms ([`latency`]) count a batch locally and add it once.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::core::Collector;
use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub use prometheus::IntGauge;

use crate::event::{Epoch, WATERMARK_END, WATERMARK_MIN};

pub mod latency;
use latency::{LatencyFamily, LatencySeries};

/// Checkpoint duration buckets, 10 ms to 5 min (seconds).
const CHECKPOINT_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// How many recent epochs remember when they opened (processing latency looks them up).
const EPOCH_CLOCK_SLOTS: usize = 4096;

/// Every metric family of a job process, registered in its own registry.
pub struct Metrics {
    job: String,
    registry: Registry,
    records_in: IntCounterVec,
    records_out: IntCounterVec,
    late: IntCounterVec,
    dead_letters: IntCounterVec,
    event_latency: LatencyFamily,
    processing_latency: LatencyFamily,
    read_latency: LatencyFamily,
    kafka_lag: IntGaugeVec,
    kafka_lost: IntCounterVec,
    watermark: Gauge,
    watermark_lag: Gauge,
    checkpoint_duration: Histogram,
    checkpoint_size: Gauge,
    checkpoint_full_size: Gauge,
    checkpoint_failures: IntCounter,
    checkpoints: IntCounter,
    last_checkpoint: IntGauge,
    sink_commits: IntCounterVec,
    restarts: IntGauge,
    /// The process's watermark (ms), for the lag computed at scrape time.
    watermark_ms: AtomicI64,
    /// When each recent epoch opened: `(epoch, µs since the Unix epoch)` per slot.
    epoch_clock: Box<[(AtomicU64, AtomicU64)]>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("job", &self.job).finish()
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_micros() as u64
}

fn register<C: Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry
        .register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

impl Metrics {
    /// The metrics of job `job` (the `job` label of every family).
    pub fn new(job: &str) -> Self {
        let registry = Registry::new();
        let r = &registry;
        let labels = prometheus::labels! { "job".to_string() => job.to_string() };
        let opts = |name: &str, help: &str| Opts::new(name, help).const_labels(labels.clone());
        let hist = |name: &str, help: &str, buckets: &[f64]| {
            HistogramOpts::new(name, help)
                .const_labels(labels.clone())
                .buckets(buckets.to_vec())
        };
        let per_op = &["operator", "worker"];
        let latency = |name: &str, help: &str| {
            let family = LatencyFamily::new(name, help, "operator", labels.clone());
            register(r, family.expect("metric"))
        };
        Metrics {
            job: job.to_string(),
            records_in: register(r, IntCounterVec::new(
                opts("weir_records_in_total", "Records read by a source (malformed ones included)."),
                per_op,
            ).expect("metric")),
            records_out: register(r, IntCounterVec::new(
                opts("weir_records_out_total", "Records written by a sink."),
                per_op,
            ).expect("metric")),
            late: register(r, IntCounterVec::new(
                opts("weir_late_records_total", "Records that arrived after the watermark closed their window, range or rule state; they go to the step's .late output."),
                per_op,
            ).expect("metric")),
            dead_letters: register(r, IntCounterVec::new(
                opts("weir_dead_letter_total", "Inputs a source could not decode (sent to its dead-letter output or skipped)."),
                per_op,
            ).expect("metric")),
            event_latency: latency(
                "weir_event_latency_seconds",
                "Wall-clock time from a record's event time to its sink writing it.",
            ),
            processing_latency: latency(
                "weir_processing_latency_seconds",
                "Wall-clock time from the start of a record's epoch (the epoch it was read in; for results of event-time steps, the epoch whose watermark released them) to its sink writing it.",
            ),
            read_latency: latency(
                "weir_source_event_lag_seconds",
                "Wall-clock time from a record's event time to its source reading it (what the outside world and the broker add before weir sees a record).",
            ),
            kafka_lag: register(r, IntGaugeVec::new(
                opts("weir_kafka_consumer_lag_records", "Records in a Kafka partition beyond the source's read position."),
                &["operator", "topic", "partition"],
            ).expect("metric")),
            kafka_lost: register(r, IntCounterVec::new(
                opts("weir_kafka_records_lost_total", "Records of a Kafka partition the source never read because the broker deleted them first (retention or DeleteRecords passed its read position)."),
                &["operator", "topic", "partition"],
            ).expect("metric")),
            watermark: register(r, Gauge::with_opts(opts(
                "weir_watermark_seconds",
                "The job's event-time watermark as seen by this process (Unix seconds).",
            )).expect("metric")),
            watermark_lag: register(r, Gauge::with_opts(opts(
                "weir_watermark_lag_seconds",
                "Wall-clock time minus the watermark, at scrape time.",
            )).expect("metric")),
            checkpoint_duration: register(r, Histogram::with_opts(hist(
                "weir_checkpoint_duration_seconds",
                "From the end of a checkpoint epoch to its manifest being written.",
                CHECKPOINT_BUCKETS,
            )).expect("metric")),
            checkpoint_size: register(r, Gauge::with_opts(opts(
                "weir_checkpoint_size_bytes",
                "Bytes the last completed checkpoint wrote (incremental: what changed, and the key \
                 groups written in full this time).",
            )).expect("metric")),
            checkpoint_full_size: register(r, Gauge::with_opts(opts(
                "weir_checkpoint_full_size_bytes",
                "Bytes a restore from the last completed checkpoint reads (its files and the \
                 earlier state parts it uses).",
            )).expect("metric")),
            checkpoint_failures: register(r, IntCounter::with_opts(opts(
                "weir_checkpoint_failures_total",
                "Checkpoints that could not be completed.",
            )).expect("metric")),
            checkpoints: register(r, IntCounter::with_opts(opts(
                "weir_checkpoints_completed_total",
                "Checkpoints completed by this process (the one that writes manifests).",
            )).expect("metric")),
            last_checkpoint: register(r, IntGauge::with_opts(opts(
                "weir_checkpoint_last_epoch",
                "The epoch of the last completed checkpoint.",
            )).expect("metric")),
            sink_commits: register(r, IntCounterVec::new(
                opts("weir_sink_commits_total", "Batches a two-phase sink committed (transactions, snapshots, pipelines)."),
                per_op,
            ).expect("metric")),
            restarts: register(r, IntGauge::with_opts(opts(
                "weir_job_restarts",
                "How many times this job was restarted before this run.",
            )).expect("metric")),
            watermark_ms: AtomicI64::new(WATERMARK_MIN),
            epoch_clock: (0..EPOCH_CLOCK_SLOTS)
                .map(|_| (AtomicU64::new(u64::MAX), AtomicU64::new(0)))
                .collect(),
            registry,
        }
    }

    /// The job label.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// The registry, for serving.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Every metric in the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let wm = self.watermark_ms.load(Ordering::Relaxed);
        if wm != WATERMARK_MIN && wm != WATERMARK_END {
            let now = now_micros() as f64 / 1e6;
            self.watermark_lag.set((now - wm as f64 / 1e3).max(0.0));
        }
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }

    /// The counters of one operator on one worker that its role has: sources count records
    /// in and dead letters, sinks records out, windowed steps late records.
    pub fn operator(&self, operator: &str, worker: usize, role: Role) -> OperatorCounters {
        let w = worker.to_string();
        let l = [operator, w.as_str()];
        let has = |r: Role| (r == role).then_some(());
        OperatorCounters {
            records_in: has(Role::Source).map(|_| self.records_in.with_label_values(&l)),
            records_out: has(Role::Sink).map(|_| self.records_out.with_label_values(&l)),
            late: has(Role::Step).map(|_| self.late.with_label_values(&l)),
            dead_letters: has(Role::Source).map(|_| self.dead_letters.with_label_values(&l)),
            read_latency: has(Role::Source).map(|_| self.read_latency.with_label(operator)),
        }
    }

    /// The latency histograms and commit counter of one sink on one worker.
    pub fn sink(&self, sink: &str, worker: usize) -> SinkLatency {
        let w = worker.to_string();
        SinkLatency {
            event: self.event_latency.with_label(sink),
            processing: self.processing_latency.with_label(sink),
            commits: self.sink_commits.with_label_values(&[sink, w.as_str()]),
        }
    }

    /// The lag gauge of one Kafka partition.
    pub fn kafka_lag(&self, source: &str, topic: &str, partition: i32) -> IntGauge {
        self.kafka_lag
            .with_label_values(&[source, topic, &partition.to_string()])
    }

    /// The counter of records of one Kafka partition deleted before the source read them.
    pub fn kafka_lost(&self, source: &str, topic: &str, partition: i32) -> IntCounter {
        self.kafka_lost
            .with_label_values(&[source, topic, &partition.to_string()])
    }

    /// Publishes the process's watermark (ms).
    pub fn watermark(&self, wm: i64) {
        let prev = self.watermark_ms.fetch_max(wm, Ordering::Relaxed);
        if wm > prev && wm != WATERMARK_END {
            self.watermark.set(wm as f64 / 1e3);
        }
    }

    /// Records that `epoch` opened now (the first caller wins; sources on every worker call).
    pub fn epoch_opened(&self, epoch: Epoch) {
        let (slot_epoch, at) = &self.epoch_clock[epoch as usize % EPOCH_CLOCK_SLOTS];
        if slot_epoch.load(Ordering::Relaxed) != epoch {
            at.store(now_micros(), Ordering::Relaxed);
            slot_epoch.store(epoch, Ordering::Release);
        }
    }

    /// When `epoch` opened (µs since the Unix epoch), if it is recent enough to be known.
    fn epoch_opened_at(&self, epoch: Epoch) -> Option<u64> {
        let (slot_epoch, at) = &self.epoch_clock[epoch as usize % EPOCH_CLOCK_SLOTS];
        (slot_epoch.load(Ordering::Acquire) == epoch).then(|| at.load(Ordering::Relaxed))
    }

    /// Checkpoint `epoch` completed, having written `written` bytes; a restore from it reads
    /// `full`.
    pub fn checkpoint_completed(&self, epoch: Epoch, written: u64, full: u64) {
        if let Some(opened) = self.epoch_opened_at(epoch + 1) {
            let secs = now_micros().saturating_sub(opened) as f64 / 1e6;
            self.checkpoint_duration.observe(secs);
        }
        self.checkpoint_size.set(written as f64);
        self.checkpoint_full_size.set(full as f64);
        self.checkpoints.inc();
        self.last_checkpoint.set(epoch as i64);
    }

    /// A source read records with `event_times` (ms) now.
    pub fn observe_read(
        &self,
        counters: &OperatorCounters,
        event_times: impl Iterator<Item = i64>,
    ) {
        if let Some(h) = &counters.read_latency {
            h.observe_lags((now_micros() / 1000) as i64, event_times);
        }
    }

    /// A checkpoint failed.
    pub fn checkpoint_failed(&self) {
        self.checkpoint_failures.inc();
    }

    /// How many restarts came before this run.
    pub fn set_restarts(&self, n: u64) {
        self.restarts.set(n as i64);
    }

    /// A sink wrote `event_times` (ms) of records read in `epoch`: latency observations.
    /// Returns how many records that was.
    pub fn observe_written(
        &self,
        sink: &SinkLatency,
        epoch: Epoch,
        event_times: impl Iterator<Item = i64>,
    ) -> u64 {
        let now = now_micros();
        let n = sink.event.observe_lags((now / 1000) as i64, event_times);
        if n > 0 {
            if let Some(opened) = self.epoch_opened_at(epoch) {
                sink.processing.observe_many(now.saturating_sub(opened), n);
            }
        }
        n
    }
}

/// What an operator is, for the counters it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Reads input.
    Source,
    /// Transforms (and may find late records).
    Step,
    /// Writes output.
    Sink,
}

/// The counters of one operator on one worker (those of its role).
#[derive(Clone, Debug, Default)]
pub struct OperatorCounters {
    /// Records read.
    pub records_in: Option<IntCounter>,
    /// Records written.
    pub records_out: Option<IntCounter>,
    /// Late records.
    pub late: Option<IntCounter>,
    /// Undecodable inputs.
    pub dead_letters: Option<IntCounter>,
    /// Event time → read (sources).
    pub read_latency: Option<Arc<LatencySeries>>,
}

/// A sink's latency histograms and commit counter.
#[derive(Clone, Debug)]
pub struct SinkLatency {
    event: Arc<LatencySeries>,
    processing: Arc<LatencySeries>,
    commits: IntCounter,
}

impl SinkLatency {
    /// A batch was committed.
    pub fn committed(&self) {
        self.commits.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_carry_the_job_label_and_operator_labels() {
        let m = Metrics::new("fraud");
        let op = m.operator("source.payments", 1, Role::Source);
        op.records_in
            .as_ref()
            .expect("a source counts input")
            .inc_by(5);
        assert!(op.records_out.is_none());
        let sink = m.sink("alerts", 0);
        m.epoch_opened(7);
        let now_ms = (now_micros() / 1000) as i64;
        m.observe_written(&sink, 7, [now_ms - 1500, now_ms - 10].into_iter());
        sink.committed();
        m.watermark(now_ms - 2000);
        m.kafka_lag("payments", "payments", 3).set(42);
        let text = m.encode();
        assert!(text.contains(
            "weir_records_in_total{job=\"fraud\",operator=\"source.payments\",worker=\"1\"} 5"
        ));
        assert!(
            text.contains("weir_event_latency_seconds_count{job=\"fraud\",operator=\"alerts\"} 2")
        );
        assert!(text.contains(
            "weir_event_latency_seconds_bucket{job=\"fraud\",operator=\"alerts\",le=\"2\"} 2"
        ));
        assert!(text.contains(
            "weir_event_latency_seconds_bucket{job=\"fraud\",operator=\"alerts\",le=\"1\"} 1"
        ));
        assert!(text.contains(
            "weir_processing_latency_seconds_count{job=\"fraud\",operator=\"alerts\"} 2"
        ));
        assert!(text.contains(
            "weir_kafka_consumer_lag_records{job=\"fraud\",operator=\"payments\",partition=\"3\",topic=\"payments\"} 42"
        ));
        let lag = text
            .lines()
            .find_map(|l| l.strip_prefix("weir_watermark_lag_seconds{job=\"fraud\"} "))
            .expect("watermark lag");
        let lag: f64 = lag.parse().expect("a number");
        assert!((1.9..10.0).contains(&lag), "lag {lag}");
    }

    #[test]
    fn processing_latency_needs_a_known_epoch() {
        let m = Metrics::new("j");
        let sink = m.sink("out", 0);
        m.observe_written(&sink, 99, [0i64].into_iter());
        let text = m.encode();
        assert!(text.contains("weir_event_latency_seconds_count{job=\"j\",operator=\"out\"} 1"));
        assert!(
            !text.contains("weir_processing_latency_seconds_count{job=\"j\",operator=\"out\"} 1")
        );
    }
}
