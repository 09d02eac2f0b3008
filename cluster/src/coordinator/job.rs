//! A job as the coordinator keeps it: the durable record, and the commands that move it
//! through its states (only legal transitions; anything else is a conflict).

use serde::{Deserialize, Serialize};

use crate::wire::{now_ms, rfc3339_ms, JobState, StopKind, Transition};

/// What the coordinator knows of a job (stored as JSON in the job store).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct JobRecord {
    /// Its id.
    pub id: String,
    /// Submission order.
    pub seq: u64,
    /// The spec's name.
    pub name: String,
    /// The spec as submitted.
    pub spec: String,
    /// Its state.
    pub state: JobState,
    /// Processes of the job.
    pub processes: usize,
    /// Worker threads per process.
    pub workers: usize,
    /// The checkpoint store, when the spec checkpoints.
    pub checkpoint_store: Option<String>,
    /// The restart strategy: attempts, first and longest pause (ms).
    pub restart: (u32, u64, u64),
    /// The current (or last) run: 0 before the first.
    pub attempt: u32,
    /// Restarts after failures.
    pub restarts: u32,
    /// Failures since the job last ran for a while (drives the backoff and the limit).
    pub failures_in_a_row: u32,
    /// `weir run` arguments of every run (start positions and shadow of a replay).
    pub args: Vec<String>,
    /// What the next run restores (`latest`, `chk-...`).
    pub restore_next: Option<String>,
    /// The checkpoint the job's first run started from (a replay from a savepoint): restarts
    /// fall back to it while the job has no checkpoint of its own.
    #[serde(default)]
    pub restore_first: Option<String>,
    /// Where the current run's processes are.
    pub placement: Vec<Placed>,
    /// The current run's `weir run` arguments beyond the cluster ones.
    #[serde(default)]
    pub run_args: Vec<String>,
    /// The stop under way.
    pub stop: Option<StopKind>,
    /// What happens once the processes have stopped.
    pub after_stop: AfterStop,
    /// On-demand savepoints asked for in the current run.
    pub savepoints: u32,
    /// Do not schedule before this (ms since the Unix epoch): the restart backoff.
    pub not_before_ms: u64,
    /// When the current run was placed (ms).
    pub placed_ms: u64,
    /// Recent errors, newest last.
    pub errors: Vec<String>,
    /// The savepoint a stop ended with.
    pub savepoint: Option<String>,
    /// The job this one replays.
    pub replay_of: Option<String>,
    /// The client's key for a safe retry of the submit.
    pub idempotency_key: Option<String>,
    /// When it was submitted (ms).
    pub submitted_ms: u64,
    /// Every state change.
    pub history: Vec<Transition>,
}

/// One placed process of a run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Placed {
    /// The worker.
    pub worker: String,
    /// Its timely address.
    pub data_addr: String,
    /// Its metrics address.
    pub metrics_addr: String,
}

/// What a stop leads to.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case", tag = "then", content = "processes")]
pub enum AfterStop {
    /// `stopped`.
    #[default]
    Stop,
    /// `stopped`, by a cancel.
    Cancel,
    /// Scheduled again from the savepoint at this many processes.
    Rescale(usize),
}

/// Why a command was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Refused {
    /// No such job.
    #[error("no job {0}")]
    NotFound(String),
    /// Not in this state (409).
    #[error("{0}")]
    Conflict(String),
    /// A bad request (400).
    #[error("{0}")]
    Invalid(String),
}

/// At most this many errors are kept per job.
const ERRORS_KEPT: usize = 20;

impl JobRecord {
    /// Moves to `next` if the state machine allows it; records why.
    pub fn transition(&mut self, next: JobState, reason: impl Into<String>) -> Result<(), Refused> {
        if !self.state.can_become(next) {
            return Err(Refused::Conflict(format!(
                "job {} is {}; it cannot become {next}",
                self.id, self.state
            )));
        }
        let reason = reason.into();
        tracing::info!(
            "job {} ({}): {} → {next}: {reason}",
            self.id,
            self.name,
            self.state
        );
        self.history.push(Transition {
            at: rfc3339_ms(now_ms()),
            from: self.state,
            to: next,
            reason,
        });
        self.state = next;
        Ok(())
    }

    /// Like [`JobRecord::transition`] for moves the coordinator itself makes (always legal
    /// where it calls them).
    pub fn become_(&mut self, next: JobState, reason: impl Into<String>) {
        if let Err(e) = self.transition(next, reason) {
            tracing::error!("{e}");
        }
    }

