//! `weir worker`: heartbeats to the coordinator and runs the job processes it is assigned
//! (`weir run` children: one timely process each, the hosts list from the coordinator),
//! reporting how they are and killing any the coordinator no longer wants. When the
//! coordinator cannot be reached the processes keep running; they are re-attached when it is
//! back.

mod process;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use crate::wire::{Heartbeat, HeartbeatReply};
use process::JobProcess;

/// `weir worker` options.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// The coordinator's URL.
    #[arg(
        long,
        env = "WEIR_COORDINATOR",
        default_value = "http://127.0.0.1:8080"
    )]
    pub coordinator: String,
    /// This worker's address (`HOST:PORT`): it serves `/healthz` there, and its job processes
    /// listen on HOST.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: String,
    /// Job processes it runs at most.
    #[arg(long, default_value_t = 2)]
    pub slots: usize,
    /// Ports its job processes may use, `FIRST-LAST` (default: the 200 after --listen's).
    #[arg(long, value_name = "FIRST-LAST")]
    pub ports: Option<String>,
    /// Where job specs, hosts files and process logs go (default `weir-worker-<port>`).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Its id (default: --listen).
    #[arg(long)]
    pub id: Option<String>,
    /// A file holding the coordinator's bearer token.
    #[arg(long, env = "WEIR_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Time between heartbeats.
    #[arg(long, default_value = "1s", value_parser = crate::cli::duration_arg)]
    pub heartbeat: Duration,
}

fn parse_ports(text: &str) -> Result<(u16, u16), String> {
    let (a, b) = text
        .split_once('-')
        .ok_or_else(|| format!("--ports {text}: expected FIRST-LAST, e.g. 9100-9299"))?;
    let (a, b): (u16, u16) = (
        a.trim()
            .parse()
            .map_err(|_| format!("--ports {text}: `{a}` is not a port"))?,
        b.trim()
            .parse()
            .map_err(|_| format!("--ports {text}: `{b}` is not a port"))?,
    );
    if a == 0 || b < a {
        return Err(format!("--ports {text}: expected 1 <= FIRST <= LAST"));
    }
    Ok((a, b))
}

/// Runs the worker until it is stopped (its job processes are killed with it).
pub fn run(args: WorkerArgs) -> Result<(), String> {
    let listener = std::net::TcpListener::bind(&args.listen)
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let ports = match &args.ports {
        Some(p) => parse_ports(p)?,
        None => (
            addr.port().saturating_add(1),
            addr.port().saturating_add(200),
        ),
    };
    let id = args.id.clone().unwrap_or_else(|| addr.to_string());
    let work_dir = args
        .work_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("weir-worker-{}", addr.port())));
    std::fs::create_dir_all(&work_dir)
        .map_err(|e| format!("--work-dir {}: {e}", work_dir.display()))?;
    // Job processes run inside it: their paths must not depend on where the worker started.
    let work_dir = std::fs::canonicalize(&work_dir)
        .map_err(|e| format!("--work-dir {}: {e}", work_dir.display()))?;
    let token = args
        .token_file
        .as_deref()
        .map(crate::coordinator::read_token)
        .transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
        let health = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok\n" }));
        tokio::spawn(async move {
            let _ = axum::serve(listener, health).await;
        });
        eprintln!(
            "weir worker {id} on {addr}: {} slot(s), ports {}-{}, coordinator {}",
            args.slots, ports.0, ports.1, args.coordinator
        );
        let mut agent = Agent {
            id,
            addr: addr.to_string(),
            slots: args.slots,
            ports,
            work_dir,
            processes: BTreeMap::new(),
            client: reqwest::Client::new(),
            url: format!(
                "{}/api/v1/workers/heartbeat",
                args.coordinator.trim_end_matches('/')
            ),
            token,
            unreachable_since: None,
        };
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .map_err(|e| e.to_string())?;
        loop {
            agent.beat().await;
            tokio::select! {
                _ = tokio::time::sleep(args.heartbeat) => {}
                _ = tokio::signal::ctrl_c() => break,
                _ = terminate.recv() => break,
            }
        }
        agent.kill_all();
        Ok(())
    })
}

type Key = (String, u32, usize);

struct Agent {
    id: String,
    addr: String,
    slots: usize,
    ports: (u16, u16),
    work_dir: PathBuf,
    processes: BTreeMap<Key, JobProcess>,
    client: reqwest::Client,
    url: String,
    token: Option<String>,
    unreachable_since: Option<std::time::Instant>,
}

impl Agent {
    /// One heartbeat: report, then do what the answer says.
    async fn beat(&mut self) {
        for p in self.processes.values_mut() {
            p.poll();
        }
        let hb = Heartbeat {
            worker: self.id.clone(),
            addr: self.addr.clone(),
            slots: self.slots,
            port_min: self.ports.0,
            port_max: self.ports.1,
            processes: self.processes.values().map(JobProcess::report).collect(),
        };
        let mut request = self
            .client
            .post(&self.url)
            .json(&hb)
            .timeout(Duration::from_secs(5));
        if let Some(t) = &self.token {
            request = request.bearer_auth(t);
        }
        let reply = match request.send().await {
            Ok(r) if r.status().is_success() => {
                r.json::<HeartbeatReply>().await.map_err(|e| e.to_string())
            }
            Ok(r) => {
                let status = r.status();
                Err(format!("{status}: {}", r.text().await.unwrap_or_default()))
            }
            Err(e) => Err(e.to_string()),
        };
        match reply {
            Ok(reply) => {
                if self.unreachable_since.take().is_some() {
                    eprintln!("coordinator {} reachable again", self.url);
                }
                self.apply(reply);
            }
            Err(e) => {
                // Keep running what runs: the coordinator re-attaches when it is back.
                if self.unreachable_since.is_none() {
                    eprintln!(
                        "heartbeat to {} failed: {e}; job processes keep running",
                        self.url
                    );
                    self.unreachable_since = Some(std::time::Instant::now());
                }
            }
        }
    }

    fn apply(&mut self, reply: HeartbeatReply) {
        let wanted: BTreeSet<Key> = reply
            .assignments
            .iter()
            .map(|a| (a.job.clone(), a.attempt, a.index))
            .collect();
        for a in reply.assignments {
            let key = (a.job.clone(), a.attempt, a.index);
            match self.processes.get_mut(&key) {
                Some(p) => p.follow(&a),
                None => match JobProcess::start(&self.work_dir, a) {
                    Ok(p) => {
                        self.processes.insert(key, p);
                    }
                    Err(e) => {
                        eprintln!("{e}");
                        self.processes
                            .insert(key.clone(), JobProcess::failed_to_start(key, e));
                    }
                },
            }
        }
        // What the coordinator no longer wants: killed, and forgotten once gone.
        self.processes.retain(|key, p| {
            if wanted.contains(key) {
                return true;
            }
            p.kill();
            p.poll();
            p.is_running()
        });
    }

    fn kill_all(&mut self) {
        for p in self.processes.values_mut() {
            p.kill();
        }
    }
}
