//! The coordinator's own metrics: jobs by state, live workers, restarts per job.

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use super::Cluster;
use crate::wire::JobState;

/// The coordinator's registry.
pub struct CoordinatorMetrics {
    registry: Registry,
    jobs: IntGaugeVec,
    workers: IntGauge,
    restarts: IntCounterVec,
}

impl CoordinatorMetrics {
    /// Registers every family.
    pub fn new() -> Self {
        let registry = Registry::new();
        let jobs = IntGaugeVec::new(
            Opts::new(
                "weir_coordinator_jobs",
                "Jobs the coordinator knows, by state.",
            ),
            &["state"],
        )
        .expect("metric");
        let workers = IntGauge::new("weir_coordinator_workers_alive", "Workers heartbeating.")
            .expect("metric");
        let restarts = IntCounterVec::new(
            Opts::new(
                "weir_job_restarts_total",
                "Restarts of a job after a failed process or a silent worker.",
            ),
            &["job", "job_id"],
        )
        .expect("metric");
        registry.register(Box::new(jobs.clone())).expect("metric");
        registry
            .register(Box::new(workers.clone()))
            .expect("metric");
        registry
            .register(Box::new(restarts.clone()))
            .expect("metric");
        CoordinatorMetrics {
            registry,
            jobs,
            workers,
            restarts,
        }
    }

    /// The text format, brought up to date with `cluster` first.
    pub fn encode(&self, cluster: &Cluster) -> String {
        use JobState::*;
        for state in [
            Submitted, Scheduling, Running, Restarting, Stopping, Stopped, Failed, Finished,
        ] {
            let n = cluster.jobs.values().filter(|j| j.state == state).count();
            self.jobs.with_label_values(&[state.name()]).set(n as i64);
        }
        self.workers
            .set(cluster.workers().iter().filter(|w| w.alive).count() as i64);
        for job in cluster.jobs.values() {
            let c = self.restarts.with_label_values(&[&job.name, &job.id]);
            let known = c.get();
            if u64::from(job.restarts) > known {
                c.inc_by(u64::from(job.restarts) - known);
            }
        }
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}
