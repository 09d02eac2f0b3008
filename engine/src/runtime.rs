//! Running one timely computation: `W` worker threads in each of `P` processes.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use timely::worker::Worker;
use timely::{CommunicationConfig, WorkerConfig};

/// A failure to start or finish a computation.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The cluster description is inconsistent.
    #[error("cluster configuration: {0}")]
    Config(String),
    /// The processes could not connect to each other.
    #[error("cluster networking: {0}")]
    Network(String),
    /// A worker thread panicked or returned an error.
    #[error("worker {worker}: {message}")]
    Worker {
        /// Global worker index.
        worker: usize,
        /// What the worker reported.
        message: String,
    },
}

/// Where this process sits in the computation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Worker threads in each process.
    pub workers: usize,
    /// This process's index, `0 .. hosts.len()`.
    pub process: usize,
    /// `host:port` of every process, in process order; empty or one entry for a single process.
    pub hosts: Vec<String>,
}

impl ClusterConfig {
    /// One process with `workers` threads.
    pub fn single(workers: usize) -> Self {
        ClusterConfig {
            workers,
            process: 0,
            hosts: Vec::new(),
        }
    }

    /// Number of processes.
    pub fn processes(&self) -> usize {
        self.hosts.len().max(1)
    }

    /// Workers across all processes.
    pub fn total_workers(&self) -> usize {
        self.workers * self.processes()
    }

    /// Checks the description.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        if self.workers == 0 {
            return Err(RuntimeError::Config("--workers must be at least 1".into()));
        }
        if self.process >= self.processes() {
            return Err(RuntimeError::Config(format!(
                "--process {} is out of range: the hosts list names {} process(es), 0 .. {}",
                self.process,
                self.processes(),
                self.processes() - 1
            )));
        }
        Ok(())
    }

    /// The equivalent timely configuration.
    pub fn timely_config(&self) -> timely::Config {
        let communication = if self.hosts.len() > 1 {
            CommunicationConfig::Cluster {
                threads: self.workers,
                process: self.process,
                addresses: self.hosts.clone(),
                report: false,
                zerocopy: false,
            }
        } else if self.workers > 1 {
            CommunicationConfig::Process(self.workers)
        } else {
            CommunicationConfig::Thread
        };
        timely::Config {
            communication,
            worker: WorkerConfig::default(),
        }
    }
}

/// Reads a hosts file: one `host:port` per line, in process order; `#` starts a comment.
pub fn read_hosts_file(path: &Path) -> Result<Vec<String>, RuntimeError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        RuntimeError::Config(format!("cannot read hosts file {}: {e}", path.display()))
    })?;
    let hosts: Vec<String> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    for (i, host) in hosts.iter().enumerate() {
        if !host.contains(':') {
            return Err(RuntimeError::Config(format!(
                "hosts file {}, entry {}: `{host}` is not host:port",
                path.display(),
                i + 1
            )));
        }
    }
    if hosts.is_empty() {
        return Err(RuntimeError::Config(format!(
            "hosts file {} lists no hosts",
            path.display()
        )));
    }
    Ok(hosts)
}

/// Runs `func` on every worker of this process and returns their results in worker order.
///
/// With several processes, timely connects them first and retries forever; this gives up
/// after `connect_timeout` with an error naming the hosts.
pub fn execute<T, F>(
    cluster: &ClusterConfig,
    connect_timeout: Duration,
    func: F,
) -> Result<Vec<T>, RuntimeError>
where
    T: Send + 'static,
    F: Fn(&mut Worker) -> Result<T, String> + Send + Sync + 'static,
{
    cluster.validate()?;
    let config = cluster.timely_config();
    // Each worker's end, as it happens: a failed worker of a computation over several
    // processes must end this process (see below).
    let (ended_tx, ended) = mpsc::channel::<(usize, Option<String>)>();
    let func = move |worker: &mut Worker| {
        let result = func(worker);
        let _ = ended_tx.send((worker.index(), result.as_ref().err().cloned()));
        result
    };
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("weir-cluster-connect".into())
        .spawn(move || {
            let _ = tx.send(timely::execute(config, func));
        })
        .map_err(|e| RuntimeError::Network(format!("cannot start a thread: {e}")))?;
    let guards = match rx.recv_timeout(connect_timeout) {
        Ok(Ok(guards)) => guards,
        Ok(Err(message)) => return Err(RuntimeError::Network(message)),
        Err(_) => {
            return Err(RuntimeError::Network(format!(
                "process {} could not connect to all of {} within {:?}; start every process \
                 with the same hosts list and check that the ports are free",
                cluster.process,
                cluster.hosts.join(", "),
                connect_timeout
            )))
        }
    };
    if cluster.processes() > 1 {
        // Joining the workers also joins the network threads, which run as long as the other
        // processes keep their connections: and those wait for this process's workers for
        // ever. A failure ends this process instead (crash-only: the others lose their
        // connection to it and end, and the job restarts from its last checkpoint).
        for _ in 0..cluster.workers {
            match ended.recv() {
                Ok((worker, Some(message))) => {
                    std::mem::forget(guards);
                    return Err(RuntimeError::Worker { worker, message });
                }
                Ok((_, None)) => {}
                Err(_) => break, // a worker panicked: its message comes from the join
            }
        }
    }
    let first = cluster.process * cluster.workers;
    let mut results = Vec::with_capacity(cluster.workers);
    for (i, result) in guards.join().into_iter().enumerate() {
        match result {
            Ok(Ok(value)) => results.push(value),
            Ok(Err(message)) | Err(message) => {
                return Err(RuntimeError::Worker {
                    worker: first + i,
                    message,
                })
            }
        }
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_a_process_index_outside_the_hosts_list() {
        let cluster = ClusterConfig {
            workers: 1,
            process: 2,
            hosts: vec!["a:1".into(), "b:2".into()],
        };
        let err = cluster.validate().unwrap_err().to_string();
        assert!(err.contains("--process 2"), "{err}");
    }

    #[test]
    fn worker_errors_are_reported_with_their_index() {
        let err = execute(&ClusterConfig::single(2), Duration::from_secs(5), |w| {
            if w.index() == 1 {
                Err("boom".to_string())
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "worker 1: boom");
    }

    #[test]
    fn hosts_file_entries_must_be_host_and_port() {
        let dir = std::env::temp_dir().join(format!("weir-hosts-{}", std::process::id()));
        std::fs::write(&dir, "# cluster\n127.0.0.1:4000\nlocalhost\n").unwrap();
        let err = read_hosts_file(&dir).unwrap_err().to_string();
        std::fs::remove_file(&dir).ok();
        assert!(err.contains("entry 2: `localhost`"), "{err}");
    }
}
