//! Running a plan: one timely computation over this process's workers, until the bounded
//! sources end and every window has been flushed, or something fails.

use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_engine::event::Epoch;
use weir_engine::failure::Failures;
use weir_engine::runtime::{execute, ClusterConfig, RuntimeError};
use weir_engine::stats::{JobStats, StatsSnapshot};

use timely::dataflow::ProbeHandle;
use weir_engine::checkpoint::{names, CheckpointRun, Checkpoints, Participant};
use weir_engine::state::CheckpointSchedule;
use weir_engine::store::Store;

use crate::build::{build, BuildContext, DurableSetup, StateSetup};
use crate::plan::Plan;

/// How to run.
#[derive(Clone)]
pub struct RunOptions {
    /// Workers and processes.
    pub cluster: ClusterConfig,
    /// How long processes wait for each other at start.
    pub connect_timeout: Duration,
    /// Snapshots of keyed state, when wanted.
    pub state: Option<StateSetup>,
    /// Durable checkpoints, when wanted (overrides `state`).
    pub durable: Option<Durable>,
}

/// Durable checkpoints of a run, and how they are completed.
#[derive(Clone)]
pub struct Durable {
    /// Where and when.
    pub setup: DurableSetup,
    /// Complete checkpoints kept.
    pub retain: usize,
    /// Consecutive failed checkpoints that fail the job.
    pub fail_after: Option<u32>,
}

impl Durable {
    /// The durable checkpoints of `plan` (its `checkpoint:` section), resuming from
    /// `restore`: `latest` (the newest intact checkpoint, if any), or a checkpoint's epoch.
    pub fn for_plan(plan: &Plan, restore: Option<&str>) -> Result<Option<Durable>, String> {
        let Some(c) = &plan.checkpoint else {
            return match restore {
                Some(_) => Err(format!(
                    "job `{}` has no `checkpoint:` section to restore from",
                    plan.name
                )),
                None => Ok(None),
            };
        };
        let store = Store::open(&c.store).map_err(|e| format!("checkpoint.store: {e}"))?;
        let checkpoints = Checkpoints::new(store, &plan.name);
        let restore = match restore {
            None => None,
            Some("latest") => {
                let latest = checkpoints.latest().map_err(|e| e.to_string())?;
                if latest.is_none() {
                    tracing::info!(
                        "job `{}` has no checkpoint yet: starting from the beginning",
                        plan.name
                    );
                }
                latest
            }
            Some(other) => {
                let epoch = other
                    .trim_start_matches("chk-")
                    .parse::<Epoch>()
                    .map_err(|_| format!("--restore {other}: expected `latest` or a checkpoint (chk-<epoch> or <epoch>)"))?;
                Some(checkpoints.at(epoch)?)
            }
        };
        let generation = match restore.as_ref().map(|r| r.manifest.generation) {
            Some(g) if g > 0 => g,
            _ => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_millis() as u64),
        };
        let checkpoints = checkpoints.with_generation(generation);
        let every = (c.interval.as_nanos() / plan.tick.as_nanos().max(1)).max(1) as u64;
        // Epochs continue after every checkpoint directory present (complete or abandoned).
        let after = checkpoints
            .epochs()
            .map_err(|e| e.to_string())?
            .last()
            .map_or(0, |e| e + 1);
        let first_epoch = after.max(restore.as_ref().map_or(0, |r| r.epoch() + 1));
        Ok(Some(Durable {
            setup: DurableSetup {
                run: CheckpointRun {
                    checkpoints,
                    schedule: CheckpointSchedule::Every(every),
                    restore,
                    first_epoch,
                    completion: Default::default(),
                },
                participants: Default::default(),
            },
            retain: c.retain,
            fail_after: c.fail_after,
        }))
    }
}

/// Completes checkpoints on the first worker: when the whole dataflow has passed a checkpoint
/// epoch, every participant has written its part, and the manifest can go.
struct Completer {
    durable: Durable,
    next: Option<Epoch>,
    failed_in_a_row: u32,
    workers: usize,
    finished: bool,
}

impl Completer {
    fn new(durable: Durable, workers: usize) -> Self {
        let next = durable.setup.run.first_checkpoint();
        Completer {
            durable,
            next,
            failed_in_a_row: 0,
            workers,
            finished: false,
        }
    }

    /// Every participant of the dataflow (the same on every worker).
    fn participants(&self) -> Vec<Participant> {
        let participants = self.durable.setup.participants.lock();
        participants
            .expect("participants lock")
            .iter()
            .cloned()
            .collect()
    }

