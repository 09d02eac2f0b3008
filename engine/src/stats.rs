//! Live counters of a running job in this process, read by the progress display and summary.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::event::WATERMARK_MIN;

/// Counters shared by every worker thread of a process.
#[derive(Debug)]
pub struct JobStats {
    records_in: AtomicU64,
    records_out: AtomicU64,
    late: AtomicU64,
    dead_letters: AtomicU64,
    watermark: AtomicI64,
}

impl Default for JobStats {
    fn default() -> Self {
        JobStats {
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            late: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            watermark: AtomicI64::new(WATERMARK_MIN),
        }
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
