//! The CLI over the coordinator's API: `weir submit | jobs | status | stop | cancel | savepoint
//! | rescale | replay`. Tables for humans, `--json` for scripts.

use std::path::PathBuf;

use anyhow::anyhow;
use reqwest::Method;
use serde_json::Value;

use super::CliError;
use crate::wire::{CheckpointInfo, JobStatus, JobSummary, WorkerStatus};

/// Where the coordinator is and how to talk to it.
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// The coordinator's URL.
    #[arg(
        long,
        env = "WEIR_COORDINATOR",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    coordinator: String,
    /// A file holding the bearer token (or the token itself in WEIR_TOKEN).
    #[arg(long, env = "WEIR_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

/// The API commands.
#[derive(Debug, clap::Subcommand)]
pub enum ApiCommand {
    /// Submit a job spec to the coordinator; prints the job id.
    Submit {
        /// The job spec (YAML or JSON).
        spec: PathBuf,
        /// Only validate it (the coordinator returns the plan).
        #[arg(long)]
        dry_run: bool,
        /// Makes a retried submit return the same job.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// List jobs.
    Jobs,
    /// List the workers that have heartbeated.
    Workers,
    /// A job's state, placement, checkpoints, watermark, lag and errors.
    Status {
        /// The job id.
        id: String,
    },
    /// A job's complete checkpoints and savepoints.
    Checkpoints {
        /// The job id.
        id: String,
    },
    /// Stop a running job (`--savepoint`: stop with savepoint).
    Stop {
        /// The job id.
        id: String,
        /// Take a savepoint first.
        #[arg(long)]
        savepoint: bool,
    },
    /// Cancel a job (its processes are killed).
    Cancel {
        /// The job id.
        id: String,
    },
    /// Take a savepoint of a running job.
    Savepoint {
        /// The job id.
        id: String,
    },
    /// Rescale a running job to N processes (savepoint, then restart).
    Rescale {
        /// The job id.
        id: String,
        /// Processes.
        processes: usize,
    },
    /// Start a stopped or failed job again from its last checkpoint or savepoint (a new job).
    Resume {
        /// The job id.
        id: String,
    },
    /// Run a job again from a position or savepoint, into shadow sinks when asked.
    Replay {
        /// The job id.
        id: String,
        /// `earliest`, `timestamp:<RFC 3339>`, `offsets:0=42,1=17` or `savepoint:chk-<epoch>`.
        #[arg(long)]
        from: String,
        /// Write to shadow sinks with this suffix.
        #[arg(long)]
        shadow: Option<String>,
    },
}

/// Runs an API command.
pub fn run(conn: Connection, command: ApiCommand) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(anyhow!(e)))?;
    runtime.block_on(async move { execute(&conn, command).await })
}

async fn call(
    conn: &Connection,
    method: Method,
    path: &str,
    body: Option<(String, &str)>,
    headers: &[(&str, String)],
) -> Result<Value, CliError> {
    let url = format!("{}{path}", conn.coordinator.trim_end_matches('/'));
    let mut request = reqwest::Client::new().request(method.clone(), &url);
    let token = match (&conn.token_file, std::env::var("WEIR_TOKEN")) {
        (Some(f), _) => Some(crate::coordinator::read_token(f).map_err(CliError::Usage)?),
        (None, Ok(t)) if !t.trim().is_empty() => Some(t.trim().to_string()),
        _ => None,
    };
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    for (k, v) in headers {
        request = request.header(*k, v);
    }
    if let Some((body, content_type)) = body {
        request = request.header("content-type", content_type).body(body);
    }
    let response = request
        .send()
        .await
        .map_err(|e| CliError::Failed(anyhow!("{method} {url}: {e}")))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
    if status.is_success() {
        return Ok(value);
    }
    let mut message = value
        .get("error")
        .and_then(Value::as_str)
        .map_or(text.clone(), str::to_string);
    if let Some(problems) = value.get("problems").and_then(Value::as_array) {
        for p in problems {
            message.push_str(&format!(
                "\n  {}: {}",
                p.get("path").and_then(Value::as_str).unwrap_or(""),
                p.get("message").and_then(Value::as_str).unwrap_or("")
            ));
        }
    }
    let message = format!("{method} {url}: {status}: {message}");
    Err(if status.is_client_error() {
        CliError::Usage(message)
    } else {
        CliError::Failed(anyhow!(message))
    })
}

