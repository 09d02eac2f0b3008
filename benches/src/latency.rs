//! End-to-end latency through a cluster: a coordinator and two workers (the release `weir`
//! binary), the fraud job in 2 processes reading payments from Kafka and writing alerts to a
//! topic, `weir gen` producing payments at a fixed rate with event times on the wall clock.
//! The p50/p99 of event time → alert come from the processes' own histograms
//! (`weir_event_latency_seconds` of the alert sink), merged as Prometheus would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// The watermark delay of the job: events may be this late (ms).
const OUT_OF_ORDERNESS_MS: u64 = 50;

struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &self.0 {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        std::thread::sleep(Duration::from_millis(500));
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub(crate) fn weir_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let weir = exe.with_file_name("weir");
    if !weir.exists() {
        bail!(
            "{} is missing: build it first with `cargo build --release -p weir-cluster`",
            weir.display()
        );
    }
    Ok(weir)
}

/// Keeps the broker's copy of the payments topic to each partition's last `keep_records`
/// records (a few seconds of the stream) while the bench runs, deleting older ones (Kafka's
/// DeleteRecords) once a second — what retention does on a real broker. noida-db keeps every record in memory and its autosave thread re-serializes
/// all of them every few seconds, taking longer as the topic grows (a core for most of a
/// second by 25 s at 50 000 payments/s): with the whole history kept, the broker itself
/// stalls reads late in a run.
struct Trimmer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Trimmer {
    fn start(brokers: &str, topic: &str, keep_records: i64) -> Trimmer {
        use std::sync::atomic::{AtomicBool, Ordering};
        use weir_operators::kafka::{delete_records_before, fetch_high_watermarks, Connection};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let conn = Connection {
            brokers: brokers.to_string(),
            properties: Default::default(),
            connect_timeout: Duration::from_secs(5),
        };
        let topic = topic.to_string();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut deleted = 0u64;
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                let Ok(marks) = fetch_high_watermarks(&conn, &topic) else {
                    continue;
                };
                let before: std::collections::BTreeMap<i32, i64> = marks
                    .iter()
                    .filter(|(_, (low, high))| high - low > keep_records)
                    .map(|(p, (_, high))| (*p, high - keep_records))
                    .collect();
                if before.is_empty() {
                    continue;
                }
                match delete_records_before(&conn, &topic, &before) {
                    Ok(_) => {
                        deleted += before
                            .iter()
                            .map(|(p, to)| (to - marks[p].0).max(0) as u64)
                            .sum::<u64>()
                    }
                    Err(e) => eprintln!("trimming {topic}: {e}"),
                }
            }
            deleted
        });
        Trimmer {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops trimming; the number of records deleted.
    fn finish(mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or(0)
    }
}

fn free_port() -> u16 {
    weir_tests::free_port()
}

fn cli(weir: &Path, url: &str, args: &[&str]) -> Result<Value> {
    let out = Command::new(weir)
        .args(args)
        .args(["--json", "--coordinator", url])
        .output()?;
    if !out.status.success() {
        bail!("weir {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
}

/// Cumulative counts per bucket upper bound, in bound order.
type Buckets = Vec<(f64, f64)>;

/// Cumulative bucket counts of one histogram family for `operator`, summed over texts.
fn buckets(texts: &[String], family: &str, operator: &str) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    let prefix = format!("{family}_bucket{{");
    for text in texts {
        for line in text.lines().filter(|l| l.starts_with(&prefix)) {
            if !line.contains(&format!("operator=\"{operator}\"")) {
                continue;
            }
            let le = line
                .split("le=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .map(|v| {
                    if v == "+Inf" {
                        f64::INFINITY
                    } else {
                        v.parse().unwrap_or(f64::NAN)
                    }
                });
            let count: Option<f64> = line.rsplit(' ').next().and_then(|v| v.parse().ok());
            if let (Some(le), Some(count)) = (le, count) {
                match out.iter_mut().find(|(b, _)| *b == le) {
                    Some(slot) => slot.1 += count,
                    None => out.push((le, count)),
                }
            }
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The counts of `now` since `before` (cumulative buckets of the same histogram).
fn minus(now: &[(f64, f64)], before: &[(f64, f64)]) -> Vec<(f64, f64)> {
    now.iter()
        .map(|&(le, n)| {
            let b = before.iter().find(|(l, _)| *l == le).map_or(0.0, |b| b.1);
            (le, n - b)
        })
        .collect()
}

/// `histogram_quantile`: linear interpolation inside the bucket holding the quantile.
fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let inside = (rank - lower.1) / (count - lower.1).max(1e-9);
            return Some(lower.0 + (le - lower.0) * inside);
        }
        lower = (le, count);
    }
    None
}

