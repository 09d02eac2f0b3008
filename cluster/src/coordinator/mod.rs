//! `weir coordinator`: the HTTP/JSON API (axum) over a durable job store, the cluster of
//! workers that heartbeat to it, and the loop that places, watches and restarts jobs.

mod api;
mod cluster;
mod job;
mod metrics;
pub mod observe;
mod store;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use api::router;
pub use cluster::{Cluster, Timings};
pub use job::{AfterStop, JobRecord, Refused};
pub use store::JobStore;

use crate::wire::{now_ms, rfc3339_ms, JobState, JobStatus, JobSummary, ReplayRequest};

/// `weir coordinator` options.
#[derive(Debug, Clone, clap::Args)]
pub struct CoordinatorArgs {
    /// Where the API listens (`HOST:PORT`).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Where the job store lives (created if missing).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// A file holding the bearer token every API call (but `/healthz` and `/metrics`) must
    /// carry; without it the API is open.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// A worker silent for this long is dead and its jobs restart elsewhere.
    #[arg(long, default_value = "10s", value_parser = crate::cli::duration_arg)]
    pub worker_timeout: Duration,
}

/// The coordinator: shared by every request handler and the scheduling loop.
pub struct Coordinator {
    cluster: Mutex<Cluster>,
    store: JobStore,
    token: Option<String>,
    metrics: metrics::CoordinatorMetrics,
    client: reqwest::Client,
    /// The address the API is served on (for Prometheus service discovery).
    pub addr: Mutex<String>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator").finish_non_exhaustive()
    }
}

/// Reads a token file (trimmed); an empty file is an error, not an open API.
pub fn read_token(path: &std::path::Path) -> Result<String, String> {
    let token =
        std::fs::read_to_string(path).map_err(|e| format!("token file {}: {e}", path.display()))?;
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(format!("token file {} is empty", path.display()));
    }
    Ok(token)
}

impl Coordinator {
    /// A coordinator over the jobs of `store`.
    pub async fn open(
        store: JobStore,
        token: Option<String>,
        timings: Timings,
    ) -> Result<Arc<Self>, String> {
        let jobs = store.load().await?;
        let live = jobs.iter().filter(|j| !j.state.is_terminal()).count();
        tracing::info!("job store: {} job(s), {live} not finished", jobs.len());
        Ok(Arc::new(Coordinator {
            cluster: Mutex::new(Cluster::new(jobs, timings)),
            store,
            token,
            metrics: metrics::CoordinatorMetrics::new(),
            client: reqwest::Client::new(),
            addr: Mutex::new(String::new()),
        }))
    }

