//! Live progress on stderr: events in/out, rate, watermark.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use weir_engine::data::time::format_rfc3339;
use weir_engine::event::{WATERMARK_END, WATERMARK_MIN};
use weir_engine::stats::JobStats;

/// A spinner refreshed from the job's counters.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

fn watermark(wm: i64) -> String {
    match wm {
        WATERMARK_MIN => "-".to_string(),
        WATERMARK_END => "end".to_string(),
        ms => format_rfc3339(ms),
    }
}

impl Progress {
    /// Starts drawing: a live spinner on a terminal, otherwise a plain line every second.
    pub fn start(job: &str, stats: Arc<JobStats>) -> Self {
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} {elapsed} {msg}").expect("template"),
        );
        bar.set_prefix(job.to_string());
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let job = job.to_string();
        let thread = std::thread::spawn(move || {
            let (mut last_in, mut last_at) = (0u64, Instant::now());
            let mut rate = 0.0;
            let mut last_line = Instant::now();
            while !stopping.load(Ordering::Relaxed) {
                let s = stats.snapshot();
                let now = Instant::now();
                let dt = now.duration_since(last_at).as_secs_f64();
                if dt >= 0.5 {
                    rate = (s.records_in - last_in) as f64 / dt;
                    (last_in, last_at) = (s.records_in, now);
                }
                let message = format!(
                    "in {} ({:.0}/s) out {} late {} dead letters {} watermark {}",
                    s.records_in,
                    rate,
                    s.records_out,
                    s.late,
                    s.dead_letters,
                    watermark(s.watermark)
                );
                if terminal {
                    bar.set_message(message);
                    bar.tick();
                } else if last_line.elapsed() >= Duration::from_secs(1) {
                    eprintln!("{job}: {message}");
                    last_line = Instant::now();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            bar.finish_and_clear();
        });
        Progress { stop, thread }
    }

    /// Stops drawing and clears the line.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}
