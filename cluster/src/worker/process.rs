//! One job process a worker runs: a `weir run` child with its spec, hosts file and log in the
//! worker's directory, signalled to stop, take savepoints or die.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::wire::{Assignment, ProcessReport, ProcessState, StopKind};

/// Lines of the log sent with an exit report.
const LOG_TAIL_LINES: usize = 12;

pub(super) struct JobProcess {
    key: (String, u32, usize),
    child: Option<Child>,
    log: PathBuf,
    exited: Option<(Option<i32>, Option<i32>, String)>,
    stop_sent: Option<StopKind>,
    savepoints_sent: u32,
}

impl JobProcess {
    /// Starts the process of `a`.
    pub(super) fn start(work_dir: &Path, a: Assignment) -> Result<Self, String> {
        let dir = work_dir.join(&a.job);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let stem = format!("run{}-p{}", a.attempt, a.index);
        let spec = dir.join(format!("{stem}.spec"));
        let hosts = dir.join(format!("{stem}.hosts"));
        let log = dir.join(format!("{stem}.log"));
        std::fs::write(&spec, &a.spec).map_err(|e| format!("{}: {e}", spec.display()))?;
        std::fs::write(&hosts, a.hosts.join("\n") + "\n")
            .map_err(|e| format!("{}: {e}", hosts.display()))?;
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let exe = weir_binary()?;
        let mut cmd = Command::new(exe);
        cmd.current_dir(&dir)
            .arg("run")
            .arg(&spec)
            .args(["--processes", &a.hosts.len().to_string()])
            .args(["--process", &a.index.to_string()])
            .arg("--hosts")
            .arg(&hosts)
            .args(["--workers", &a.workers.to_string()])
            .args(["--progress", "never"])
            .args(["--metrics-addr", &a.metrics_addr])
            .args(["--restarts", &a.restarts.to_string()])
            .arg("--exit-with-parent")
            .args(&a.args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = cmd
            .spawn()
            .map_err(|e| format!("job {} process {}: cannot start: {e}", a.job, a.index))?;
        tracing::info!(
            "started job {} ({}) run {} process {} as pid {}; log {}",
            a.job,
            a.name,
            a.attempt,
            a.index,
            child.id(),
            log.display()
        );
        let mut p = JobProcess {
            key: (a.job.clone(), a.attempt, a.index),
            child: Some(child),
            log,
            exited: None,
            stop_sent: None,
            // Savepoints asked for before this process existed are not its business.
            savepoints_sent: a.savepoints,
        };
        p.follow(&a);
        Ok(p)
    }

    /// A process that could not start: reported as exited, with why.
    pub(super) fn failed_to_start(key: (String, u32, usize), why: String) -> Self {
        JobProcess {
            key,
            child: None,
            log: PathBuf::new(),
            exited: Some((Some(127), None, why)),
            stop_sent: None,
            savepoints_sent: 0,
        }
    }

    /// Acts on what the coordinator wants of a running process: a stop, a savepoint.
    pub(super) fn follow(&mut self, a: &Assignment) {
        if !self.is_running() {
            return;
        }
        if let Some(stop) = a.stop {
            if self.stop_sent != Some(stop) {
                self.stop_sent = Some(stop);
                match stop {
                    StopKind::Savepoint => self.signal("TERM"),
                    StopKind::Kill => self.kill(),
                }
            }
        }
        if a.savepoints > self.savepoints_sent {
            self.savepoints_sent = a.savepoints;
            // The savepoint is completed by the first worker of process 0.
            if a.index == 0 {
                self.signal("USR1");
            }
        }
    }

    fn signal(&self, signal: &str) {
        let Some(child) = &self.child else { return };
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status();
        if !status.is_ok_and(|s| s.success()) {
            tracing::warn!("could not send SIG{signal} to pid {}", child.id());
        }
    }

    /// Kills it (SIGKILL).
    pub(super) fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if self.exited.is_none() {
                let _ = child.kill();
            }
        }
    }

    /// Notices an exit.
    pub(super) fn poll(&mut self) {
        if self.exited.is_some() {
            return;
        }
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                let tail = log_tail(&self.log);
                tracing::info!(
                    "job {} run {} process {} exited: {status}",
                    self.key.0,
                    self.key.1,
                    self.key.2
                );
                self.exited = Some((
                    status.code(),
                    std::os::unix::process::ExitStatusExt::signal(&status),
                    tail,
                ));
            }
        }
    }

    /// Still alive.
    pub(super) fn is_running(&self) -> bool {
        self.exited.is_none() && self.child.is_some()
    }

    /// What the heartbeat says of it.
    pub(super) fn report(&self) -> ProcessReport {
        ProcessReport {
            job: self.key.0.clone(),
            attempt: self.key.1,
            index: self.key.2,
            state: match &self.exited {
                None => ProcessState::Running,
                Some((code, signal, log_tail)) => ProcessState::Exited {
                    code: *code,
                    signal: *signal,
                    log_tail: log_tail.clone(),
                },
            },
        }
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// The `weir` binary this worker runs; after an upgrade replaced it on disk, the new one at
/// the same path.
fn weir_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the weir binary: {e}"))?;
    if exe.exists() {
        return Ok(exe);
    }
    let text = exe.to_string_lossy();
    let replaced = PathBuf::from(text.trim_end_matches(" (deleted)"));
    if replaced.exists() {
        return Ok(replaced);
    }
    Err(format!("the weir binary {} is gone", exe.display()))
}
