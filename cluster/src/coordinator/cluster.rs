//! The coordinator's view of the cluster: workers and their heartbeats, where every job's
//! processes run, and the loop that moves jobs on — placing them, noticing failed processes
//! and silent workers, restarting from the last checkpoint with backoff, finishing stops.
//!
//! Workers pull: each heartbeat reports the job processes a worker has and is answered with the
//! ones it must run; anything else it kills. So a restarted coordinator re-attaches to running
//! jobs from its store and the next heartbeats, and a worker never runs a process the
//! coordinator has given up on.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::wire::{
    now_ms, Assignment, Heartbeat, HeartbeatReply, JobState, ProcessReport, ProcessState,
    ProcessStatus, StopKind, WorkerStatus, PEER_LOST,
};

use super::job::{AfterStop, JobRecord, Placed, Refused};

/// How patient the coordinator is.
#[derive(Clone, Copy, Debug)]
pub struct Timings {
    /// A worker silent for this long is dead; its processes have failed.
    pub worker_timeout: Duration,
}

#[derive(Debug)]
struct WorkerEntry {
    addr: String,
    host: String,
    slots: usize,
    ports: (u16, u16),
    last: Instant,
}

/// Workers, reports and jobs.
#[derive(Debug)]
pub struct Cluster {
    /// Every job by id.
    pub jobs: BTreeMap<String, JobRecord>,
    workers: BTreeMap<String, WorkerEntry>,
    /// The last report of every job process: `(job, attempt, index)` → state and worker.
    reports: HashMap<(String, u32, usize), (ProcessState, String)>,
    started: Instant,
    timings: Timings,
    /// Jobs changed since the store last saw them.
    dirty: BTreeSet<String>,
    next_seq: u64,
    /// Per worker, where the search for a free port starts next: ports go round the worker's
    /// range, so a restart does not take again a port that something else now holds.
    next_port: HashMap<String, u16>,
}

impl Cluster {
    /// A cluster knowing `jobs` (from the store), no workers yet.
    pub fn new(jobs: Vec<JobRecord>, timings: Timings) -> Self {
        let next_seq = jobs.iter().map(|j| j.seq).max().unwrap_or(0) + 1;
        Cluster {
            jobs: jobs.into_iter().map(|j| (j.id.clone(), j)).collect(),
            workers: BTreeMap::new(),
            reports: HashMap::new(),
            started: Instant::now(),
            timings,
            dirty: BTreeSet::new(),
            next_seq,
            next_port: HashMap::new(),
        }
    }

