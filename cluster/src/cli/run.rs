//! `weir run`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use weir_engine::runtime::{read_hosts_file, ClusterConfig};
use weir_engine::stats::JobStats;
use weir_jobs::replay::split_source_option;
use weir_jobs::run::{run as run_plan, Durable, RunOptions};
use weir_operators::kafka::{EndMode, StartMode};

use super::progress::Progress;
use super::{load, CliError};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The job spec (YAML or JSON).
    spec: PathBuf,
    /// Worker threads in this process (default: the spec's `parallelism`, else 1).
    #[arg(long, short = 'w')]
    workers: Option<usize>,
    /// Number of processes of the computation.
    #[arg(long, default_value_t = 1)]
    processes: usize,
    /// This process's index, 0 .. processes-1.
    #[arg(long, default_value_t = 0)]
    process: usize,
    /// File listing host:port of every process, one per line, in process order. Without it,
    /// processes listen on 127.0.0.1:2101, 2102, ...
    #[arg(long)]
    hosts: Option<PathBuf>,
    /// Override a spec field: `--set sources.payments.events=1000` (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    set: Vec<String>,
    /// How long processes wait for each other at start.
    #[arg(long, default_value = "60s", value_parser = humantime_duration)]
    connect_timeout: Duration,
    /// Progress on stderr: auto (when it is a terminal), always or never.
    #[arg(long, default_value = "auto")]
    progress: String,
    /// Where Kafka sources start: `earliest`, `latest`, `group`, `timestamp:<RFC 3339>`,
    /// `offsets:0=42,1=17`; `SOURCE=MODE` for one source (repeatable).
    #[arg(long, value_name = "[SOURCE=]MODE")]
    start: Vec<String>,
    /// Where Kafka sources stop: `latest` (their end when the job starts) or
    /// `timestamp:<RFC 3339>`; `SOURCE=END` for one source (repeatable).
    #[arg(long, value_name = "[SOURCE=]END")]
    until: Vec<String>,
    /// Write every sink to its shadow instead (topic `<topic>.<SUFFIX>`, file
    /// `<path>.<SUFFIX>`), so a reprocessing run never touches live output.
    #[arg(long, value_name = "SUFFIX")]
    shadow: Option<String>,
    /// Resume from a checkpoint of the spec's `checkpoint.store`: `latest` (the newest intact
    /// one; a fresh start when there is none), `chk-<epoch>`, `<job>/chk-<epoch>` (another
    /// job's checkpoint or savepoint: its state and source positions, not its sinks'), or
    /// `latest,<checkpoint>` (the newest, or that one while there is none).
    #[arg(long, value_name = "latest|chk-EPOCH|JOB/chk-EPOCH")]
    restore: Option<String>,
    /// On SIGTERM or Ctrl-C, stop with a savepoint: sources stop reading (windows are not
    /// flushed), the next checkpoint becomes a savepoint kept by retention, sinks commit it,
    /// and the run ends; `--restore latest` continues from it. A second signal aborts.
    #[arg(long)]
    savepoint_on_stop: bool,
    /// Serve Prometheus metrics on `HOST:PORT` (`GET /metrics`), e.g. 127.0.0.1:9250.
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<String>,
    /// Restarts before this run (set by the worker that starts job processes; exported as
    /// `weir_job_restarts`).
    #[arg(long, default_value_t = 0, hide = true)]
    restarts: u64,
    /// Exit when the process that started this one is gone (set by `weir worker`, so a dead
    /// worker leaves no job processes behind).
    #[arg(long, hide = true)]
    exit_with_parent: bool,
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration like 30s: {e}"))
}

