//! Throughput harness: events/s and events per CPU-second (user + sys) of whole jobs, and the
//! JSON decoders weir could use. Figures go to `benches/RESULTS.md`.
//!
//! ```text
//! cargo run --release -p weir-benches -- all
//! cargo run --release -p weir-benches -- generator --events 20000000 --workers 1,2
//! cargo run --release -p weir-benches -- file --events 1000000
//! cargo run --release -p weir-benches -- decode
//! cargo run --release -p weir-benches -- operators --events 2000000   # rules, rolling, joins
//! cargo run --release -p weir-benches -- kafka [--brokers HOST:PORT]   # default: starts noida
//! cargo run --release -p weir-benches -- checkpoints --events 20000000 --workers 2
//! cargo run --release -p weir-benches -- checkpoint-state --workers 2   # duration vs state size
//! cargo run --release -p weir-benches -- checkpoint-throughput --events 60000000 --workers 2
//! cargo run --release -p weir-benches -- checkpoint-cost --events 1000000   # needs valgrind
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use weir_engine::data::{JsonDecoder, Row, RowBuilder, SchemaRef, Value};
use weir_engine::stats::JobStats;
use weir_jobs::run::{run, RunOptions};
use weir_operators::source::generator::{write_jsonl, GeneratorConfig, StreamKind};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod checkpoint_state;
mod checkpoints;
mod kafka;
mod latency;
mod operators;
mod sinks;

/// CPU time (user + sys, all threads) of this process so far, from `/proc/self/stat`.
fn cpu_time() -> Duration {
    process_cpu_time("self").expect("/proc/self/stat (Linux)")
}

/// Runs `spec` (with its `checkpoint:` section, from scratch) at `workers` workers: the
/// summary, wall seconds and CPU seconds.
fn timed_checkpointed_run(
    spec: &str,
    workers: usize,
) -> Result<(weir_jobs::run::RunSummary, f64, f64)> {
    let plan = Arc::new(weir_jobs::load_spec(spec, &[]).map_err(|e| anyhow::anyhow!("{e}"))?);
    let mut options = RunOptions::local(workers);
    options.durable =
        weir_jobs::run::Durable::for_plan(&plan, None).map_err(|e| anyhow::anyhow!(e))?;
    let (cpu0, t0) = (cpu_time(), Instant::now());
    let summary = run(plan, options, Arc::new(JobStats::default()))?;
    Ok((
        summary,
        t0.elapsed().as_secs_f64(),
        (cpu_time() - cpu0).as_secs_f64(),
    ))
}

/// CPU time (user + sys) of this process's children that have ended and been waited for
/// (`cutime` and `cstime` of `/proc/self/stat`).
fn cpu_time_of_children() -> Duration {
    stat_cpu_time("self", 13).expect("/proc/self/stat (Linux)")
}

/// CPU time (user + sys, all threads) of process `pid` (or `self`) so far.
fn process_cpu_time(pid: &str) -> Option<Duration> {
    stat_cpu_time(pid, 11)
}

/// The sum of two adjacent tick counts of `/proc/<pid>/stat`, from field `first` after the
/// parenthesised command name (11: utime and stime; 13: cutime and cstime).
fn stat_cpu_time(pid: &str, first: usize) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        fields.get(first)?.parse::<u64>().ok()? + fields.get(first + 1)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(
        ticks as f64 / clock_ticks_per_second(),
    ))
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

struct Measurement {
    scenario: String,
    workers: usize,
    events: u64,
    wall: Duration,
    cpu: Duration,
    /// CPU time of the Kafka broker during the run, when it runs on this machine.
    broker_cpu: Option<Duration>,
}

impl Measurement {
    fn print_header() {
        println!(
            "{:<46} {:>7} {:>11} {:>8} {:>12} {:>8} {:>14}",
            "scenario", "workers", "events", "wall s", "events/s", "cpu s", "events/cpu-s"
        );
    }
    fn print(&self) {
        let wall = self.wall.as_secs_f64();
        let cpu = self.cpu.as_secs_f64();
        println!(
            "{:<46} {:>7} {:>11} {:>8.2} {:>12.0} {:>8.2} {:>14.0}",
            self.scenario,
            self.workers,
            self.events,
            wall,
            self.events as f64 / wall,
            cpu,
            self.events as f64 / cpu
        );
        if let Some(b) = self.broker_cpu {
            println!(
                "{:>46}   the broker used another {:.2} cpu s ({:.0} events per cpu-s of weir + broker)",
                "",
                b.as_secs_f64(),
                self.events as f64 / (cpu + b.as_secs_f64())
            );
        }
    }
}

