//! What the coordinator, its workers and the CLI send each other as JSON.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a job is in its life. Only the transitions of [`JobState::can_become`] happen.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Accepted and stored; not placed yet.
    Submitted,
    /// Waiting for worker slots for its processes.
    Scheduling,
    /// Its processes run.
    Running,
    /// A process failed: the others are being stopped, then the job starts again from its
    /// last complete checkpoint after a backoff.
    Restarting,
    /// A stop (with or without savepoint), a cancel or a rescale is under way.
    Stopping,
    /// Stopped on request (after its savepoint, when one was asked for).
    Stopped,
    /// Failed for good: restarts exhausted, or a stop that failed.
    Failed,
    /// Its bounded input ended and every process exited cleanly.
    Finished,
}

impl JobState {
    /// The state machine: `submitted → scheduling → running → restarting | stopping →
    /// stopped | failed | finished`, with `restarting → scheduling` and (for a rescale)
    /// `stopping → scheduling`.
    pub fn can_become(self, next: JobState) -> bool {
        use JobState::*;
        matches!(
            (self, next),
            (Submitted, Scheduling | Stopped | Failed)
                | (Scheduling, Running | Stopping | Stopped | Failed)
                | (Running, Restarting | Stopping | Finished | Failed)
                | (Restarting, Scheduling | Stopping | Stopped | Failed)
                | (Stopping, Stopped | Failed | Scheduling)
        )
    }

    /// No transition leaves it.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Stopped | JobState::Failed | JobState::Finished
        )
    }

    /// The lower-case name (as in JSON).
    pub fn name(self) -> &'static str {
        match self {
            JobState::Submitted => "submitted",
            JobState::Scheduling => "scheduling",
            JobState::Running => "running",
            JobState::Restarting => "restarting",
            JobState::Stopping => "stopping",
            JobState::Stopped => "stopped",
            JobState::Failed => "failed",
            JobState::Finished => "finished",
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One state change of a job, kept in its history.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct Transition {
    /// When (RFC 3339).
    pub at: String,
    /// The state before.
    pub from: JobState,
    /// The state after.
    pub to: JobState,
    /// Why.
    pub reason: String,
}

/// How a stop is carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopKind {
    /// SIGTERM: sources stop, a savepoint is taken and committed, processes exit 0.
    Savepoint,
    /// SIGKILL: the processes die; sinks keep only what their last checkpoint committed.
    Kill,
}

/// A job process as the coordinator placed it, and what its worker last reported.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct ProcessStatus {
    /// Its index in the job, 0 .. processes-1.
    pub index: usize,
    /// The worker running it.
    pub worker: String,
    /// The timely address other processes connect to.
    pub data_addr: String,
    /// Its Prometheus endpoint (`http://.../metrics`).
    pub metrics_addr: String,
    /// `starting`, `running` or `exited <code>`.
    pub state: String,
}

/// A complete checkpoint of a job, from its manifest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct CheckpointInfo {
    /// `chk-<epoch>`: what `--restore` and a replay `from: savepoint:...` take.
    pub id: String,
    /// The checkpoint epoch.
    pub epoch: u64,
    /// When it completed (RFC 3339).
    pub completed_at: String,
    /// Bytes in its files.
    pub bytes: u64,
    /// Its files.
    pub files: usize,
    /// Worker threads of the run that took it.
    pub workers: usize,
    /// The savepoint name, for savepoints.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub savepoint: Option<String>,
}

/// Everything `GET /api/v1/jobs/{id}` says about a job.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct JobStatus {
    /// The job id.
    pub id: String,
    /// The spec's name.
    pub name: String,
    /// Its state.
    pub state: JobState,
    /// Processes.
    pub processes: usize,
    /// Worker threads per process.
    pub workers_per_process: usize,
    /// The current run's number (1 for the first; every restart or rescale adds one).
    pub attempt: u32,
    /// Restarts after failures so far.
    pub restarts: u32,
    /// Where its processes run (empty when none do).
    pub placement: Vec<ProcessStatus>,
    /// The newest complete checkpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_checkpoint: Option<CheckpointInfo>,
    /// The event-time watermark of its first process (RFC 3339), when it reports one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watermark: Option<String>,
    /// Kafka consumer lag summed over every partition and process, when it reads Kafka.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag: Option<i64>,
    /// Records read and written, summed over processes (current run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records_in: Option<u64>,
    /// Records written, summed over processes (current run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records_out: Option<u64>,
    /// Kafka records the broker deleted before the job read them (current run), when any were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_lost: Option<u64>,
    /// Recent errors (newest last): process failures with the end of their log.
    pub errors: Vec<String>,
    /// The savepoint a stop ended with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub savepoint: Option<String>,
    /// The job it replays, for a replay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<String>,
    /// When it was submitted (RFC 3339).
    pub submitted_at: String,
    /// Every state change.
    pub history: Vec<Transition>,
}

/// A row of `GET /api/v1/jobs`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct JobSummary {
    /// The job id.
    pub id: String,
    /// The spec's name.
    pub name: String,
    /// Its state.
    pub state: JobState,
    /// Processes.
    pub processes: usize,
    /// Restarts after failures so far.
    pub restarts: u32,
    /// When it was submitted (RFC 3339).
    pub submitted_at: String,
}