    /// The next submission number.
    pub fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq - 1
    }

    /// Adds a new job (already validated).
    pub fn add(&mut self, job: JobRecord) {
        self.dirty.insert(job.id.clone());
        self.jobs.insert(job.id.clone(), job);
    }

    /// The job `id`, for a change that will be saved.
    pub fn job_mut(&mut self, id: &str) -> Result<&mut JobRecord, Refused> {
        self.dirty.insert(id.to_string());
        self.jobs
            .get_mut(id)
            .ok_or_else(|| Refused::NotFound(id.to_string()))
    }

    /// Jobs changed since the last call, to save.
    pub fn take_dirty(&mut self) -> Vec<JobRecord> {
        std::mem::take(&mut self.dirty)
            .into_iter()
            .filter_map(|id| self.jobs.get(&id).cloned())
            .collect()
    }

    fn alive(&self, worker: &str) -> bool {
        self.workers
            .get(worker)
            .is_some_and(|w| w.last.elapsed() < self.timings.worker_timeout)
    }

    /// A worker's heartbeat: remembered, and answered with what it must run.
    pub fn heartbeat(&mut self, hb: Heartbeat) -> HeartbeatReply {
        let host = hb
            .addr
            .rsplit_once(':')
            .map_or(hb.addr.as_str(), |(h, _)| h)
            .to_string();
        if !self.workers.contains_key(&hb.worker) {
            tracing::info!(
                "worker {} registered ({}, {} slots)",
                hb.worker,
                hb.addr,
                hb.slots
            );
        }
        self.workers.insert(
            hb.worker.clone(),
            WorkerEntry {
                addr: hb.addr.clone(),
                host,
                slots: hb.slots,
                ports: (hb.port_min, hb.port_max),
                last: Instant::now(),
            },
        );
        self.reports.retain(|_, (_, w)| *w != hb.worker);
        for ProcessReport {
            job,
            attempt,
            index,
            state,
        } in hb.processes
        {
            self.reports
                .insert((job, attempt, index), (state, hb.worker.clone()));
        }
        HeartbeatReply {
            assignments: self.assignments(&hb.worker),
        }
    }

    /// Every process `worker` must run.
    fn assignments(&self, worker: &str) -> Vec<Assignment> {
        let mut out = Vec::new();
        for job in self.jobs.values() {
            if !matches!(job.state, JobState::Running | JobState::Stopping) {
                continue;
            }
            let hosts: Vec<String> = job.placement.iter().map(|p| p.data_addr.clone()).collect();
            for (index, placed) in job.placement.iter().enumerate() {
                if placed.worker != worker {
                    continue;
                }
                out.push(Assignment {
                    job: job.id.clone(),
                    name: job.name.clone(),
                    attempt: job.attempt,
                    index,
                    hosts: hosts.clone(),
                    workers: job.workers,
                    spec: job.spec.clone(),
                    args: job.run_args.clone(),
                    metrics_addr: placed.metrics_addr.clone(),
                    restarts: job.restarts,
                    stop: if job.state == JobState::Stopping {
                        job.stop
                    } else {
                        None
                    },
                    savepoints: job.savepoints,
                });
            }
        }
        out
    }

    /// Workers for `GET /api/v1/workers`.
    pub fn workers(&self) -> Vec<WorkerStatus> {
        self.workers
            .iter()
            .map(|(id, w)| WorkerStatus {
                id: id.clone(),
                addr: w.addr.clone(),
                slots: w.slots,
                used: self.used_slots(id),
                alive: self.alive(id),
                last_heartbeat_ms: w.last.elapsed().as_millis() as u64,
            })
            .collect()
    }

    /// Every process's metrics address (Prometheus service discovery): `(job, process,
    /// address)`.
    pub fn metrics_targets(&self) -> Vec<(&JobRecord, usize, String)> {
        let mut out = Vec::new();
        for job in self.jobs.values() {
            if matches!(job.state, JobState::Running | JobState::Stopping) {
                for (i, p) in job.placement.iter().enumerate() {
                    out.push((job, i, p.metrics_addr.clone()));
                }
            }
        }
        out
    }

    /// The processes of `job` with what their workers last said.
    pub fn process_status(&self, job: &JobRecord) -> Vec<ProcessStatus> {
        job.placement
            .iter()
            .enumerate()
            .map(|(index, p)| {
                let state = match self.reports.get(&(job.id.clone(), job.attempt, index)) {
                    Some((ProcessState::Running, _)) => "running".to_string(),
                    Some((ProcessState::Exited { code, signal, .. }, _)) => match (code, signal) {
                        (Some(c), _) => format!("exited {c}"),
                        (None, Some(s)) => format!("killed by signal {s}"),
                        (None, None) => "killed".to_string(),
                    },
                    None => "starting".to_string(),
                };
                ProcessStatus {
                    index,
                    worker: p.worker.clone(),
                    data_addr: p.data_addr.clone(),
                    metrics_addr: p.metrics_addr.clone(),
                    state,
                }
            })
            .collect()
    }

    fn used_slots(&self, worker: &str) -> usize {
        self.jobs
            .values()
            .filter(|j| matches!(j.state, JobState::Running | JobState::Stopping))
            .flat_map(|j| j.placement.iter())
            .filter(|p| p.worker == worker)
            .count()
    }

    /// Ports in use on `worker` by placed processes.
    fn used_ports(&self, worker: &str) -> BTreeSet<u16> {
        self.jobs
            .values()
            .filter(|j| !j.state.is_terminal())
            .flat_map(|j| j.placement.iter())
            .filter(|p| p.worker == worker)
            .flat_map(|p| [&p.data_addr, &p.metrics_addr])
            .filter_map(|a| a.rsplit_once(':').and_then(|(_, port)| port.parse().ok()))
            .collect()
    }

    /// Places `processes` processes on live workers, spreading them: each goes to the worker
    /// with the most free slots. `Err` says what is missing.
    fn place(&mut self, processes: usize) -> Result<Vec<Placed>, String> {
        let mut free: Vec<(String, usize, BTreeSet<u16>)> = self
            .workers
            .iter()
            .filter(|(id, _)| self.alive(id))
            .map(|(id, w)| {
                (
                    id.clone(),
                    w.slots.saturating_sub(self.used_slots(id)),
                    self.used_ports(id),
                )
            })
            .collect();
        let total: usize = free.iter().map(|f| f.1).sum();
        if total < processes {
            return Err(format!(
                "waiting for {processes} free slot(s); {} live worker(s) have {total}",
                free.len()
            ));
        }
        let mut placed = Vec::with_capacity(processes);
        for _ in 0..processes {
            let (id, slots, ports) = free
                .iter_mut()
                .filter(|f| f.1 > 0)
                .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
                .expect("enough free slots");
            *slots -= 1;
            let w = &self.workers[id.as_str()];
            let (first, last) = w.ports;
            let next = self.next_port.entry(id.clone()).or_insert(first);
            let mut take = || {
                let start = (*next).clamp(first, last);
                let port = (start..=last)
                    .chain(first..start)
                    .find(|p| !ports.contains(p))?;
                ports.insert(port);
                *next = if port >= last { first } else { port + 1 };
                Some(format!("{}:{port}", w.host))
            };
            let (Some(data_addr), Some(metrics_addr)) = (take(), take()) else {
                return Err(format!(
                    "worker {id} has no free port left in {}-{}",
                    w.ports.0, w.ports.1
                ));
            };
            placed.push(Placed {
                worker: id.clone(),
                data_addr,
                metrics_addr,
            });
        }
        Ok(placed)
    }

    /// Moves every job on as far as it can now.
    pub fn tick(&mut self) {
        let ids: Vec<String> = self
            .jobs
            .iter()
            .filter(|(_, j)| !j.state.is_terminal())
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            let before = self.jobs[&id].clone();
            self.step(&id);
            if self.jobs[&id] != before {
                self.dirty.insert(id);
            }
        }
    }

    fn step(&mut self, id: &str) {
        let now = now_ms();
        let state = self.jobs[id].state;
        match state {
            JobState::Submitted => {
                self.jobs
                    .get_mut(id)
                    .expect("job")
                    .become_(JobState::Scheduling, "accepted");
            }
            JobState::Scheduling => {
                if now < self.jobs[id].not_before_ms {
                    return;
                }
                let processes = self.jobs[id].processes;
                match self.place(processes) {
                    Ok(placement) => {
                        let job = self.jobs.get_mut(id).expect("job");
                        job.attempt += 1;
                        job.placement = placement;
                        job.placed_ms = now;
                        job.stop = None;
                        job.after_stop = AfterStop::Stop;
                        job.savepoints = 0;
                        let mut args = Vec::new();
                        if job.checkpoint_store.is_some() {
                            args.push("--savepoint-on-stop".to_string());
                        }
                        if let Some(r) = job.restore_next.take() {
                            args.extend(["--restore".to_string(), r]);
                        }
                        args.extend(job.args.iter().cloned());
                        job.run_args = args;
                        let on: Vec<&str> =
                            job.placement.iter().map(|p| p.worker.as_str()).collect();
                        let reason = format!("run {} placed on {}", job.attempt, on.join(", "));
                        job.become_(JobState::Running, reason);
                    }
                    Err(why) => {
                        let job = self.jobs.get_mut(id).expect("job");
                        if job.errors.last().is_none_or(|e| !e.ends_with(&why)) {
                            job.error(why);
                        }
                    }
                }
            }
            JobState::Running => match self.health(id) {
                Health::Fine => {}
                Health::AllExited => {
                    let job = self.jobs.get_mut(id).expect("job");
                    job.placement.clear();
                    job.become_(JobState::Finished, "every process exited 0");
                }
                Health::Failed(why) => self.restart(id, why),
            },
            JobState::Restarting => {
                let draining = self.reports.iter().any(|((job, _, _), (s, w))| {
                    job == id && *s == ProcessState::Running && self.alive(w)
                });
                if !draining && now >= self.jobs[id].not_before_ms {
                    let job = self.jobs.get_mut(id).expect("job");
                    job.become_(JobState::Scheduling, "previous run stopped; backoff over");
                }
            }
            JobState::Stopping => self.finish_stop(id),
            JobState::Stopped | JobState::Failed | JobState::Finished => {}
        }
    }

    /// How the current run of a running job is doing. When several processes failed, the
    /// first cause is named: a silent worker, then a killed process, then an exit code (the
    /// other processes of a timely computation fail because a peer went away).
    fn health(&self, id: &str) -> Health {
        let job = &self.jobs[id];
        let grace = self.timings.worker_timeout * 2;
        let since = Duration::from_millis(now_ms().saturating_sub(job.placed_ms))
            .min(self.started.elapsed());
        let mut exited = 0;
        let mut failures: Vec<(u8, String)> = Vec::new();
        for (index, placed) in job.placement.iter().enumerate() {
            if !self.alive(&placed.worker) {
                if self.workers.contains_key(&placed.worker) || since > grace {
                    failures.push((
                        0,
                        format!(
                            "worker {} of process {index} stopped heartbeating",
                            placed.worker
                        ),
                    ));
                }
                continue;
            }
            match self.reports.get(&(id.to_string(), job.attempt, index)) {
                Some((ProcessState::Running, _)) => {}
                Some((ProcessState::Exited { code: Some(0), .. }, _)) => exited += 1,
                Some((state @ ProcessState::Exited { code, log_tail, .. }, w)) => {
                    // The cause before its consequences: a killed process, then one that
                    // failed by itself, then one that only lost its connection to another.
                    let rank = match code {
                        None => 1,
                        Some(PEER_LOST) => 3,
                        Some(_) => 2,
                    };
                    failures.push((
                        rank,
                        format!(
                            "process {index} on worker {w} {}: {}",
                            state.how_it_ended(),
                            log_tail.trim()
                        ),
                    ));
                }
                None if since > grace => failures.push((
                    1,
                    format!("process {index} is not running on worker {}", placed.worker),
                )),
                None => {}
            }
        }
        if let Some((_, why)) = failures.into_iter().min_by_key(|f| f.0) {
            return Health::Failed(why);
        }
        if exited == job.placement.len() && exited > 0 {
            Health::AllExited
        } else {
            Health::Fine
        }
    }

    /// A run failed: restart from the last checkpoint after a backoff, or give up.
    fn restart(&mut self, id: &str, why: String) {
        let job = self.jobs.get_mut(id).expect("job");
        job.error(why.clone());
        let (max_attempts, _, longest) = job.restart;
        // A run that lasted a good while resets the backoff.
        if now_ms().saturating_sub(job.placed_ms) > longest.saturating_mul(10) {
            job.failures_in_a_row = 0;
        }
        job.failures_in_a_row += 1;
        job.placement.clear();
        if job.failures_in_a_row > max_attempts {
            job.become_(
                JobState::Failed,
                format!("{why}; no restarts left ({max_attempts} allowed)"),
            );
            return;
        }
        job.restarts += 1;
        job.not_before_ms = now_ms() + job.backoff_ms();
        if job.checkpoint_store.is_some() {
            job.restore_next = Some(match job.restore_first.as_deref() {
                // A resumed job started from `latest` too.
                Some(first) if first != "latest" => format!("latest,{first}"),
                _ => "latest".to_string(),
            });
        }
        let pause = job.backoff_ms();
        job.become_(
            JobState::Restarting,
            format!("{why}; restart {} in {pause} ms", job.restarts),
        );
    }

    /// A stop under way: once every process has exited, where the job goes next.
    fn finish_stop(&mut self, id: &str) {
        let job = &self.jobs[id];
        let mut failed = None;
        for (index, placed) in job.placement.iter().enumerate() {
            if !self.alive(&placed.worker) {
                continue;
            }
            match self.reports.get(&(id.to_string(), job.attempt, index)) {
                Some((state @ ProcessState::Exited { code, log_tail, .. }, _)) => {
                    if job.stop == Some(StopKind::Savepoint) && *code != Some(0) {
                        failed = Some(format!(
                            "process {index} did not stop cleanly (it {}): {}",
                            state.how_it_ended(),
                            log_tail.trim()
                        ));
                    }
                }
                // Still running, or not reported yet.
                _ => return,
            }
        }
        let job = self.jobs.get_mut(id).expect("job");
        job.placement.clear();
        if let Some(why) = failed {
            job.error(why.clone());
            job.become_(
                JobState::Failed,
                format!("stop with savepoint failed: {why}"),
            );
            return;
        }
        let savepoint = job.stop == Some(StopKind::Savepoint);
        if savepoint {
            job.savepoint = job
                .checkpoint_store
                .as_deref()
                .and_then(|store| super::observe::newest_savepoint(store, &job.name));
        }
        match job.after_stop {
            AfterStop::Stop => {
                let reason = match &job.savepoint {
                    Some(s) if savepoint => format!("stopped with savepoint {s}"),
                    _ => "stopped".to_string(),
                };
                job.become_(JobState::Stopped, reason);
            }
            AfterStop::Cancel => job.become_(JobState::Stopped, "cancelled"),
            AfterStop::Rescale(n) => {
                job.processes = n;
                job.restore_next = Some(
                    job.savepoint
                        .clone()
                        .unwrap_or_else(|| "latest".to_string()),
                );
                job.failures_in_a_row = 0;
                job.become_(
                    JobState::Scheduling,
                    format!("rescaling to {n} process(es) from the savepoint"),
                );
            }
        }
    }
}