    /// Completes the run's final checkpoint once the whole dataflow is done: every
    /// participant has written what it leaves behind, and sinks commit their last batches
    /// only after this. Runs once; `Err` fails the job (the last batches stay uncommitted, and
    /// a restore commits them).
    fn finish(&mut self) -> Result<(), String> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        let run = &self.durable.setup.run;
        let f = run.final_checkpoint();
        let participants = self.participants();
        let manifest = run
            .checkpoints
            .complete(f, &participants, self.workers, self.durable.retain)
            .map_err(|e| format!("the final checkpoint failed: {e}"))?;
        tracing::info!(
            "final checkpoint {f} complete ({} files)",
            manifest.files.len()
        );
        run.completion.completed(f);
        run.checkpoints.retain_now(self.durable.retain, f);
        Ok(())
    }

    /// Completes every checkpoint the probe has passed; `Err` when too many failed in a row.
    fn poll(&mut self, probe: &ProbeHandle<Epoch>) -> Result<(), String> {
        while let Some(c) = self.next {
            if probe.less_equal(&c) || probe.done() {
                // Not there yet; or the run has ended (nothing is checkpointed after the end).
                return Ok(());
            }
            let participants = self.participants();
            let checkpoints = &self.durable.setup.run.checkpoints;
            let last = self.durable.setup.run.final_checkpoint();
            let input_ended = || {
                participants
                    .iter()
                    .filter(|p| p.name.starts_with("source."))
                    .any(|p| (0..self.workers).any(|w| checkpoints.is_done(last, &p.name, w)))
            };
            // Sources whose input has ended take part with their final positions.
            for p in participants
                .iter()
                .filter(|p| p.name.starts_with("source."))
            {
                let source = p.name.trim_start_matches("source.");
                for w in 0..self.workers {
                    if checkpoints.is_done(last, &p.name, w) && !checkpoints.is_done(c, &p.name, w)
                    {
                        let file = names::source_file(source, w);
                        if let Err(e) = checkpoints.carry(last, c, &file, &p.name, w) {
                            tracing::warn!("checkpoint {c}: {e}");
                        }
                    }
                }
            }
            match checkpoints.complete(c, &participants, self.workers, self.durable.retain) {
                Err(_) if input_ended() => {
                    // A source has ended its input: the run drains, nothing more is
                    // checkpointed.
                    tracing::debug!("checkpoint {c} not taken: input ended");
                    self.next = None;
                    return Ok(());
                }
                Ok(m) => {
                    tracing::info!("checkpoint {c} complete ({} files)", m.files.len());
                    self.durable.setup.run.completion.completed(c);
                    self.failed_in_a_row = 0;
                }
                Err(e) => {
                    self.failed_in_a_row += 1;
                    tracing::error!(
                        "checkpoint {c} failed ({} in a row): {e}",
                        self.failed_in_a_row
                    );
                    if self
                        .durable
                        .fail_after
                        .is_some_and(|n| self.failed_in_a_row >= n)
                    {
                        return Err(format!(
                            "{} checkpoints in a row failed; the last: {e}",
                            self.failed_in_a_row
                        ));
                    }
                }
            }
            self.next = self.durable.setup.run.next_at_or_after(c + 1);
        }
        Ok(())
    }
}

impl RunOptions {
    /// One process with `workers` threads.
    pub fn local(workers: usize) -> Self {
        RunOptions {
            cluster: ClusterConfig::single(workers),
            connect_timeout: Duration::from_secs(60),
            state: None,
            durable: None,
        }
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The computation could not start or a worker died.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// An operator reported a failure.
    #[error("{0}")]
    Failed(String),
}

/// What a finished run did.
#[derive(Clone, Copy, Debug)]
pub struct RunSummary {
    /// Wall time.
    pub elapsed: Duration,
    /// Final counters of this process.
    pub stats: StatsSnapshot,
}

/// Runs `plan` to completion on this process's workers.
pub fn run(
    plan: Arc<Plan>,
    options: RunOptions,
    stats: Arc<JobStats>,
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let failures = Failures::new();
    let mut ctx = BuildContext::new(stats.clone(), failures.clone());
    ctx.state = options.state.clone();
    if let Some(d) = &options.durable {
        ctx = ctx.with_durable(d.setup.clone());
    }
    let durable = options.durable.clone();
    let worker_failures = failures.clone();
    let result = execute(&options.cluster, options.connect_timeout, move |worker| {
        let probe = worker.dataflow::<Epoch, _, _>(|scope| build(scope, &plan, &ctx))?;
        let mut completer = durable
            .clone()
            .filter(|_| worker.index() == 0)
            .map(|d| Completer::new(d, worker.peers()));
        // Until every operator has finished: after the probe is done, two-phase sinks still
        // wait for the final checkpoint to commit their last batches.
        loop {
            if let Some(c) = completer.as_mut() {
                let completed = match probe.done() {
                    false => c.poll(&probe),
                    true => c.finish(),
                };
                if let Err(e) = completed {
                    worker_failures.report(format!("job `{}`: {e}", plan.name));
                }
            }
            if worker_failures.any() {
                for dataflow in worker.installed_dataflows() {
                    worker.drop_dataflow(dataflow);
                }
                return Err(worker_failures.first().unwrap_or_default());
            }
            if !worker.step_or_park(Some(Duration::from_millis(20))) && probe.done() {
                break;
            }
        }
        Ok(())
    });
    // An operator's own message says more than "worker N failed".
    if let Some(message) = failures.first() {
        return Err(RunError::Failed(message));
    }
    result?;
    Ok(RunSummary {
        elapsed: started.elapsed(),
        stats: stats.snapshot(),
    })
}
