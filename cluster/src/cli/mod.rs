//! The command line.

mod client;
mod diff;
mod gen;
mod progress;
mod run;
mod signals;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use weir_jobs::SpecErrors;

/// weir: a distributed streaming dataflow engine.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    connection: client::Connection,
}

/// Parses a duration like `30s` or `1m` (for clap).
pub fn duration_arg(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration like 30s: {e}"))
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a job spec until its bounded sources end (or forever, for endless ones).
    Run(run::RunArgs),
    /// Check a job spec and print its plan, or every error with its path.
    Validate(ValidateArgs),
    /// Write a synthetic stream (clicks, iot, payments, device_profiles) as JSON lines to a
    /// file or a Kafka topic, or replay a JSON-lines file into a topic.
    Gen(gen::GenArgs),
    /// Compare two outputs (files or kafka://HOST:PORT/TOPIC) as sets of rows; exit 1 when
    /// they differ.
    Diff(diff::DiffArgs),
    /// Run the coordinator: the HTTP API, the job store, placement and restarts.
    Coordinator(crate::coordinator::CoordinatorArgs),
    /// Run a worker: heartbeats to the coordinator and runs the job processes it is given.
    Worker(crate::worker::WorkerArgs),
    /// Commands over the coordinator's API.
    #[command(flatten)]
    Api(client::ApiCommand),
}

#[derive(Debug, clap::Args)]
struct ValidateArgs {
    /// The job spec (YAML or JSON).
    spec: PathBuf,
    /// Override a spec field: `--set sources.payments.events=1000` (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    set: Vec<String>,
}

/// How a command failed: bad input from the user (exit 2) or a failed run (exit 1).
pub enum CliError {
    /// Bad arguments or spec.
    Usage(String),
    /// The work itself failed.
    Failed(anyhow::Error),
    /// `weir diff` found differences (already printed).
    Different,
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::Failed(e)
    }
}

/// Reads and validates a spec file, reporting every error with its path.
fn load(spec: &PathBuf, set: &[String]) -> Result<weir_jobs::Plan, CliError> {
    let text = std::fs::read_to_string(spec)
        .map_err(|e| CliError::Usage(format!("cannot read spec {}: {e}", spec.display())))?;
    weir_jobs::load_spec(&text, set).map_err(|errors: SpecErrors| {
        let lines: Vec<String> = errors.errors().iter().map(|e| format!("  {e}")).collect();
        CliError::Usage(format!(
            "invalid spec {} ({} problem{}):\n{}",
            spec.display(),
            lines.len(),
            if lines.len() == 1 { "" } else { "s" },
            lines.join("\n")
        ))
    })
}

/// Runs the parsed command.
pub fn dispatch(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Validate(args) => {
            let plan = load(&args.spec, &args.set)?;
            print!("{plan}");
            Ok(())
        }
        Command::Gen(args) => gen::gen(args),
        Command::Diff(args) => diff::diff(args),
        Command::Coordinator(args) => crate::coordinator::run(args).map_err(CliError::Usage),
        Command::Worker(args) => crate::worker::run(args).map_err(CliError::Usage),
        Command::Api(command) => client::run(cli.connection, command),
    }
}