enum Health {
    Fine,
    AllExited,
    Failed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(cluster: &mut Cluster, ports: (u16, u16)) {
        cluster.heartbeat(Heartbeat {
            worker: "w".into(),
            addr: "127.0.0.1:9000".into(),
            slots: 4,
            port_min: ports.0,
            port_max: ports.1,
            processes: Vec::new(),
        });
    }

    #[test]
    fn placements_go_round_the_port_range_so_a_restart_takes_other_ports() {
        let mut cluster = Cluster::new(
            Vec::new(),
            Timings {
                worker_timeout: Duration::from_secs(10),
            },
        );
        worker(&mut cluster, (9001, 9006));
        let addrs = |placed: Vec<Placed>| -> Vec<String> {
            placed
                .into_iter()
                .flat_map(|p| [p.data_addr, p.metrics_addr])
                .collect()
        };
        // Nothing placed is kept (a run that failed at once): the next run still moves on,
        // in case the port it failed on is held by something outside weir.
        let first = addrs(cluster.place(1).unwrap());
        assert_eq!(first, ["127.0.0.1:9001", "127.0.0.1:9002"]);
        // A heartbeat re-registers the worker: the rotation goes on.
        worker(&mut cluster, (9001, 9006));
        let second = addrs(cluster.place(1).unwrap());
        assert_eq!(second, ["127.0.0.1:9003", "127.0.0.1:9004"]);
        let third = addrs(cluster.place(2).unwrap());
        assert_eq!(
            third,
            [
                "127.0.0.1:9005",
                "127.0.0.1:9006",
                "127.0.0.1:9001",
                "127.0.0.1:9002"
            ]
        );
    }
}