/// A worker as `GET /api/v1/workers` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct WorkerStatus {
    /// Its id.
    pub id: String,
    /// Its address.
    pub addr: String,
    /// Job processes it can run.
    pub slots: usize,
    /// Job processes placed on it.
    pub used: usize,
    /// Heartbeating.
    pub alive: bool,
    /// Milliseconds since its last heartbeat.
    pub last_heartbeat_ms: u64,
}

/// What a worker's job process is doing.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ProcessState {
    /// Alive.
    Running,
    /// Exited (`code` is `None` when killed by a signal); `log_tail` is the end of its log.
    Exited {
        /// Exit code.
        code: Option<i32>,
        /// The signal that killed it.
        #[serde(default)]
        signal: Option<i32>,
        /// The last lines of its stderr.
        log_tail: String,
    },
}

/// Exit code of a job process that lost its connection to another process of its computation
/// (a consequence of that process's failure, not a cause).
pub const PEER_LOST: i32 = 3;

impl ProcessState {
    /// How it ended, for people: "exited with code 3", "was killed by signal 9 (SIGKILL)"
    /// ("is running" while it does).
    pub fn how_it_ended(&self) -> String {
        let ProcessState::Exited { code, signal, .. } = self else {
            return "is running".to_string();
        };
        match (code, signal) {
            (Some(c), _) => format!("exited with code {c}"),
            (None, Some(s)) => {
                let name = match s {
                    6 => " (SIGABRT)",
                    9 => " (SIGKILL)",
                    11 => " (SIGSEGV)",
                    15 => " (SIGTERM)",
                    _ => "",
                };
                format!("was killed by signal {s}{name}")
            }
            (None, None) => "was killed".to_string(),
        }
    }
}

/// One job process in a worker's heartbeat.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ProcessReport {
    /// The job id.
    pub job: String,
    /// The run it belongs to.
    pub attempt: u32,
    /// Its index in the job.
    pub index: usize,
    /// Its state.
    #[serde(flatten)]
    pub state: ProcessState,
}

/// `POST /api/v1/workers/heartbeat`: a worker is alive, and this is what it runs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct Heartbeat {
    /// The worker's id (stable across its restarts).
    pub worker: String,
    /// Its address (`host:port`); job processes of this worker listen on `host`.
    pub addr: String,
    /// Job processes it can run.
    pub slots: usize,
    /// The first port its job processes may use (timely and metrics).
    pub port_min: u16,
    /// The last port its job processes may use.
    pub port_max: u16,
    /// Every job process it knows of.
    pub processes: Vec<ProcessReport>,
}

/// One job process a worker must run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct Assignment {
    /// The job id.
    pub job: String,
    /// The job's name (for logs).
    pub name: String,
    /// The run.
    pub attempt: u32,
    /// This process's index.
    pub index: usize,
    /// Every process's timely address, in index order.
    pub hosts: Vec<String>,
    /// Worker threads per process.
    pub workers: usize,
    /// The spec, as submitted (YAML or JSON).
    pub spec: String,
    /// `weir run` arguments beyond the cluster ones (`--restore`, `--start`, `--shadow`, ...).
    pub args: Vec<String>,
    /// Where it serves `/metrics`.
    pub metrics_addr: String,
    /// Restarts so far (exported by the process).
    pub restarts: u32,
    /// Stop it this way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopKind>,
    /// On-demand savepoints asked for so far: each increase is one SIGUSR1 to process 0.
    #[serde(default)]
    pub savepoints: u32,
}

/// The coordinator's answer to a heartbeat: every process this worker must run; others are
/// killed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default, ToSchema)]
pub struct HeartbeatReply {
    /// The processes of this worker.
    pub assignments: Vec<Assignment>,
}

/// An API error: what went wrong, and for a spec every problem with its path.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct ApiError {
    /// The message.
    pub error: String,
    /// Spec problems (`path`: where in the document).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<SpecProblem>,
}

/// One spec problem.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct SpecProblem {
    /// Dotted path into the spec.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// `POST /api/v1/jobs/{id}/replay`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default, ToSchema)]
pub struct ReplayRequest {
    /// `earliest`, `timestamp:<RFC 3339>`, `offsets:0=42,1=17` (per source: `SOURCE=...`), or
    /// `savepoint:chk-<epoch>`.
    pub from: String,
    /// Write to shadow sinks with this suffix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<String>,
}

/// `POST /api/v1/jobs` answers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct Created {
    /// The new job's id.
    pub id: String,
}

/// Formats ms since the Unix epoch as RFC 3339.
pub fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

/// Now, in ms since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::JobState::{self, *};

    #[test]
    fn only_legal_transitions() {
        let all = [
            Submitted, Scheduling, Running, Restarting, Stopping, Stopped, Failed, Finished,
        ];
        for s in all {
            if s.is_terminal() {
                assert!(all.iter().all(|n| !s.can_become(*n)), "{s} is terminal");
            }
        }
        assert!(Running.can_become(Restarting));
        assert!(Restarting.can_become(Scheduling));
        assert!(Stopping.can_become(Scheduling), "rescale");
        assert!(!Running.can_become(Submitted));
        assert!(!Finished.can_become(Running));
        assert!(!Submitted.can_become(Running));
        let json = serde_json::to_string(&JobState::Restarting).expect("json");
        assert_eq!(json, "\"restarting\"");
    }
}
