//! A weir cluster on loopback: a coordinator and two worker processes (all `weir` binaries,
//! talking HTTP with a bearer token), driven through the CLI. The payment-fraud job reads a
//! real broker with its processes spread over both workers; a job process is killed with
//! SIGKILL, then the coordinator itself; a job is rescaled from 2 to 3 processes through a
//! savepoint, stopped with a savepoint and replayed from it; another is replayed into shadow
//! sinks. The alert topics, read committed by kcat, equal a failure-free run every time. A real
//! Prometheus server finds the job's processes through the coordinator's service discovery
//! and answers the p99 of the latency histogram; promtool checks `/metrics`.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::kafka::{kcat_payments, kcat_read, PAYMENTS_SCHEMA};
use common::{stderr, wait, weir};
use serde_json::Value;
use weir_tests::{free_port, KafkaBroker};

const TOKEN: &str = "cluster-test-token";

/// A coordinator and its workers, killed when dropped.
struct LoopbackCluster {
    dir: PathBuf,
    port: u16,
    coordinator: Option<Child>,
    workers: Vec<Child>,
    /// Each worker's address (its id).
    addrs: Vec<String>,
}

impl LoopbackCluster {
    fn start(dir: &Path, workers: usize) -> Self {
        std::fs::write(dir.join("token"), TOKEN).unwrap();
        let mut c = LoopbackCluster {
            dir: dir.to_path_buf(),
            port: free_port(),
            coordinator: None,
            workers: Vec::new(),
            addrs: Vec::new(),
        };
        c.start_coordinator();
        // Port ranges apart from each other (the tests of this file run at once) and from the
        // ephemeral range: 60 ports per test process, 20 per cluster.
        static CLUSTERS: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
        let n = CLUSTERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 3;
        let base = 21_000 + (std::process::id() % 150) as u16 * 60 + n * 20;
        for i in 0..workers {
            let first = base + i as u16 * 10;
            let log = std::fs::File::create(dir.join(format!("worker{i}.log"))).unwrap();
            let listen = format!("127.0.0.1:{}", free_port());
            let child = Command::new(env!("CARGO_BIN_EXE_weir"))
                .args([
                    "worker",
                    "--coordinator",
                    &c.url(),
                    "--slots",
                    "2",
                    "--heartbeat",
                    "300ms",
                ])
                .args(["--listen", &listen])
                .args(["--ports", &format!("{}-{}", first, first + 9)])
                .arg("--work-dir")
                .arg(dir.join(format!("w{i}")))
                .arg("--token-file")
                .arg(dir.join("token"))
                .env("WEIR_LOG", "info")
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            c.workers.push(child);
            c.addrs.push(listen);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = c.api(&["workers"]);
            if up.as_array().is_some_and(|w| w.len() == workers) {
                break;
            }
            assert!(Instant::now() < deadline, "workers did not register: {up}");
            std::thread::sleep(Duration::from_millis(200));
        }
        c
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn start_coordinator(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("coordinator.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args([
                "coordinator",
                "--listen",
                &format!("127.0.0.1:{}", self.port),
            ])
            .arg("--data-dir")
            .arg(self.dir.join("coordinator"))
            .arg("--token-file")
            .arg(self.dir.join("token"))
            .args(["--worker-timeout", "3s"])
            .env("WEIR_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.coordinator = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "the coordinator did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the coordinator (SIGKILL) and starts it again on the same port and data.
    fn restart_coordinator(&mut self) {
        if let Some(mut c) = self.coordinator.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.start_coordinator();
    }

    /// `weir <args> --json` against this cluster: the API's JSON answer.
    fn api(&self, args: &[&str]) -> Value {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "weir {args:?}: {}\n{}",
            stderr(&out),
            self.logs()
        );
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        let child = weir()
            .args(args)
            .arg("--json")
            .env("WEIR_COORDINATOR", self.url())
            .env("WEIR_TOKEN_FILE", self.dir.join("token"))
            .current_dir(&self.dir)
            .spawn()
            .unwrap();
        wait(child, Duration::from_secs(30))
    }

    fn submit(&self, spec: &str, file: &str) -> String {
        std::fs::write(self.dir.join(file), spec).unwrap();
        let created = self.api(&["submit", file]);
        created["id"].as_str().expect("an id").to_string()
    }

    fn status(&self, id: &str) -> Value {
        self.api(&["status", id])
    }

    /// Polls the job until `done` holds (at most `limit`).
    fn wait_for(
        &self,
        id: &str,
        what: &str,
        limit: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let s = self.status(id);
            if done(&s) {
                return s;
            }
            if s["state"] == "failed" || Instant::now() > deadline {
                panic!(
                    "job {id}: waiting for {what}; status {s:#}\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        // The job processes' logs (the newest runs).
        let mut logs: Vec<PathBuf> = Vec::new();
        for w in ["w0", "w1"] {
            for job in std::fs::read_dir(self.dir.join(w))
                .into_iter()
                .flatten()
                .flatten()
            {
                for f in std::fs::read_dir(job.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    if f.path().extension().is_some_and(|e| e == "log") {
                        logs.push(f.path());
                    }
                }
            }
        }
        logs.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        for log in logs.iter().rev().take(3) {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(10).collect();
            out.push_str(&format!("--- {}\n", log.display()));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        for name in ["coordinator.log", "worker0.log", "worker1.log"] {
            let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            out.push_str(&format!("--- {name}\n"));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl LoopbackCluster {
    /// Kills worker `i` with SIGKILL: it stops heartbeating, and its job processes exit on
    /// their own when they notice.
    fn kill_worker(&mut self, i: usize) {
        let w = &mut self.workers[i];
        let _ = w.kill();
        let _ = w.wait();
    }
}

impl Drop for LoopbackCluster {
    fn drop(&mut self) {
        // The workers kill their job processes when they stop; SIGKILL would orphan them for
        // half a second (they notice the dead parent).
        for w in &mut self.workers {
            let _ = Command::new("kill")
                .args(["-TERM", &w.id().to_string()])
                .status();
        }
        for w in &mut self.workers {
            let deadline = Instant::now() + Duration::from_secs(5);
            while w.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = w.kill();
            let _ = w.wait();
        }
        if let Some(mut c) = self.coordinator.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The fraud job over `payments`: 2 processes of 1 worker, alerts and window results to
/// `<topic>` and `<topic>-windows` (one transaction per checkpoint).
fn fraud(name: &str, topic: &str, broker: &KafkaBroker, store: &Path) -> String {
    let b = broker.bootstrap();
    format!(
        r#"
name: {name}
processes: 2
parallelism: 1
tick: 50ms
restart: {{ max_attempts: 5, backoff: 200ms, max_backoff: 2s }}
checkpoint: {{ interval: 300ms, store: "file://{store}" }}
sources:
  payments:
    kind: kafka
    brokers: "{b}"
    topic: payments
    until: latest
    schema: {PAYMENTS_SCHEMA}
    event_time: {{ field: ts, max_out_of_orderness: 2s }}
steps:
  bursts: {{ from: payments, rule: {{ key: user_id, count_over: 10m, threshold: 3, where: "status = 'FAILED'", id: payment_id }} }}
  per_merchant: {{ from: payments, key: merchant, window: {{ kind: tumbling, size: 1m }}, aggregates: {{ n: "count(*)", total: "sum(amount)" }} }}
sinks:
  alerts: {{ from: bursts, kind: kafka, brokers: "{b}", topic: {topic}, key: user_id, partitions: 4 }}
  windows: {{ from: per_merchant, kind: kafka, brokers: "{b}", topic: {topic}-windows, key: merchant, partitions: 4 }}
"#,
        store = store.display()
    )
}

/// The topics of a run that never failed (one process, `weir run`).
fn reference(broker: &KafkaBroker, dir: &Path) -> (Vec<String>, Vec<String>) {
    let store = dir.join("ref-store");
    std::fs::write(
        dir.join("ref.yaml"),
        fraud("fraud-ref", "ref-alerts", broker, &store),
    )
    .unwrap();
    let child = weir()
        .args(["run", "ref.yaml", "--progress", "never"])
        .current_dir(dir)
        .spawn()
        .unwrap();
    let out = wait(child, Duration::from_secs(180));
    assert!(out.status.success(), "{}", stderr(&out));
    let alerts = kcat_read(broker, "ref-alerts");
    let windows = kcat_read(broker, "ref-alerts-windows");
    assert!(!alerts.is_empty() && !windows.is_empty());
    (alerts, windows)
}

/// The alerts topic `<topic><suffix>` and the windows topic `<topic>-windows<suffix>` equal
/// the reference.
fn assert_topics(
    broker: &KafkaBroker,
    topic: &str,
    suffix: &str,
    want: &(Vec<String>, Vec<String>),
) {
    for (t, w) in [
        (format!("{topic}{suffix}"), &want.0),
        (format!("{topic}-windows{suffix}"), &want.1),
    ] {
        let got = kcat_read(broker, &t);
        let missing = w.iter().filter(|m| !got.contains(m)).count();
        let extra = got.iter().filter(|m| !w.contains(m)).count();
        assert!(
            &got == w,
            "topic {t}: {} messages, expected {} ({missing} missing, {extra} extra or repeated)",
            got.len(),
            w.len()
        );
    }
}

/// The pid of process `index` of run `attempt` of job `id`.
fn job_process(dir: &Path, id: &str, attempt: u64, index: usize) -> u32 {
    let pattern = format!("{}/w[0-9]/{id}/run{attempt}-p{index}.spec", dir.display());
    let out = Command::new("pgrep")
        .args(["-f", &pattern])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no process matches {pattern}"))
}

fn checkpoint_epoch(s: &Value) -> u64 {
    s["last_checkpoint"]["epoch"].as_u64().unwrap_or(0)
}

#[test]
fn a_cluster_on_loopback_restarts_rescales_and_replays_the_fraud_job_exactly_once() {
    let broker = KafkaBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    kcat_payments(&broker, d, 240_000, 31);
    let want = reference(&broker, d);
    let cluster = LoopbackCluster::start(d, 2);
    let mut cluster = cluster;
    let store = d.join("store");
    let minutes = Duration::from_secs(180);

    // 1. Spread over both workers; a job process dies; then the coordinator.
    let a = cluster.submit(&fraud("fraud-a", "a-alerts", &broker, &store), "a.yaml");
    let s = cluster.wait_for(&a, "a first checkpoint", minutes, |s| {
        s["state"] == "running" && checkpoint_epoch(s) > 0
    });
    let workers: std::collections::BTreeSet<&str> = s["placement"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["worker"].as_str().unwrap())
        .collect();
    assert_eq!(workers.len(), 2, "one process on each worker: {s:#}");
    let victim = job_process(d, &a, 1, 1);
    Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .unwrap();
    let s = cluster.wait_for(&a, "a restart", minutes, |s| {
        s["restarts"] == 1 && s["attempt"] == 2
    });
    assert!(
        s["errors"].as_array().unwrap().iter().any(|e| {
            let e = e.as_str().unwrap();
            e.contains(": process 1 on worker") && e.contains("signal 9 (SIGKILL)")
                || e.contains("lost its connection to process 1")
        }),
        "the failure names the killed process (or the connection lost to it): {s:#}"
    );
    cluster.restart_coordinator();
    let jobs = cluster.api(&["jobs"]);
    assert!(
        jobs.as_array()
            .unwrap()
            .iter()
            .any(|j| j["id"] == a.as_str()),
        "the restarted coordinator still knows the job: {jobs}"
    );
    let s = cluster.wait_for(&a, "a to finish", minutes, |s| s["state"] == "finished");
    assert_eq!(s["restarts"], 1, "re-attached, not restarted again: {s:#}");
    assert_topics(&broker, "a-alerts", "", &want);

    // 2. Replay into shadow sinks through the API: a new job beside the live output.
    let shadow = cluster.api(&["replay", &a, "--from", "earliest", "--shadow", "replay"]);
    let r = shadow["id"].as_str().unwrap().to_string();
    let s = cluster.wait_for(&r, "the replay to finish", minutes, |s| {
        s["state"] == "finished"
    });
    assert_eq!(s["name"], "fraud-a.replay");
    assert_eq!(s["replay_of"], a.as_str());
    assert_topics(&broker, "a-alerts", ".replay", &want);
    assert_topics(&broker, "a-alerts", "", &want);

    // 3. Rescale 2 → 3 through a savepoint; stop with a savepoint; resume from it.
    let b = cluster.submit(&fraud("fraud-b", "b-alerts", &broker, &store), "b.yaml");
    cluster.wait_for(&b, "b first checkpoint", minutes, |s| {
        s["state"] == "running" && checkpoint_epoch(s) > 0
    });
    cluster.api(&["rescale", &b, "3"]);
    let s = cluster.wait_for(&b, "b at 3 processes", minutes, |s| {
        s["state"] == "running" && s["placement"].as_array().is_some_and(|p| p.len() == 3)
    });
    let rescaled_from = s["savepoint"].as_str().unwrap().to_string();
    let last = checkpoint_epoch(&s);
    cluster.wait_for(&b, "b checkpoint at 3 processes", minutes, |s| {
        checkpoint_epoch(s) > last
    });
    cluster.api(&["stop", &b, "--savepoint"]);
    let s = cluster.wait_for(&b, "b stopped", minutes, |s| s["state"] == "stopped");
    let savepoint = s["savepoint"].as_str().unwrap().to_string();
    // What b committed up to its savepoint, before anything resumes it.
    let b_topics = ["b-alerts", "b-alerts-windows"];
    let committed: Vec<Vec<String>> = b_topics.iter().map(|t| kcat_read(&broker, t)).collect();
    assert!(
        savepoint > rescaled_from,
        "{savepoint} after {rescaled_from}"
    );
    let checkpoints = cluster.api(&["checkpoints", &b]);
    assert!(
        checkpoints
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == savepoint.as_str()
                && c["savepoint"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("stop-"))),
        "{checkpoints:#}"
    );
    let refused = cluster.cli(&["stop", &b]);
    assert_eq!(
        refused.status.code(),
        Some(2),
        "a stopped job cannot stop: 409"
    );
    assert!(stderr(&refused).contains("409"), "{}", stderr(&refused));
    // `weir resume`: a new job of b's name from its newest checkpoint, the stop's savepoint.
    let resumed = cluster.api(&["resume", &b]);
    let c = resumed["id"].as_str().unwrap().to_string();
    let s = cluster.wait_for(&c, "b resumed from its savepoint", minutes, |s| {
        s["state"] == "finished"
    });
    assert_eq!(s["processes"], 2);
    assert_topics(&broker, "b-alerts", "", &want);

    // 4. Replay from the same savepoint into shadow sinks: the savepoint's state and source
    // positions, fresh sinks — the shadow topics hold exactly what came after the savepoint.
    let shadow = cluster.api(&[
        "replay",
        &b,
        "--from",
        &format!("savepoint:{savepoint}"),
        "--shadow",
        "sp",
    ]);
    let r = shadow["id"].as_str().unwrap().to_string();
    let s = cluster.wait_for(
        &r,
        "b's savepoint replayed into shadow sinks",
        minutes,
        |s| s["state"] == "finished",
    );
    assert_eq!(s["name"], "fraud-b.sp");
    let mut replayed = 0;
    for ((topic, before), all) in b_topics.iter().zip(committed).zip([&want.0, &want.1]) {
        let after = kcat_read(&broker, &format!("{topic}.sp"));
        replayed += after.len();
        let mut got = before;
        got.extend(after);
        got.sort();
        let mut all = all.clone();
        all.sort();
        assert!(
            got == all,
            "{topic}: before the savepoint + shadow ≠ the whole"
        );
    }
    assert!(
        replayed > 0,
        "the shadow wrote what came after the savepoint"
    );
}

/// `GET http://addr/path` with a bearer token: status line and body.
fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

#[test]
fn prometheus_discovers_the_job_through_the_coordinator_and_answers_its_p99() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cluster = LoopbackCluster::start(d, 2);
    // Event time keeps pace with the wall clock from now: 2000 events/s, 0.5 ms apart.
    let now = humantime::format_rfc3339_millis(std::time::SystemTime::now());
    let spec = format!(
        r#"
name: latency
processes: 2
tick: 50ms
sources:
  payments: {{ kind: generator, stream: payments, rate: 2000, time_step: 500us, start_time: "{now}", seed: 5, partitions: 4, event_time: {{ max_out_of_orderness: 1s }} }}
steps:
  failed: {{ from: payments, filter: "status = 'FAILED'" }}
sinks:
  out: {{ from: failed, kind: blackhole }}
"#
    );
    let id = cluster.submit(&spec, "latency.yaml");
    let s = cluster.wait_for(&id, "running", Duration::from_secs(60), all_running);

    // Every process's /metrics passes promtool.
    for p in s["placement"].as_array().unwrap() {
        let addr = p["metrics_addr"].as_str().unwrap();
        // The endpoint is up before the dataflow is built (and its sink has written).
        let deadline = Instant::now() + Duration::from_secs(30);
        let body = loop {
            let (status, body) = http_get(addr, "/metrics");
            assert!(status.contains("200"), "{status}");
            if body.contains("weir_event_latency_seconds_count") {
                break body;
            }
            assert!(
                Instant::now() < deadline,
                "no latency histogram on {addr}: {body}"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        let mut promtool = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool (Debian package prometheus) is needed: run scripts/test.sh");
        promtool
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        let out = wait(promtool, Duration::from_secs(30));
        assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
    }
    let (status, body) = http_get(&format!("127.0.0.1:{}", cluster.port), "/metrics");
    assert!(
        status.contains("200") && body.contains("weir_coordinator_jobs"),
        "{status}"
    );

    // A real Prometheus, configured only with the coordinator's discovery endpoint. (Debian's
    // Prometheus 2.42 sends an http_sd credential without its scheme unless `type` is given.)
    let prom_port = free_port();
    let config = format!(
        r#"
global: {{ scrape_interval: 1s, evaluation_interval: 1s }}
scrape_configs:
  - job_name: weir
    authorization: {{ type: Bearer, credentials: "{TOKEN}" }}
    http_sd_configs:
      - url: "http://127.0.0.1:{}/api/v1/prometheus/targets"
        refresh_interval: 2s
        authorization: {{ type: Bearer, credentials: "{TOKEN}" }}
"#,
        cluster.port
    );
    std::fs::write(d.join("prometheus.yml"), config).unwrap();
    let check = Command::new("promtool")
        .args(["check", "config"])
        .arg(d.join("prometheus.yml"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let log = std::fs::File::create(d.join("prometheus.log")).unwrap();
    let mut prometheus = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            d.join("prometheus.yml").display()
        ))
        .arg(format!("--storage.tsdb.path={}", d.join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("prometheus (Debian package) is needed: run scripts/test.sh");
    let query = "histogram_quantile(0.99, sum by (le) (rate(weir_event_latency_seconds_bucket{weir_job=\"latency\"}[10s])))";
    let encoded: String = query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    let p99 = loop {
        let answer = std::net::TcpStream::connect(("127.0.0.1", prom_port))
            .ok()
            .map(|_| {
                http_get(
                    &format!("127.0.0.1:{prom_port}"),
                    &format!("/api/v1/query?query={encoded}"),
                )
                .1
            });
        let value = answer
            .as_deref()
            .and_then(|a| serde_json::from_str::<Value>(a.trim()).ok())
            .and_then(|v| {
                v["data"]["result"][0]["value"][1]
                    .as_str()
                    .map(str::to_string)
            })
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite());
        if let Some(v) = value {
            break v;
        }
        if Instant::now() > deadline {
            let targets = http_get(&format!("127.0.0.1:{prom_port}"), "/api/v1/targets").1;
            let _ = prometheus.kill();
            panic!(
                "Prometheus found no p99 within 90 s; last answer {answer:?}; targets {targets}; log {}",
                std::fs::read_to_string(d.join("prometheus.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    // Event times trail the wall clock by the generator's disorder (up to 0.5 s): the p99 is
    // a real latency, far below the last bucket.
    assert!(p99 > 0.0 && p99 < 10.0, "p99 {p99}");

    // Cancel: the processes are killed, the job is stopped.
    cluster.api(&["cancel", &id]);
    let s = cluster.wait_for(&id, "cancelled", Duration::from_secs(30), |s| {
        s["state"] == "stopped"
    });
    assert!(s["history"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["reason"] == "cancelled"));
}

#[test]
fn a_silent_worker_gets_its_jobs_moved_to_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut cluster = LoopbackCluster::start(d, 2);
    let spec = r#"
name: moved
processes: 2
tick: 50ms
restart: { backoff: 200ms }
sources:
  payments: { kind: generator, stream: payments, rate: 1000, seed: 9, partitions: 4 }
sinks:
  out: { from: payments, kind: blackhole }
"#;
    let id = cluster.submit(spec, "moved.yaml");
    let s = cluster.wait_for(&id, "running on both", Duration::from_secs(60), all_running);
    let on: Vec<String> = s["placement"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["worker"].as_str().unwrap().to_string())
        .collect();
    assert_ne!(on[0], on[1], "spread over both workers");
    let (first, survivor) = (cluster.addrs[0].clone(), cluster.addrs[1].clone());
    cluster.kill_worker(0);
    let s = cluster.wait_for(
        &id,
        "a restart on the other worker",
        Duration::from_secs(60),
        |s| {
            s["state"] == "running"
                && s["restarts"] == 1
                && s["placement"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|p| p["worker"] == survivor.as_str() && p["state"] == "running")
        },
    );
    // Which failure the coordinator saw first depends on timing: the silent worker, or the
    // surviving process failing without its peer. Either way the restart is recorded.
    assert!(!s["errors"].as_array().unwrap().is_empty(), "{s:#}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let workers = cluster.api(&["workers"]);
        let dead = workers
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["id"] == first.as_str())
            .cloned();
        if dead.is_some_and(|w| w["alive"] == false) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the killed worker is still alive: {workers}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The processes of the dead worker did not outlive it.
    let running = || {
        let out = Command::new("pgrep")
            .args(["-f", &format!("{}/w0/{id}/", d.display())])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut left = running();
    while !left.trim().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        left = running();
    }
    assert!(
        left.trim().is_empty(),
        "job processes of the dead worker still run: {left}"
    );
    cluster.api(&["cancel", &id]);
}

/// The job runs, and so does each of its processes.
fn all_running(s: &Value) -> bool {
    s["state"] == "running"
        && s["placement"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["state"] == "running")
}