pub fn run(args: RunArgs) -> Result<(), CliError> {
    let mut plan = load(&args.spec, &args.set)?;
    for start in &args.start {
        let (source, mode) = split_source_option(start);
        let mode = StartMode::parse(mode).map_err(|e| CliError::Usage(format!("--start: {e}")))?;
        plan.set_start(source, mode).map_err(CliError::Usage)?;
    }
    for until in &args.until {
        let (source, end) = split_source_option(until);
        let end = EndMode::parse(end).map_err(|e| CliError::Usage(format!("--until: {e}")))?;
        plan.set_until(source, end).map_err(CliError::Usage)?;
    }
    if let Some(suffix) = &args.shadow {
        plan.shadow(suffix).map_err(CliError::Usage)?;
    }
    let workers = args.workers.unwrap_or(plan.parallelism);
    let hosts = match (&args.hosts, args.processes) {
        (Some(path), _) => read_hosts_file(path).map_err(|e| CliError::Usage(e.to_string()))?,
        (None, 1) => Vec::new(),
        (None, p) => (0..p).map(|i| format!("127.0.0.1:{}", 2101 + i)).collect(),
    };
    if args.hosts.is_some() && args.processes != 1 && hosts.len() != args.processes {
        return Err(CliError::Usage(format!(
            "--processes {} but the hosts file lists {} process(es)",
            args.processes,
            hosts.len()
        )));
    }
    let cluster = ClusterConfig {
        workers,
        process: args.process,
        hosts,
    };
    cluster
        .validate()
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let show = match args.progress.as_str() {
        "always" => true,
        "never" => false,
        "auto" => std::io::IsTerminal::is_terminal(&std::io::stderr()),
        other => {
            return Err(CliError::Usage(format!(
                "--progress {other}: expected auto, always or never"
            )))
        }
    };

    if args.savepoint_on_stop {
        if plan.checkpoint.is_none() {
            return Err(CliError::Usage(format!(
                "--savepoint-on-stop: job `{}` has no `checkpoint:` section to take a savepoint in",
                plan.name
            )));
        }
        super::signals::stop_with_savepoint_on_signal();
    }
    if plan.checkpoint.is_some() {
        super::signals::savepoint_on_sigusr1();
    }
    if args.exit_with_parent {
        exit_with_parent();
    }
    if cluster.processes() > 1 || workers > 1 {
        super::signals::exit_on_panic(cluster.process);
    }
    let stats = Arc::new(JobStats::new(&plan.name));
    stats.metrics().set_restarts(args.restarts);
    if let Some(addr) = &args.metrics_addr {
        let bound = crate::metrics_http::serve(addr, stats.clone()).map_err(CliError::Usage)?;
        tracing::info!("metrics on http://{bound}/metrics");
    }
    let progress = show.then(|| Progress::start(&plan.name, stats.clone()));
    let durable = Durable::for_plan(&plan, args.restore.as_deref()).map_err(CliError::Usage)?;
    if let Some(r) = durable.as_ref().and_then(|d| d.setup.run.restore.as_ref()) {
        eprintln!(
            "resuming job `{}` from checkpoint {} in {}",
            plan.name,
            r.epoch(),
            durable
                .as_ref()
                .map_or("", |d| d.setup.run.checkpoints.store().url())
        );
    }
    let options = RunOptions {
        cluster: cluster.clone(),
        connect_timeout: args.connect_timeout,
        state: None,
        durable,
    };
    let outcome = run_plan(Arc::new(plan), options, stats.clone());
    if let Some(p) = progress {
        p.stop();
    }
    let summary = outcome.map_err(|e| CliError::Failed(anyhow!(e)))?;
    let s = summary.stats;
    let secs = summary.elapsed.as_secs_f64().max(1e-9);
    let where_ = if cluster.processes() > 1 {
        format!(" (process {} of {})", cluster.process, cluster.processes())
    } else {
        String::new()
    };
    eprintln!(
        "done in {:.2}s{where_}: {} events in ({:.0}/s), {} rows out, {} late, {} dead letters",
        secs,
        s.records_in,
        s.records_in as f64 / secs,
        s.records_out,
        s.late,
        s.dead_letters
    );
    if let Some(savepoint) = summary.savepoint {
        eprintln!(
            "stopped with savepoint chk-{savepoint:020}: resume with --restore latest (or --restore chk-{savepoint:020})"
        );
    }
    Ok(())
}

/// Watches the parent process; exits (like a crash: sinks keep what their checkpoints
/// committed) when it is gone.
fn exit_with_parent() {
    let parent = std::os::unix::process::parent_id();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(500));
        if std::os::unix::process::parent_id() != parent {
            eprintln!("the worker that started this process is gone: exiting");
            std::process::exit(3);
        }
    });
}