    fn cluster(&self) -> std::sync::MutexGuard<'_, Cluster> {
        self.cluster.lock().expect("cluster lock")
    }

    /// Runs `change` on the cluster, then saves every job it changed before returning.
    async fn change<T>(
        &self,
        change: impl FnOnce(&mut Cluster) -> Result<T, Refused>,
    ) -> Result<T, ApiFailure> {
        let (out, dirty) = {
            let mut cluster = self.cluster();
            let out = change(&mut cluster);
            (out, cluster.take_dirty())
        };
        for job in &dirty {
            self.store.save(job).await.map_err(ApiFailure::Internal)?;
        }
        out.map_err(ApiFailure::from)
    }

    /// One round of the scheduling loop (placing, watching, restarting), saved.
    pub async fn tick(self: &Arc<Self>) -> Result<(), String> {
        let this = self.clone();
        // Finishing a stop reads the checkpoint store: blocking work.
        let dirty = tokio::task::spawn_blocking(move || {
            let mut cluster = this.cluster();
            cluster.tick();
            cluster.take_dirty()
        })
        .await
        .map_err(|e| e.to_string())?;
        for job in &dirty {
            self.store.save(job).await?;
        }
        Ok(())
    }

    /// Validates a spec and stores it as a new job; the same idempotency key gives the same
    /// job back (`false`: not created now).
    pub async fn submit(
        &self,
        text: &str,
        idempotency_key: Option<String>,
    ) -> Result<(String, bool), ApiFailure> {
        if let Some(key) = &idempotency_key {
            let cluster = self.cluster();
            if let Some(j) = cluster
                .jobs
                .values()
                .find(|j| j.idempotency_key.as_ref() == Some(key))
            {
                if j.spec != text {
                    return Err(ApiFailure::Refused(Refused::Conflict(format!(
                        "Idempotency-Key {key} was used for job {} with another spec",
                        j.id
                    ))));
                }
                return Ok((j.id.clone(), false));
            }
        }
        let plan = validate(text)?;
        let record = new_record(text, &plan, idempotency_key, None, Vec::new(), None);
        let id = self
            .add(
                record,
                "stop it first (its checkpoints and sinks would be shared)",
            )
            .await?;
        Ok((id, true))
    }

    /// Stores a new job, unless a job of the same name has not ended (`hint`: what to do).
    async fn add(&self, record: JobRecord, hint: &str) -> Result<String, ApiFailure> {
        let id = record.id.clone();
        self.change(|cluster| {
            if let Some(other) = cluster
                .jobs
                .values()
                .find(|j| j.name == record.name && !j.state.is_terminal())
            {
                return Err(Refused::Conflict(format!(
                    "job `{}` already runs as {} ({}): {hint}",
                    other.name, other.id, other.state
                )));
            }
            let mut record = record;
            record.seq = cluster.next_seq();
            cluster.add(record);
            Ok(())
        })
        .await?;
        Ok(id)
    }

    /// Every job, in submission order.
    pub fn list(&self) -> Vec<JobSummary> {
        let cluster = self.cluster();
        let mut jobs: Vec<&JobRecord> = cluster.jobs.values().collect();
        jobs.sort_by_key(|j| j.seq);
        jobs.into_iter()
            .map(|j| JobSummary {
                id: j.id.clone(),
                name: j.name.clone(),
                state: j.state,
                processes: j.processes,
                restarts: j.restarts,
                submitted_at: rfc3339_ms(j.submitted_ms),
            })
            .collect()
    }

    /// A job's status: its record, where it runs, its last checkpoint and its processes'
    /// figures.
    pub async fn status(&self, id: &str) -> Result<JobStatus, ApiFailure> {
        let (job, placement) = {
            let cluster = self.cluster();
            let job = cluster
                .jobs
                .get(id)
                .cloned()
                .ok_or_else(|| ApiFailure::Refused(Refused::NotFound(id.to_string())))?;
            let placement = cluster.process_status(&job);
            (job, placement)
        };
        let last_checkpoint = match &job.checkpoint_store {
            Some(store) => {
                let (store, name) = (store.clone(), job.name.clone());
                tokio::task::spawn_blocking(move || observe::checkpoints(&store, &name))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .and_then(|mut c| c.pop())
            }
            None => None,
        };
        let mut scraped: Option<observe::Scraped> = None;
        for p in placement.iter().filter(|p| p.state == "running") {
            if let Some(s) = observe::scrape(&self.client, &p.metrics_addr).await {
                scraped = Some(scraped.map_or(s, |t| t.merge(s)));
            }
        }
        Ok(JobStatus {
            id: job.id.clone(),
            name: job.name.clone(),
            state: job.state,
            processes: job.processes,
            workers_per_process: job.workers,
            attempt: job.attempt,
            restarts: job.restarts,
            placement,
            last_checkpoint,
            watermark: scraped
                .and_then(|s| s.watermark)
                .map(|w| rfc3339_ms((w * 1000.0) as u64)),
            lag: scraped.and_then(|s| s.lag),
            records_in: scraped.map(|s| s.records_in),
            records_out: scraped.map(|s| s.records_out),
            records_lost: scraped.map(|s| s.records_lost).filter(|n| *n > 0),
            errors: job.errors.clone(),
            savepoint: job.savepoint.clone(),
            replay_of: job.replay_of.clone(),
            submitted_at: rfc3339_ms(job.submitted_ms),
            history: job.history.clone(),
        })
    }

    /// A job's complete checkpoints, oldest first.
    pub async fn checkpoints(
        &self,
        id: &str,
    ) -> Result<Vec<crate::wire::CheckpointInfo>, ApiFailure> {
        let job = self.record(id)?;
        let Some(store) = job.checkpoint_store else {
            return Ok(Vec::new());
        };
        tokio::task::spawn_blocking(move || observe::checkpoints(&store, &job.name))
            .await
            .map_err(|e| ApiFailure::Internal(e.to_string()))?
            .map_err(ApiFailure::Internal)
    }

    fn record(&self, id: &str) -> Result<JobRecord, ApiFailure> {
        self.cluster()
            .jobs
            .get(id)
            .cloned()
            .ok_or_else(|| ApiFailure::Refused(Refused::NotFound(id.to_string())))
    }

    /// Stops a running job (with a savepoint when asked), or cancels it.
    pub async fn stop(
        &self,
        id: &str,
        savepoint: bool,
        after: AfterStop,
    ) -> Result<(), ApiFailure> {
        self.change(|c| c.job_mut(id)?.request_stop(savepoint, after))
            .await
    }

    /// Takes a savepoint of a running job without stopping it.
    pub async fn savepoint(&self, id: &str) -> Result<(), ApiFailure> {
        self.change(|c| {
            let job = c.job_mut(id)?;
            if job.checkpoint_store.is_none() {
                return Err(Refused::Conflict(format!(
                    "job {id} has no `checkpoint:` section: it cannot take savepoints"
                )));
            }
            if job.state != JobState::Running {
                return Err(Refused::Conflict(format!(
                    "job {id} is {}: savepoints are taken of running jobs",
                    job.state
                )));
            }
            job.savepoints += 1;
            Ok(())
        })
        .await
    }

    /// Rescales a running job: stop with a savepoint, then run again at `processes`.
    pub async fn rescale(&self, id: &str, processes: usize) -> Result<(), ApiFailure> {
        if processes == 0 {
            return Err(ApiFailure::Refused(Refused::Invalid(
                "parallelism must be at least 1".into(),
            )));
        }
        self.change(|c| {
            let job = c.job_mut(id)?;
            if job.state == JobState::Running && job.processes == processes {
                return Err(Refused::Conflict(format!(
                    "job {id} already runs {processes} process(es)"
                )));
            }
            job.request_stop(true, AfterStop::Rescale(processes))
        })
        .await
    }

    /// A stopped or failed job started again from its last checkpoint or savepoint (a stop
    /// with savepoint leaves one): a new job of the same spec and name, whose sinks carry on
    /// where the checkpoint left them.
    pub async fn resume(&self, id: &str) -> Result<String, ApiFailure> {
        let original = self.record(id)?;
        if !matches!(original.state, JobState::Stopped | JobState::Failed) {
            return Err(ApiFailure::Refused(Refused::Conflict(format!(
                "job {id} is {}: only a stopped or failed job can be resumed",
                original.state
            ))));
        }
        if original.checkpoint_store.is_none() {
            return Err(ApiFailure::Refused(Refused::Invalid(format!(
                "job {id} has no `checkpoint:` section: there is nothing to resume from \
                 (submit it again, or replay it from a source position)"
            ))));
        }
        let req = ReplayRequest {
            from: "savepoint:latest".into(),
            shadow: None,
        };
        self.replay(id, req).await
    }

    /// A new run of job `id` from `from`, into shadow sinks when asked: a new job.
    pub async fn replay(&self, id: &str, req: ReplayRequest) -> Result<String, ApiFailure> {
        let original = self.record(id)?;
        let invalid = |m: String| ApiFailure::Refused(Refused::Invalid(m));
        let mut args = Vec::new();
        let mut restore = None;
        match req.from.as_str() {
            "" => return Err(invalid("replay: `from` is required".into())),
            from if from.starts_with("savepoint:") => {
                let chk = from.trim_start_matches("savepoint:").to_string();
                if original.checkpoint_store.is_none() {
                    return Err(invalid(format!("replay: job {id} has no checkpoints")));
                }
                restore = Some(chk);
            }
            from => {
                let (_, mode) = weir_jobs::replay::split_source_option(from);
                weir_operators::kafka::StartMode::parse(mode)
                    .map_err(|e| invalid(format!("replay: from: {e}")))?;
                args.extend(["--start".to_string(), from.to_string()]);
            }
        }
        let mut plan = validate(&original.spec)?;
        if let (Some(chk), Some(_)) = (&mut restore, &req.shadow) {
            // The shadow is a job of its own name: it restores the original's savepoint.
            *chk = format!("{}/{chk}", plan.name);
        }
        if let Some(suffix) = &req.shadow {
            plan.shadow(suffix)
                .map_err(|e| invalid(format!("replay: {e}")))?;
            args.extend(["--shadow".to_string(), suffix.clone()]);
        }
        for (option, value) in args.chunks(2).map(|c| (&c[0], &c[1])) {
            if option == "--start" {
                let (source, mode) = weir_jobs::replay::split_source_option(value);
                let mode = weir_operators::kafka::StartMode::parse(mode)
                    .map_err(|e| invalid(format!("replay: from: {e}")))?;
                plan.set_start(source, mode)
                    .map_err(|e| invalid(format!("replay: {e}")))?;
            }
        }
        let record = new_record(
            &original.spec,
            &plan,
            None,
            Some(original.id.clone()),
            args,
            restore,
        );
        self.add(record, "replay into shadow sinks, or stop it first")
            .await
    }
}