/// Runs a spec in this process `repeat` times and prints the median run (by events per
/// CPU-second) with the spread; this machine is shared and single runs vary by ±10%.
/// `broker`: the pid of a local Kafka broker whose CPU time is reported too.
fn measure(
    scenario: &str,
    spec: &str,
    workers: usize,
    repeat: usize,
    broker: Option<u32>,
) -> Result<Measurement> {
    let broker_cpu = || broker.and_then(|pid| process_cpu_time(&pid.to_string()));
    let plan = Arc::new(weir_jobs::load_spec(spec, &[]).map_err(|e| anyhow::anyhow!("{e}"))?);
    let mut runs = Vec::new();
    for _ in 0..repeat.max(1) {
        let stats = Arc::new(JobStats::default());
        let cpu0 = cpu_time();
        let broker0 = broker_cpu();
        let t0 = Instant::now();
        let summary = run(plan.clone(), RunOptions::local(workers), stats)?;
        runs.push(Measurement {
            scenario: scenario.to_string(),
            workers,
            events: summary.stats.records_in,
            wall: t0.elapsed(),
            cpu: cpu_time() - cpu0,
            broker_cpu: broker_cpu().zip(broker0).map(|(b, b0)| b - b0),
        });
    }
    let per_cpu = |m: &Measurement| m.events as f64 / m.cpu.as_secs_f64();
    runs.sort_by(|a, b| per_cpu(a).total_cmp(&per_cpu(b)));
    let (lo, hi) = (per_cpu(&runs[0]), per_cpu(&runs[runs.len() - 1]));
    let m = runs.swap_remove(runs.len() / 2);
    m.print();
    if repeat > 1 {
        println!(
            "{:>46}   median of {repeat}; events/cpu-s ranged {lo:.0} .. {hi:.0}",
            ""
        );
    }
    Ok(m)
}

fn generator_spec(events: u64) -> String {
    format!(
        r#"
name: bench-generator
sources:
  payments: {{ kind: generator, stream: payments, events: {events}, partitions: 8, seed: 1, event_time: {{ max_out_of_orderness: 1s }} }}
steps:
  per_user_minute: {{ from: payments, key: user_id, window: {{ kind: tumbling, size: 1m }}, aggregates: {{ n: "count(*)", total: "sum(amount)" }} }}
sinks:
  out: {{ from: per_user_minute, kind: blackhole }}
"#
    )
}

fn file_spec(input: &Path, output: &Path) -> String {
    format!(
        r#"
name: bench-file
sources:
  payments:
    kind: file
    path: "{}"
    schema: {{ payment_id: string, user_id: string, amount: float, currency: string, status: string, merchant: string, ts: timestamp }}
    event_time: {{ field: ts, max_out_of_orderness: 1s }}
steps:
  per_user_minute: {{ from: payments, key: user_id, window: {{ kind: tumbling, size: 1m }}, aggregates: {{ n: "count(*)", total: "sum(amount)" }} }}
sinks:
  out: {{ from: per_user_minute, kind: file, path: "{}" }}
"#,
        input.display(),
        output.display()
    )
}

/// The benchmark input: `events` payments as JSON lines, generated once and reused.
fn payments_file(events: u64) -> Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("payments-{events}.jsonl"));
    if !path.exists() {
        let tmp = path.with_extension("tmp");
        let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        let config = GeneratorConfig::new(StreamKind::Payments, Some(events), 42);
        write_jsonl(&config, &mut out, |_| {})?;
        std::io::Write::flush(&mut out)?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(path)
}

/// Decoding throughput of the candidate JSON decoders on the payments lines.
fn decode(events: u64) -> Result<()> {
    let path = payments_file(events)?;
    let text = std::fs::read(&path)?;
    let lines: Vec<&[u8]> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let schema: SchemaRef = StreamKind::Payments.schema();
    println!(
        "{:<46} {:>12} {:>10}",
        "decoder (payments lines → rows)", "lines/s", "MB/s"
    );
    // Best of three: the first pass also pays for page faults of fresh memory.
    // WEIR_BENCH_ONLY=scanner runs only the decoders whose name contains it (for profiling).
    let only = std::env::var("WEIR_BENCH_ONLY").unwrap_or_default();
    let report = |name: &str, run: &mut dyn FnMut() -> usize| {
        if !name.contains(only.as_str()) {
            return;
        }
        let mut best = f64::MAX;
        let mut n = 0;
        for _ in 0..3 {
            let t0 = Instant::now();
            n = run();
            best = best.min(t0.elapsed().as_secs_f64());
        }
        println!(
            "{name:<46} {:>12.0} {:>10.0}",
            n as f64 / best,
            text.len() as f64 / best / 1e6
        );
    };
    let mut decoder = JsonDecoder::new(schema.clone());
    report("schema-driven scanner (weir's decoder)", &mut || {
        lines.iter().filter(|l| decoder.decode(l).is_ok()).count()
    });
    report("serde_json, streaming into the row", &mut || {
        lines
            .iter()
            .filter(|l| decoder.decode_serde(l).is_ok())
            .count()
    });
    report("sonic-rs, streaming into the row", &mut || {
        lines
            .iter()
            .filter(|l| {
                let mut de = sonic_rs::Deserializer::from_slice(l);
                decoder.decode_from(&mut de).is_ok()
            })
            .count()
    });
    let mut builder = RowBuilder::new(schema.len());
    report("serde_json::Value tree, then the row", &mut || {
        let mut ok = 0;
        for l in &lines {
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(l) else {
                continue;
            };
            for (i, f) in schema.fields().iter().enumerate() {
                match &v[&f.name] {
                    serde_json::Value::String(s) => builder.set_str(i, s),
                    serde_json::Value::Number(n) => builder.set_float(i, n.as_f64().unwrap_or(0.0)),
                    _ => builder.set_null(i),
                }
            }
            let row: Row = builder.finish();
            ok += (row.get(0) != Value::Null) as usize;
        }
        ok
    });
    Ok(())
}

