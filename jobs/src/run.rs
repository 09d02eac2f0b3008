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
    /// A checkpoint named by `--restore`: `chk-<epoch>` or `<epoch>` of the job, or
    /// `<job>/chk-<epoch>`, a checkpoint of another job in the same store (a replay of that
    /// job into shadow sinks): its state and source positions, not its sinks' files.
    fn restore_point(
        checkpoints: &Checkpoints,
        plan: &Plan,
        named: &str,
    ) -> Result<Option<weir_engine::checkpoint::Restore>, String> {
        let (of, chk) = match named.rsplit_once('/') {
            Some((job, chk)) => (Some(job), chk),
            None => (None, named),
        };
        let epoch = chk
            .trim_start_matches("chk-")
            .parse::<Epoch>()
            .map_err(|_| {
                format!(
                "--restore {named}: expected `latest` or a checkpoint (chk-<epoch>, <epoch> or \
                 <job>/chk-<epoch>)"
            )
            })?;
        Ok(Some(match of {
            Some(job) if job != plan.name => Checkpoints::new(checkpoints.store().clone(), job)
                .at(epoch)?
                .without_sinks(),
            _ => checkpoints.at(epoch)?,
        }))
    }

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
        // `latest,<checkpoint>`: the newest checkpoint, or that one while there is none (a
        // replay from a savepoint restarted before its first checkpoint).
        let (restore, fallback) = match restore.and_then(|r| r.split_once(',')) {
            Some(("latest", fallback)) => (Some("latest"), Some(fallback)),
            _ => (restore, None),
        };
        let restore = match restore {
            None => None,
            Some("latest") if fallback.is_some() => {
                match checkpoints.latest().map_err(|e| e.to_string())? {
                    Some(latest) => Some(latest),
                    None => Self::restore_point(&checkpoints, plan, fallback.unwrap_or_default())?,
                }
            }
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
            Some(other) => Self::restore_point(&checkpoints, plan, other)?,
        };
        let own = restore.as_ref().is_none_or(|r| r.job() == plan.name);
        let generation = match restore.as_ref().map(|r| r.manifest.generation) {
            Some(g) if g > 0 && own => g,
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
    /// A stop with savepoint: the checkpoint chosen as the savepoint, once every source has
    /// stopped reading.
    savepoint: Option<Epoch>,
    last_stop_look: Option<Instant>,
    /// A savepoint was asked for without stopping: the next checkpoint completed is one.
    on_demand: bool,
    /// Stop directories of earlier runs were deleted (after the run's first checkpoint).
    stops_cleared: bool,
    stats: Arc<JobStats>,
}

impl Completer {
    fn new(durable: Durable, workers: usize, stats: Arc<JobStats>) -> Self {
        let next = durable.setup.run.first_checkpoint();
        Completer {
            durable,
            next,
            failed_in_a_row: 0,
            workers,
            finished: false,
            savepoint: None,
            last_stop_look: None,
            on_demand: false,
            stops_cleared: false,
            stats,
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
            "final checkpoint {f} complete: {} bytes written, {} in all",
            manifest.written_bytes(),
            manifest.total_bytes()
        );
        run.completion.completed(f);
        run.checkpoints.retain_now(self.durable.retain, f);
        Ok(())
    }