/// Checks a spec as `weir validate` does, and what a cluster needs on top: stores every
/// process can reach.
fn validate(text: &str) -> Result<weir_jobs::Plan, ApiFailure> {
    let plan = weir_jobs::load_spec(text, &[]).map_err(ApiFailure::Spec)?;
    // As written: `load_spec` resolves a plain path against this process's directory.
    let written = serde_norway::from_str::<serde_norway::Value>(text)
        .ok()
        .and_then(|doc| {
            doc.get("checkpoint")?
                .get("store")?
                .as_str()
                .map(str::to_string)
        });
    if let (Some(c), Some(store)) = (&plan.checkpoint, written) {
        if !store.starts_with('/') && !store.contains("://") {
            return Err(ApiFailure::Spec(weir_jobs::SpecErrors(vec![
                weir_jobs::SpecError::new(
                    "checkpoint.store",
                    format!(
                        "`{store}` is relative: a job run by the coordinator needs a store \
                         every process reaches (an absolute path or file:///... on shared \
                         disk, or hdfs://...); it resolves to {} on the coordinator only",
                        c.store
                    ),
                ),
            ])));
        }
    }
    Ok(plan)
}

fn new_record(
    text: &str,
    plan: &weir_jobs::Plan,
    idempotency_key: Option<String>,
    replay_of: Option<String>,
    args: Vec<String>,
    restore: Option<String>,
) -> JobRecord {
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    JobRecord {
        id,
        seq: 0,
        name: plan.name.clone(),
        spec: text.to_string(),
        state: JobState::Submitted,
        processes: plan.processes,
        workers: plan.parallelism,
        checkpoint_store: plan.checkpoint.as_ref().map(|c| c.store.clone()),
        restart: (
            plan.restart.max_attempts,
            plan.restart.backoff.as_millis() as u64,
            plan.restart.max_backoff.as_millis() as u64,
        ),
        attempt: 0,
        restarts: 0,
        failures_in_a_row: 0,
        args,
        restore_first: restore.clone(),
        restore_next: restore,
        placement: Vec::new(),
        run_args: Vec::new(),
        stop: None,
        after_stop: AfterStop::Stop,
        savepoints: 0,
        not_before_ms: 0,
        placed_ms: 0,
        errors: Vec::new(),
        savepoint: None,
        replay_of,
        idempotency_key,
        submitted_ms: now_ms(),
        history: Vec::new(),
    }
}

