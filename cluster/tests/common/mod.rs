//! Running the `weir` binary from end-to-end tests, bounded in time.

#![allow(dead_code)]

pub mod kafka;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `weir` binary of this build, with stdout and stderr captured.
pub fn weir() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weir"));
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// Waits for `child` at most `limit`, killing it after that.
pub fn wait(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "timed out after {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `weir ARGS` in `cwd`, for at most two minutes.
pub fn run(args: &[&str], cwd: &Path) -> Output {
    wait(
        weir()
            .args(args)
            .current_dir(cwd)
            .spawn()
            .expect("spawn weir"),
        Duration::from_secs(120),
    )
}

/// A small deterministic random sequence (the tests must not depend on a crate for it).
pub struct Lcg(pub u64);

impl Lcg {
    /// The next number below `n`.
    pub fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// The captured stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// The numbers of batches a restored run found already committed and committed again, from
/// its log lines (summed over sinks and workers).
pub fn recovered(log: &str) -> (usize, usize) {
    let mut totals = (0, 0);
    for line in log.lines().filter(|l| l.contains("recovered worker")) {
        let number_before = |marker: &str| -> usize {
            let head = &line[..line.find(marker).expect("a recovery line")];
            head.rsplit(|c: char| !c.is_ascii_digit())
                .find(|w| !w.is_empty())
                .and_then(|w| w.parse().ok())
                .unwrap_or(0)
        };
        totals.0 += number_before(" already committed");
        totals.1 += number_before(" committed now");
    }
    totals
}

/// Starts `weir run job.yaml` in `dir` at `workers` workers, logging `log` (a `WEIR_LOG`
/// filter), restoring the latest checkpoint when asked, aborting at crash point `crash_at`.
pub fn spawn_job(
    dir: &Path,
    workers: usize,
    restore: bool,
    crash_at: Option<&str>,
    log: &str,
) -> Child {
    let mut cmd = weir();
    cmd.env("WEIR_LOG", log);
    cmd.args(["run", "job.yaml", "--progress", "never", "--workers"])
        .arg(workers.to_string())
        .current_dir(dir);
    if restore {
        cmd.args(["--restore", "latest"]);
    }
    if let Some(point) = crash_at {
        cmd.env("WEIR_CRASH_AT", point);
    }
    cmd.spawn().expect("spawn weir")
}