/// A command with a JSON body.
async fn send_json(
    conn: &Connection,
    method: Method,
    path: &str,
    body: Value,
) -> Result<Value, CliError> {
    call(
        conn,
        method,
        path,
        Some((body.to_string(), "application/json")),
        &[],
    )
    .await
}

fn decode<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, CliError> {
    serde_json::from_value(v).map_err(|e| CliError::Failed(anyhow!("unexpected answer: {e}")))
}

async fn execute(conn: &Connection, command: ApiCommand) -> Result<(), CliError> {
    let print_json =
        |v: &Value| println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    let jobs = "/api/v1/jobs";
    match command {
        ApiCommand::Submit {
            spec,
            dry_run,
            idempotency_key,
        } => {
            let text = std::fs::read_to_string(&spec).map_err(|e| {
                CliError::Usage(format!("cannot read spec {}: {e}", spec.display()))
            })?;
            let path = if dry_run {
                format!("{jobs}?dry_run=true")
            } else {
                jobs.to_string()
            };
            let headers: Vec<(&str, String)> = idempotency_key
                .map(|k| ("idempotency-key", k))
                .into_iter()
                .collect();
            let v = call(
                conn,
                Method::POST,
                &path,
                Some((text, "application/yaml")),
                &headers,
            )
            .await?;
            if conn.json {
                print_json(&v);
            } else if dry_run {
                print!("{}", v.get("plan").and_then(Value::as_str).unwrap_or(""));
            } else {
                println!("{}", v.get("id").and_then(Value::as_str).unwrap_or(""));
            }
        }
        ApiCommand::Jobs => {
            let v = call(conn, Method::GET, jobs, None, &[]).await?;
            if conn.json {
                print_json(&v);
            } else {
                let list: Vec<JobSummary> = decode(v)?;
                println!(
                    "{:<14} {:<28} {:<11} {:>5} {:>8}  SUBMITTED",
                    "ID", "NAME", "STATE", "PROCS", "RESTARTS"
                );
                for j in list {
                    println!(
                        "{:<14} {:<28} {:<11} {:>5} {:>8}  {}",
                        j.id, j.name, j.state, j.processes, j.restarts, j.submitted_at
                    );
                }
            }
        }
        ApiCommand::Workers => {
            let v = call(conn, Method::GET, "/api/v1/workers", None, &[]).await?;
            if conn.json {
                print_json(&v);
            } else {
                let list: Vec<WorkerStatus> = decode(v)?;
                println!(
                    "{:<24} {:<24} {:>5} {:>5}  ALIVE",
                    "ID", "ADDRESS", "SLOTS", "USED"
                );
                for w in list {
                    println!(
                        "{:<24} {:<24} {:>5} {:>5}  {}",
                        w.id,
                        w.addr,
                        w.slots,
                        w.used,
                        if w.alive {
                            "yes".to_string()
                        } else {
                            format!("no (silent {} ms)", w.last_heartbeat_ms)
                        }
                    );
                }
            }
        }
        ApiCommand::Status { id } => {
            let v = call(conn, Method::GET, &format!("{jobs}/{id}"), None, &[]).await?;
            if conn.json {
                print_json(&v);
            } else {
                print_status(&decode(v)?);
            }
        }
        ApiCommand::Checkpoints { id } => {
            let v = call(
                conn,
                Method::GET,
                &format!("{jobs}/{id}/checkpoints"),
                None,
                &[],
            )
            .await?;
            if conn.json {
                print_json(&v);
            } else {
                let list: Vec<CheckpointInfo> = decode(v)?;
                println!(
                    "{:<26} {:<24} {:>12} {:>6}  SAVEPOINT",
                    "ID", "COMPLETED", "BYTES", "FILES"
                );
                for c in list {
                    println!(
                        "{:<26} {:<24} {:>12} {:>6}  {}",
                        c.id,
                        c.completed_at,
                        c.bytes,
                        c.files,
                        c.savepoint.unwrap_or_default()
                    );
                }
            }
        }
        ApiCommand::Stop { id, savepoint } => {
            let v = send_json(
                conn,
                Method::POST,
                &format!("{jobs}/{id}/stop"),
                serde_json::json!({ "savepoint": savepoint }),
            )
            .await?;
            done(
                conn,
                &v,
                &format!(
                    "job {id}: stopping{}",
                    if savepoint { " with a savepoint" } else { "" }
                ),
            );
        }
        ApiCommand::Cancel { id } => {
            let v = call(conn, Method::DELETE, &format!("{jobs}/{id}"), None, &[]).await?;
            done(conn, &v, &format!("job {id}: cancelling"));
        }
        ApiCommand::Savepoint { id } => {
            let v = call(
                conn,
                Method::POST,
                &format!("{jobs}/{id}/savepoints"),
                None,
                &[],
            )
            .await?;
            done(
                conn,
                &v,
                &format!("job {id}: savepoint requested (see `weir checkpoints {id}`)"),
            );
        }
        ApiCommand::Rescale { id, processes } => {
            let v = send_json(
                conn,
                Method::PATCH,
                &format!("{jobs}/{id}"),
                serde_json::json!({ "parallelism": processes }),
            )
            .await?;
            done(
                conn,
                &v,
                &format!("job {id}: rescaling to {processes} process(es)"),
            );
        }
        ApiCommand::Resume { id } => {
            let v = send_json(
                conn,
                Method::POST,
                &format!("{jobs}/{id}/resume"),
                serde_json::json!({}),
            )
            .await?;
            if conn.json {
                print_json(&v);
            } else {
                let new = v.get("id").and_then(Value::as_str).unwrap_or("");
                println!("{new}");
                eprintln!("job {id}: resumed from its last checkpoint as job {new}");
            }
        }
        ApiCommand::Replay { id, from, shadow } => {
            let v = send_json(
                conn,
                Method::POST,
                &format!("{jobs}/{id}/replay"),
                serde_json::json!({ "from": from, "shadow": shadow }),
            )
            .await?;
            if conn.json {
                print_json(&v);
            } else {
                println!("{}", v.get("id").and_then(Value::as_str).unwrap_or(""));
            }
        }
    }
    Ok(())
}