/// Why an API call failed, mapped to a status code by the router.
#[derive(Debug)]
pub enum ApiFailure {
    /// 404 / 409 / 400.
    Refused(Refused),
    /// 400 with every problem of the spec.
    Spec(weir_jobs::SpecErrors),
    /// 500: the job store failed.
    Internal(String),
}

impl From<Refused> for ApiFailure {
    fn from(r: Refused) -> Self {
        ApiFailure::Refused(r)
    }
}

/// Runs the coordinator until the process is stopped.
pub fn run(args: CoordinatorArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let token = args.token_file.as_deref().map(read_token).transpose()?;
        let store = JobStore::open(&args.data_dir).await?;
        let timings = Timings {
            worker_timeout: args.worker_timeout,
        };
        let coordinator = Coordinator::open(store, token, timings).await?;
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|e| format!("--listen {}: {e}", args.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        *coordinator.addr.lock().expect("addr") = addr.to_string();
        eprintln!(
            "weir coordinator listening on http://{addr} (data in {})",
            args.data_dir.display()
        );
        let ticker = coordinator.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = ticker.tick().await {
                    tracing::error!("coordinator: {e}");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        axum::serve(listener, router(coordinator))
            .await
            .map_err(|e| format!("coordinator API: {e}"))
    })
}
