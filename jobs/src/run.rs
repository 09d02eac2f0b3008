//! Running a plan: one timely computation over this process's workers, until the bounded
//! sources end and every window has been flushed, or something fails.

use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_engine::event::Epoch;
use weir_engine::failure::Failures;
use weir_engine::runtime::{execute, ClusterConfig, RuntimeError};
use weir_engine::stats::{JobStats, StatsSnapshot};

use crate::build::{build, BuildContext, StateSetup};
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
}

impl RunOptions {
    /// One process with `workers` threads.
    pub fn local(workers: usize) -> Self {
        RunOptions {
            cluster: ClusterConfig::single(workers),
            connect_timeout: Duration::from_secs(60),
            state: None,
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
    let worker_failures = failures.clone();
    let result = execute(&options.cluster, options.connect_timeout, move |worker| {
        let probe = worker.dataflow::<Epoch, _, _>(|scope| build(scope, &plan, &ctx))?;
        while !probe.done() {
            if worker_failures.any() {
                for dataflow in worker.installed_dataflows() {
                    worker.drop_dataflow(dataflow);
                }
                return Err(worker_failures.first().unwrap_or_default());
            }
            worker.step_or_park(Some(Duration::from_millis(20)));
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