fn done(conn: &Connection, v: &Value, message: &str) {
    if conn.json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        println!("{message}");
    }
}

fn print_status(s: &JobStatus) {
    let mut out = String::new();
    status_text(s, &mut out);
    let _ = std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes());
}

fn status_text(s: &JobStatus, out: &mut String) {
    use std::fmt::Write;
    macro_rules! println {
        ($($t:tt)*) => { let _ = writeln!(out, $($t)*); };
    }
    println!("job        {} ({})", s.id, s.name);
    println!("state      {}", s.state);
    println!(
        "processes  {} × {} worker(s); run {}, {} restart(s)",
        s.processes, s.workers_per_process, s.attempt, s.restarts
    );
    for p in &s.placement {
        println!(
            "  process {} on {} (data {}, metrics {}): {}",
            p.index, p.worker, p.data_addr, p.metrics_addr, p.state
        );
    }
    if let Some(c) = &s.last_checkpoint {
        println!(
            "checkpoint {} at {} ({} bytes)",
            c.id, c.completed_at, c.bytes
        );
    }
    if let Some(w) = &s.watermark {
        println!("watermark  {w}");
    }
    if let Some(l) = s.lag {
        println!("lag        {l} record(s)");
    }
    if let (Some(i), Some(o)) = (s.records_in, s.records_out) {
        println!("records    {i} in, {o} out");
    }
    if let Some(n) = s.records_lost {
        println!("lost       {n} Kafka record(s) deleted by the broker before they were read");
    }
    if let Some(sp) = &s.savepoint {
        println!("savepoint  {sp}");
    }
    for e in &s.errors {
        println!("error      {e}");
    }
}