    /// On a stop with savepoint, once every source (on every worker) has stopped reading:
    /// the first checkpoint at or after the last stop is the savepoint.
    fn choose_savepoint(&mut self) {
        if self.savepoint.is_some() || !weir_engine::stop::requested() {
            return;
        }
        if self
            .last_stop_look
            .is_some_and(|t| t.elapsed() < Duration::from_millis(50))
        {
            return;
        }
        self.last_stop_look = Some(Instant::now());
        let run = &self.durable.setup.run;
        let sources: Vec<String> = self
            .participants()
            .into_iter()
            .filter(|p| p.name.starts_with("source."))
            .map(|p| p.name)
            .collect();
        let stops = match run.stops() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("stop with savepoint: {e}");
                return;
            }
        };
        // A source whose input had already ended on a worker (its partitions there were read
        // to their bounded end) has nothing to stop: it takes part with its final positions.
        let last = run.final_checkpoint();
        let all = sources.iter().all(|name| {
            (0..self.workers).all(|w| {
                stops.iter().any(|(p, sw, _)| p == name && *sw == w)
                    || run.checkpoints.is_done(last, name, w)
            })
        });
        if all {
            let stopped_at = stops.iter().map(|(_, _, e)| *e).max().unwrap_or(0);
            self.savepoint = run.next_at_or_after(stopped_at.max(self.next.unwrap_or(0)));
            if let Some(s) = self.savepoint {
                tracing::info!(
                    "every source has stopped reading: checkpoint {s} will be the savepoint"
                );
            }
        }
    }

    /// Completes every checkpoint the probe has passed; `Err` when too many failed in a row.
    fn poll(&mut self, probe: &ProbeHandle<Epoch>) -> Result<(), String> {
        self.choose_savepoint();
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
            let stop = self.savepoint == Some(c);
            // A savepoint asked for without stopping (SIGUSR1): this checkpoint.
            self.on_demand |= weir_engine::stop::take_savepoint_request();
            let savepoint = match (stop, self.on_demand) {
                (true, _) => Some(format!("stop-{c}")),
                (false, true) => Some(format!("sp-{c}")),
                (false, false) => None,
            };
            match checkpoints.complete_as(
                c,
                &participants,
                self.workers,
                self.durable.retain,
                savepoint,
            ) {
                Err(_) if input_ended() => {
                    // A source has ended its input: the run drains, nothing more is
                    // checkpointed.
                    tracing::debug!("checkpoint {c} not taken: input ended");
                    self.next = None;
                    return Ok(());
                }
                Ok(m) => {
                    tracing::info!(
                        "checkpoint {c} complete: {} bytes written, {} in all",
                        m.written_bytes(),
                        m.total_bytes()
                    );
                    self.durable.setup.run.completion.completed(c);
                    self.failed_in_a_row = 0;
                    if !self.stops_cleared {
                        self.stops_cleared = true;
                        match self.durable.setup.run.clear_earlier_stops() {
                            Ok(0) => {}
                            Ok(n) => tracing::info!("removed {n} stop directories of earlier runs"),
                            Err(e) => tracing::warn!("stop directories of earlier runs: {e}"),
                        }
                    }
                    self.stats.metrics().checkpoint_completed(
                        c,
                        m.written_bytes(),
                        m.total_bytes(),
                    );
                    if let Some(name) = m.savepoint.as_ref().filter(|_| !stop) {
                        self.on_demand = false;
                        eprintln!("savepoint {name} taken: chk-{c:020} (kept until deleted)");
                    }
                    if stop {
                        self.durable
                            .setup
                            .run
                            .announce_savepoint(c)
                            .map_err(|e| format!("savepoint {c}: {e}"))?;
                    }
                }
                Err(e) => {
                    self.failed_in_a_row += 1;
                    self.stats.metrics().checkpoint_failed();
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
    /// The savepoint a stopped run ended with (`--savepoint-on-stop`).
    pub savepoint: Option<Epoch>,
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
    let stopped = Arc::new(std::sync::Mutex::new(None));
    let stopped_at = stopped.clone();
    let completer_stats = stats.clone();
    let result = execute(&options.cluster, options.connect_timeout, move |worker| {
        // Every source closes its epochs at the same instants (see `weir_engine::clock`).
        let mut ctx = ctx.clone();
        ctx.clock_anchor = Some(weir_engine::clock::agree_on_anchor(worker));
        let probe = match worker.dataflow::<Epoch, _, _>(|scope| build(scope, &plan, &ctx)) {
            Ok(probe) => probe,
            Err(e) => {
                // A dataflow half built on this worker would be stepped by timely for ever
                // after this closure returns (the others wait for its operators): drop it,
                // and tell this process's other workers to stop too.
                worker_failures.report(e.clone());
                drop_dataflows(worker);
                return Err(e);
            }
        };
        let mut completer = durable
            .clone()
            .filter(|_| worker.index() == 0)
            .map(|d| Completer::new(d, worker.peers(), completer_stats.clone()));
        let mut stop = durable.as_ref().map(|d| StopWatch::new(&d.setup.run));
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
                drop_dataflows(worker);
                return Err(worker_failures.first().unwrap_or_default());
            }
            if let Some(savepoint) = stop.as_mut().and_then(|s| s.done()) {
                // Stopped with a savepoint that every sink of this process has committed.
                drop_dataflows(worker);
                stopped_at.lock().expect("stop lock").replace(savepoint);
                break;
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
    let savepoint = *stopped.lock().expect("stop lock");
    Ok(RunSummary {
        elapsed: started.elapsed(),
        stats: stats.snapshot(),
        savepoint,
    })
}

/// Drops every dataflow of `worker`, so that timely does not step it after the worker's
/// closure returns.
fn drop_dataflows(worker: &mut timely::worker::Worker) {
    for dataflow in worker.installed_dataflows() {
        worker.drop_dataflow(dataflow);
    }
}

/// Watches for the end of a stop with savepoint on one worker: the savepoint announced
/// (complete) and every two-phase sink of the process committed through it.
struct StopWatch {
    run: CheckpointRun,
    savepoint: Option<Epoch>,
    last_look: Option<Instant>,
}

impl StopWatch {
    fn new(run: &CheckpointRun) -> Self {
        StopWatch {
            run: run.clone(),
            savepoint: None,
            last_look: None,
        }
    }

    /// The savepoint, once the run may end on it.
    fn done(&mut self) -> Option<Epoch> {
        if !weir_engine::stop::requested() {
            return None;
        }
        if self.savepoint.is_none() {
            if self
                .last_look
                .is_some_and(|t| t.elapsed() < Duration::from_millis(50))
            {
                return None;
            }
            self.last_look = Some(Instant::now());
            self.savepoint = self.run.announced_savepoint().ok().flatten();
        }
        let s = self.savepoint?;
        self.run.completion.completed(s);
        self.run.completion.all_committed_through(s).then_some(s)
    }
}