fn fraud_spec(brokers: &str, tick: &str, processes: usize, consumer: &str) -> String {
    format!(
        r#"
name: latency-fraud
processes: {processes}
parallelism: 1
tick: {tick}
sources:
  payments:
    kind: kafka
    brokers: "{brokers}"
    topic: bench-latency-payments
    start: latest
    properties: {{ {consumer} }}
    schema: {{ payment_id: string, user_id: string, amount: float, currency: string, status: string, merchant: string, ts: timestamp }}
    event_time: {{ field: ts, max_out_of_orderness: {OUT_OF_ORDERNESS_MS}ms, idle_timeout: 1s }}
steps:
  bursts: {{ from: payments, rule: {{ key: user_id, count_over: 10m, threshold: 3, where: "status = 'FAILED'", id: payment_id }} }}
sinks:
  alerts: {{ from: bursts, kind: kafka, brokers: "{brokers}", topic: bench-latency-alerts, key: user_id }}
  seen: {{ from: payments, kind: blackhole }}
"#
    )
}

/// Runs the scenario: `rate` payments per second for `seconds`.
pub fn run(rate: u64, seconds: u64, brokers: Option<String>) -> Result<()> {
    let weir = weir_binary()?;
    let broker = match brokers {
        Some(_) => None,
        None => Some(weir_tests::KafkaBroker::start()),
    };
    let brokers = brokers.unwrap_or_else(|| broker.as_ref().expect("started").bootstrap());
    let dir = tempfile::tempdir()?;
    // WEIR_BENCH_KEEP=1 keeps the logs and work directories for a look afterwards.
    let keep = std::env::var_os("WEIR_BENCH_KEEP").is_some();
    let d = dir.path();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let log = |name: &str| -> Result<Stdio> { Ok(std::fs::File::create(d.join(name))?.into()) };
    let mut procs = Processes(Vec::new());
    procs.0.push(
        Command::new(&weir)
            .args(["coordinator", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(d.join("coordinator"))
            .stderr(log("coordinator.log")?)
            .spawn()?,
    );
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..2 {
        let listen = free_port();
        procs.0.push(
            Command::new(&weir)
                .args([
                    "worker",
                    "--coordinator",
                    &url,
                    "--slots",
                    "1",
                    "--heartbeat",
                    "200ms",
                ])
                .args(["--listen", &format!("127.0.0.1:{listen}")])
                .arg("--work-dir")
                .arg(d.join(format!("w{i}")))
                .stderr(log(&format!("worker{i}.log"))?)
                .spawn()?,
        );
    }
    // The input topic exists before the job starts reading its end (WEIR_BENCH_PARTITIONS
    // partitions, 4 unless set).
    let partitions = std::env::var("WEIR_BENCH_PARTITIONS").unwrap_or_else(|_| "4".to_string());
    let create = Command::new(&weir)
        .args([
            "gen",
            "--stream",
            "payments",
            "--events",
            "1",
            "--brokers",
            &brokers,
        ])
        .args([
            "--topic",
            "bench-latency-payments",
            "--partitions",
            &partitions,
        ])
        .output()?;
    if !create.status.success() {
        bail!("weir gen: {}", String::from_utf8_lossy(&create.stderr));
    }
    let tick = std::env::var("WEIR_BENCH_TICK").unwrap_or_else(|_| "5ms".to_string());
    let processes: usize = std::env::var("WEIR_BENCH_PROCESSES")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(2);
    // Extra consumer properties, `key: value, ...` (WEIR_BENCH_CONSUMER), for experiments.
    let consumer = std::env::var("WEIR_BENCH_CONSUMER").unwrap_or_default();
    std::fs::write(
        d.join("job.yaml"),
        fraud_spec(&brokers, &tick, processes, &consumer),
    )?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while cli(&weir, &url, &["workers"])?
        .as_array()
        .map_or(0, Vec::len)
        < 2
    {
        if Instant::now() > deadline {
            bail!("workers did not register");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let id = cli(
        &weir,
        &url,
        &["submit", &d.join("job.yaml").to_string_lossy()],
    )?["id"]
        .as_str()
        .context("job id")?
        .to_string();
    let metrics: Vec<String> = loop {
        let s = cli(&weir, &url, &["status", &id])?;
        let placement = s["placement"].as_array().cloned().unwrap_or_default();
        if s["state"] == "running" && placement.iter().all(|p| p["state"] == "running") {
            break placement
                .iter()
                .filter_map(|p| p["metrics_addr"].as_str().map(str::to_string))
                .collect();
        }
        if Instant::now() > deadline {
            bail!("the job did not start: {s}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Let the processes connect and their consumers find the end of the topic.
    std::thread::sleep(Duration::from_secs(3));
    let events = (rate * seconds).to_string();
    let step = format!("{}", 1000.0 / rate as f64);
    // WEIR_BENCH_TRIM_SECONDS: how much of the stream the broker keeps (5 s unless set; `off`
    // keeps everything).
    let trim = std::env::var("WEIR_BENCH_TRIM_SECONDS").unwrap_or_else(|_| "5".to_string());
    let trimmer = match trim.as_str() {
        "off" => None,
        seconds => {
            let seconds: i64 = seconds
                .parse()
                .context("WEIR_BENCH_TRIM_SECONDS: seconds or `off`")?;
            let per_partition = rate as i64 * seconds / partitions.parse::<i64>().unwrap_or(4);
            Some(Trimmer::start(
                &brokers,
                "bench-latency-payments",
                per_partition.max(1),
            ))
        }
    };
    let started = Instant::now();
    let mut gen = Command::new(&weir)
        .args([
            "gen",
            "--stream",
            "payments",
            "--brokers",
            &brokers,
            "--topic",
            "bench-latency-payments",
        ])
        .args([
            "--events",
            &events,
            "--rate",
            &rate.to_string(),
            "--time-step-ms",
            &step,
        ])
        .args(["--start-time", "now", "--disorder-ms", "0", "--seed", "7"])
        // The payment service hands each payment over at once: its batching is not weir's.
        .args(["-X", "linger.ms=5"])
        .stderr(Stdio::null())
        .spawn()?;
    // Every 2 s while the payments go out: the p99s of that interval, so a tail that comes
    // from a few stalls shows apart from one that is always there.
    let timeline = std::env::var_os("WEIR_BENCH_TIMELINE").is_some();
    let mut last: Option<(Buckets, Buckets)> = None;
    let mut intervals = Vec::new();
    let mut next_look = Instant::now();
    let (gen, produced_in) = loop {
        if let Some(status) = gen.try_wait()? {
            break (status, started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
        if !timeline || Instant::now() < next_look {
            continue;
        }
        next_look += Duration::from_secs(2);
        let texts: Vec<String> = metrics.iter().filter_map(|a| scrape(a).ok()).collect();
        let now = (
            buckets(&texts, "weir_event_latency_seconds", "alerts"),
            buckets(&texts, "weir_source_event_lag_seconds", "source.payments"),
        );
        if let Some((alert, read)) = &last {
            intervals.push((
                started.elapsed().as_secs_f64(),
                quantile(0.99, &minus(&now.0, alert)),
                quantile(0.99, &minus(&now.1, read)),
            ));
        }
        last = Some(now);
    };
    let trimmed = trimmer.map(Trimmer::finish);
    if !gen.success() {
        bail!("weir gen failed");
    }
    std::thread::sleep(Duration::from_secs(2));
    let texts: Vec<String> = metrics
        .iter()
        .map(|addr| {
            scrape(addr).unwrap_or_else(|e| {
                eprintln!("cannot scrape {addr}: {e}");
                String::new()
            })
        })
        .collect();
    let event = buckets(&texts, "weir_event_latency_seconds", "alerts");
    let processing = buckets(&texts, "weir_processing_latency_seconds", "alerts");
    let read_lag = buckets(&texts, "weir_source_event_lag_seconds", "source.payments");
    let read: f64 = texts
        .iter()
        .flat_map(|t| t.lines())
        .filter(|l| l.starts_with("weir_records_in_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let alerts = event.last().map_or(0.0, |b| b.1);
    let per_process: Vec<String> = texts
        .iter()
        .map(|t| {
            let n: f64 = t
                .lines()
                .filter(|l| l.starts_with("weir_records_in_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            format!("{n:.0}")
        })
        .collect();
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1} ms", v * 1000.0));
    println!(
        "cluster latency: {events} payments at {rate}/s (produced in {:.1} s), {processes} process(es) × 1 worker, tick {tick}, watermark delay {OUT_OF_ORDERNESS_MS} ms",
        produced_in.as_secs_f64()
    );
    println!(
        "  records read {read:.0} (per process: {}), alerts written {alerts:.0}",
        per_process.join(", ")
    );
    match trimmed {
        Some(n) => println!(
            "  the broker kept the last {trim} s of payments ({n} older ones deleted while the job ran)"
        ),
        None => println!("  the broker kept every payment"),
    }
    if read < (rate * seconds) as f64 {
        println!("  WARNING: the job read fewer payments than were produced");
    }
    println!(
        "  event time → alert write:  p50 {}  p99 {}   (beyond the watermark delay: p99 {})",
        ms(quantile(0.5, &event)),
        ms(quantile(0.99, &event)),
        ms(quantile(0.99, &event).map(|v| v - OUT_OF_ORDERNESS_MS as f64 / 1000.0))
    );
    println!(
        "  event time → source read (producer + broker): p50 {}  p99 {}",
        ms(quantile(0.5, &read_lag)),
        ms(quantile(0.99, &read_lag))
    );
    println!(
        "  alert's epoch opened → alert write (engine): p50 {}  p99 {}",
        ms(quantile(0.5, &processing)),
        ms(quantile(0.99, &processing))
    );
    for (at, alert, read) in intervals {
        println!(
            "  until {at:5.1} s: event → alert p99 {}, event → read p99 {}",
            ms(alert),
            ms(read)
        );
    }
    let _ = cli(&weir, &url, &["cancel", &id]);
    drop(procs);
    drop(broker);
    if keep {
        for (i, text) in texts.iter().enumerate() {
            std::fs::write(d.join(format!("metrics-{i}.txt")), text)?;
        }
        println!("  logs kept in {}", dir.keep().display());
    }
    Ok(())
}

fn scrape(addr: &str) -> Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_inside_buckets() {
        let b = [
            (0.01, 50.0),
            (0.02, 90.0),
            (0.05, 100.0),
            (f64::INFINITY, 100.0),
        ];
        assert_eq!(quantile(0.5, &b), Some(0.01));
        let p99 = quantile(0.99, &b).unwrap();
        assert!((p99 - 0.047).abs() < 1e-9, "{p99}");
        let texts = vec![
            "weir_event_latency_seconds_bucket{job=\"j\",operator=\"alerts\",le=\"0.01\"} 3\n".to_string(),
            "weir_event_latency_seconds_bucket{job=\"j\",operator=\"alerts\",le=\"0.01\"} 4\nweir_event_latency_seconds_bucket{job=\"j\",operator=\"other\",le=\"0.01\"} 9\n".to_string(),
        ];
        assert_eq!(
            buckets(&texts, "weir_event_latency_seconds", "alerts"),
            [(0.01, 7.0)]
        );
    }
}
