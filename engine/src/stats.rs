//! Live counters of a running job in this process, read by the progress display and summary,
//! and its Prometheus [`Metrics`].

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use crate::event::{Epoch, WATERMARK_MIN};
use crate::metrics::{Metrics, OperatorCounters, Role, SinkLatency};

/// Counters shared by every worker thread of a process.
#[derive(Debug)]
pub struct JobStats {
    records_in: AtomicU64,
    records_out: AtomicU64,
    late: AtomicU64,
    dead_letters: AtomicU64,
    watermark: AtomicI64,
    metrics: Metrics,
}

impl Default for JobStats {
    fn default() -> Self {
        JobStats::new("job")
    }
}

impl JobStats {
    /// The counters and metrics of job `job` in this process.
    pub fn new(job: &str) -> Self {
        JobStats {
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            late: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            watermark: AtomicI64::new(WATERMARK_MIN),
            metrics: Metrics::new(job),
        }
    }

    /// The Prometheus metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn with_role(self: &Arc<Self>, name: &str, worker: usize, role: Role) -> OperatorStats {
        OperatorStats {
            counters: self.metrics.operator(name, worker, role),
            sink: (role == Role::Sink).then(|| self.metrics.sink(name, worker)),
            stats: self.clone(),
        }
    }

    /// The counters of step `name` on `worker` (late records): the process totals and its
    /// own series.
    pub fn operator(self: &Arc<Self>, name: &str, worker: usize) -> OperatorStats {
        self.with_role(name, worker, Role::Step)
    }

    /// The counters of source `name` on `worker` (records in, dead letters).
    pub fn source(self: &Arc<Self>, name: &str, worker: usize) -> OperatorStats {
        self.with_role(name, worker, Role::Source)
    }

    /// The counters of sink `name` on `worker`: records out, latency histograms, commits.
    pub fn sink(self: &Arc<Self>, name: &str, worker: usize) -> OperatorStats {
        self.with_role(name, worker, Role::Sink)
    }
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Records read by sources (dead letters included).
    pub records_in: u64,
    /// Records written by sinks.
    pub records_out: u64,
    /// Records that arrived after their windows closed.
    pub late: u64,
    /// Inputs that could not be decoded.
    pub dead_letters: u64,
    /// The lowest source watermark seen by this process's first worker.
    pub watermark: i64,
}

impl JobStats {
    /// Adds records read.
    pub fn add_in(&self, n: u64) {
        self.records_in.fetch_add(n, Ordering::Relaxed);
    }
    /// Adds records written.
    pub fn add_out(&self, n: u64) {
        self.records_out.fetch_add(n, Ordering::Relaxed);
    }
    /// Adds late records.
    pub fn add_late(&self, n: u64) {
        self.late.fetch_add(n, Ordering::Relaxed);
    }
    /// Adds dead letters.
    pub fn add_dead_letters(&self, n: u64) {
        self.dead_letters.fetch_add(n, Ordering::Relaxed);
    }
    /// Publishes a watermark (kept if larger).
    pub fn observe_watermark(&self, wm: i64) {
        self.watermark.fetch_max(wm, Ordering::Relaxed);
        self.metrics.watermark(wm);
    }
    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            records_in: self.records_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            late: self.late.load(Ordering::Relaxed),
            dead_letters: self.dead_letters.load(Ordering::Relaxed),
            watermark: self.watermark.load(Ordering::Relaxed),
        }
    }
}

/// One operator's view of the counters: every add goes to the process totals and to the
/// operator's labelled series.
#[derive(Clone, Debug)]
pub struct OperatorStats {
    stats: Arc<JobStats>,
    counters: OperatorCounters,
    sink: Option<SinkLatency>,
}

impl OperatorStats {
    /// Adds records read.
    pub fn add_in(&self, n: u64) {
        self.stats.add_in(n);
        if let Some(c) = &self.counters.records_in {
            c.inc_by(n);
        }
    }
    /// A source read records with these event times (ms): the read-lag histogram.
    pub fn read(&self, event_times: impl Iterator<Item = i64>) {
        self.stats.metrics.observe_read(&self.counters, event_times);
    }
    /// Adds late records.
    pub fn add_late(&self, n: u64) {
        self.stats.add_late(n);
        if let Some(c) = &self.counters.late {
            c.inc_by(n);
        }
    }
    /// Adds dead letters.
    pub fn add_dead_letters(&self, n: u64) {
        self.stats.add_dead_letters(n);
        if let Some(c) = &self.counters.dead_letters {
            c.inc_by(n);
        }
    }
    /// A sink wrote records read in `epoch` with these event times (ms): counted, and
    /// observed in the latency histograms.
    pub fn written(&self, epoch: Epoch, event_times: impl Iterator<Item = i64>) {
        let n = match &self.sink {
            Some(sink) => self.stats.metrics.observe_written(sink, epoch, event_times),
            None => event_times.count() as u64,
        };
        self.stats.add_out(n);
        if let Some(c) = &self.counters.records_out {
            c.inc_by(n);
        }
    }
    /// A sink committed a batch.
    pub fn committed(&self) {
        if let Some(sink) = &self.sink {
            sink.committed();
        }
    }
    /// The job's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.stats.metrics
    }
}