    /// Keeps an error (the newest 20).
    pub fn error(&mut self, message: String) {
        tracing::warn!("job {} ({}): {message}", self.id, self.name);
        self.errors
            .push(format!("{}: {message}", rfc3339_ms(now_ms())));
        if self.errors.len() > ERRORS_KEPT {
            self.errors.remove(0);
        }
    }

    /// Asks the running processes to stop: with a savepoint (the job must checkpoint) or by
    /// killing them; then `after`.
    pub fn request_stop(&mut self, savepoint: bool, after: AfterStop) -> Result<(), Refused> {
        if self.state.is_terminal() {
            return Err(Refused::Conflict(format!(
                "job {} is {}: there is nothing to stop",
                self.id, self.state
            )));
        }
        if savepoint && self.checkpoint_store.is_none() {
            return Err(Refused::Conflict(format!(
                "job {} has no `checkpoint:` section: it cannot stop with a savepoint",
                self.id
            )));
        }
        let what = match after {
            AfterStop::Stop if savepoint => "stop with savepoint requested".to_string(),
            AfterStop::Stop => "stop requested".to_string(),
            AfterStop::Cancel => "cancel requested".to_string(),
            AfterStop::Rescale(n) => format!("rescale to {n} process(es) requested"),
        };
        match self.state {
            JobState::Running => {
                self.transition(JobState::Stopping, what)?;
                self.stop = Some(if savepoint {
                    StopKind::Savepoint
                } else {
                    StopKind::Kill
                });
                self.after_stop = after;
                Ok(())
            }
            // Nothing runs yet (or any more): a cancel or stop takes effect at once.
            JobState::Submitted | JobState::Scheduling | JobState::Restarting
                if !matches!(after, AfterStop::Rescale(_)) =>
            {
                self.placement.clear();
                self.transition(JobState::Stopped, what)
            }
            // A cancel overrides a stop with savepoint that hangs.
            JobState::Stopping if after == AfterStop::Cancel => {
                self.stop = Some(StopKind::Kill);
                self.after_stop = AfterStop::Cancel;
                Ok(())
            }
            state => Err(Refused::Conflict(format!(
                "job {} is {state}: {what} only applies to a running job",
                self.id
            ))),
        }
    }

    /// The pause before the next attempt after `failures` failures in a row.
    pub fn backoff_ms(&self) -> u64 {
        let (_, first, longest) = self.restart;
        let factor = 1u64 << self.failures_in_a_row.saturating_sub(1).min(20);
        first.saturating_mul(factor).min(longest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn record() -> JobRecord {
        let spec = "name: fraud\nprocesses: 2\n\
            checkpoint: { interval: 1s, store: \"file:///tmp/c\" }\n\
            restart: { max_attempts: 3, backoff: 1s, max_backoff: 8s }\n\
            sources:\n  p: { kind: generator, stream: payments, events: 1 }\n\
            sinks:\n  out: { from: p, kind: blackhole }\n";
        let plan = weir_jobs::load_spec(spec, &[]).expect("a valid spec");
        let mut r = super::super::new_record(spec, &plan, None, None, Vec::new(), None);
        r.id = "j1".into();
        r
    }

    #[test]
    fn stops_apply_to_running_jobs_only() {
        let mut j = record();
        j.become_(JobState::Scheduling, "test");
        j.become_(JobState::Running, "test");
        j.request_stop(true, AfterStop::Stop).expect("stop");
        assert_eq!(j.state, JobState::Stopping);
        assert_eq!(j.stop, Some(StopKind::Savepoint));
        let again = j.request_stop(true, AfterStop::Stop);
        assert!(matches!(again, Err(Refused::Conflict(_))), "{again:?}");
        j.request_stop(false, AfterStop::Cancel)
            .expect("a cancel overrides");
        assert_eq!(j.stop, Some(StopKind::Kill));
        j.become_(JobState::Stopped, "test");
        assert!(matches!(
            j.request_stop(false, AfterStop::Cancel),
            Err(Refused::Conflict(_))
        ));
        assert_eq!(j.history.len(), 4);
    }

    #[test]
    fn savepoints_need_checkpoints() {
        let mut j = record();
        j.checkpoint_store = None;
        j.become_(JobState::Scheduling, "test");
        j.become_(JobState::Running, "test");
        assert!(matches!(
            j.request_stop(true, AfterStop::Stop),
            Err(Refused::Conflict(m)) if m.contains("checkpoint")
        ));
    }

    #[test]
    fn backoff_doubles_up_to_the_limit() {
        let mut j = record();
        let pauses: Vec<u64> = (1..=6)
            .map(|n| {
                j.failures_in_a_row = n;
                j.backoff_ms()
            })
            .collect();
        assert_eq!(pauses, [1000, 2000, 4000, 8000, 8000, 8000]);
    }
}