fn parse_workers(s: &str) -> Result<Vec<usize>> {
    s.split(',')
        .map(|w| w.trim().parse().context("--workers takes a list like 1,2"))
        .collect()
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let what = args.first().map(String::as_str).unwrap_or("all");
    let mut events: Option<u64> = None;
    let mut workers = vec![1, 2];
    let mut repeat = 3;
    let mut brokers = None;
    let mut rate: u64 = 50_000;
    let mut seconds: u64 = 20;
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--events" => events = Some(args.get(i + 1).context("--events N")?.parse()?),
            "--workers" => workers = parse_workers(args.get(i + 1).context("--workers 1,2")?)?,
            "--repeat" => repeat = args.get(i + 1).context("--repeat N")?.parse()?,
            "--brokers" => brokers = Some(args.get(i + 1).context("--brokers HOST:PORT")?.clone()),
            "--rate" => rate = args.get(i + 1).context("--rate N")?.parse()?,
            "--seconds" => seconds = args.get(i + 1).context("--seconds N")?.parse()?,
            other => bail!("unknown argument `{other}`"),
        }
        i += 2;
    }
    if what == "all" || what == "decode" {
        decode(events.unwrap_or(1_000_000))?;
        println!();
    }
    if what == "all" || what == "generator" || what == "file" {
        Measurement::print_header();
    }
    if what == "all" || what == "generator" {
        let n = events.unwrap_or(10_000_000);
        for &w in &workers {
            measure(
                "generator → tumbling 1m → blackhole",
                &generator_spec(n),
                w,
                repeat,
                None,
            )?;
        }
    }
    if what == "all" || what == "file" {
        let n = events.unwrap_or(1_000_000);
        let input = payments_file(n)?;
        let out = tempfile_dir()?;
        for &w in &workers {
            measure(
                &format!("{n}-line payments JSONL → tumbling 1m → file"),
                &file_spec(&input, &out.join("out.jsonl")),
                w,
                repeat,
                None,
            )?;
        }
        std::fs::remove_dir_all(&out).ok();
    }
    if what == "all" || what == "operators" {
        println!();
        Measurement::print_header();
        operators::run(events.unwrap_or(2_000_000), &workers, repeat)?;
    }
    if what == "latency" {
        // Not part of `all`: it needs the release `weir` binary beside this one.
        latency::run(rate, seconds, brokers.clone())?;
    }
    if what == "all" || what == "kafka" {
        println!();
        kafka::run(events.unwrap_or(1_000_000), &workers, repeat, brokers)?;
    }
    // The fraud job with checkpoints off / every 10 s / every 1 s: its events, at the most
    // workers asked for.
    let fraud = (events.unwrap_or(20_000_000), workers[workers.len() - 1]);
    if what == "all" || what == "checkpoints" {
        println!();
        checkpoints::run_all(fraud.0, fraud.1, repeat)?;
    }
    if what == "checkpoint-throughput" {
        // Part of `checkpoints`; alone here.
        checkpoints::throughput(fraud.0, fraud.1, repeat)?;
    }
    if what == "checkpoint-cost" {
        // Not part of `all`: needs valgrind and the release `weir` beside this binary.
        checkpoints::cost(events.unwrap_or(1_000_000))?;
    }
    if what == "checkpoint-state" {
        // Part of `checkpoints`; alone here.
        // WEIR_BENCH_SIZES=100,1000 picks the state sizes (MB).
        let sizes: Vec<u64> = std::env::var("WEIR_BENCH_SIZES")
            .unwrap_or_else(|_| "10,100,1000".into())
            .split(',')
            .map(|s| s.trim().parse())
            .collect::<Result<_, _>>()
            .context("WEIR_BENCH_SIZES: sizes in MB, comma-separated")?;
        checkpoint_state::run(workers[workers.len() - 1], &sizes, 16, 100_000)?;
    }
    if what == "all" || what == "sinks" {
        println!();
        sinks::run_sinks(events.unwrap_or(2_000_000), &workers)?;
    }
    if ![
        "all",
        "decode",
        "generator",
        "file",
        "operators",
        "kafka",
        "checkpoints",
        "checkpoint-throughput",
        "checkpoint-cost",
        "checkpoint-state",
        "sinks",
        "latency",
    ]
    .contains(&what)
    {
        bail!(
            "unknown benchmark `{what}`: expected all, decode, generator, file, operators, kafka, checkpoints, checkpoint-throughput, checkpoint-cost, checkpoint-state, sinks or latency"
        );
    }
    Ok(())
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("weir-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
