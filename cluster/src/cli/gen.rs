//! `weir gen`: synthetic streams as JSON lines, to a file or to a Kafka topic; or a recorded
//! JSON-lines file replayed into a topic.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use weir_engine::data::time::parse_rfc3339;
use weir_operators::source::generator::{write_jsonl, GeneratorConfig, StreamKind};

use super::CliError;

#[derive(Debug, clap::Args)]
pub struct GenArgs {
    /// clicks, iot, payments or device_profiles (not with --from).
    #[arg(long)]
    stream: Option<String>,
    /// Number of events (endless to Kafka without it).
    #[arg(long)]
    events: Option<u64>,
    /// Output file (`-` for stdout).
    #[arg(long, conflicts_with_all = ["brokers", "topic"])]
    out: Option<PathBuf>,
    /// Kafka bootstrap servers, to produce to a topic instead of a file.
    #[arg(long, requires = "topic")]
    brokers: Option<String>,
    /// The Kafka topic (created if missing).
    #[arg(long, requires = "brokers")]
    topic: Option<String>,
    /// Partitions of the topic when it is created.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// A topic config for when the topic is created, e.g. `--topic-config retention.ms=60000`
    /// (repeatable; without one for it, retention.ms is -1: history is kept).
    #[arg(long = "topic-config", value_name = "KEY=VALUE", requires = "topic", value_parser = parse_property)]
    topic_configs: Vec<(String, String)>,
    /// A librdkafka producer property, e.g. `-X linger.ms=1` (repeatable).
    #[arg(short = 'X', long = "property", value_name = "KEY=VALUE", requires = "brokers", value_parser = parse_property)]
    properties: Vec<(String, String)>,
    /// Events per second (full speed without).
    #[arg(long)]
    rate: Option<f64>,
    /// Produce the lines of this JSON-lines file instead of generating (Kafka only).
    #[arg(long, conflicts_with = "stream", requires = "topic")]
    from: Option<PathBuf>,
    /// With --from: the JSON field to use as message key.
    #[arg(long, requires = "from")]
    key_field: Option<String>,
    /// With --from: the JSON field holding the event time (RFC 3339 or ms), used as the
    /// message timestamp.
    #[arg(long, requires = "from")]
    time_field: Option<String>,
    /// Seed: the same seed gives the same events.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Event time of the first event (RFC 3339), or `now`: the wall clock when the first
    /// event is produced (with --rate, event times then follow the wall clock).
    #[arg(long, default_value = "2026-01-01T00:00:00Z")]
    start_time: String,
    /// Event time between events, ms.
    #[arg(long, default_value_t = 1.0)]
    time_step_ms: f64,
    /// Events run up to this many ms behind their nominal time.
    #[arg(long, default_value_t = 500)]
    disorder_ms: i64,
    /// Fraction of late events.
    #[arg(long, default_value_t = 0.0)]
    late_fraction: f64,
    /// How far behind late events are, ms.
    #[arg(long, default_value_t = 60_000)]
    late_by_ms: i64,
    /// Fraction of malformed lines.
    #[arg(long, default_value_t = 0.0)]
    malformed: f64,
    /// How long to wait for the Kafka brokers.
    #[arg(long, default_value = "30s", value_parser = |s: &str| humantime::parse_duration(s).map_err(|e| e.to_string()))]
    connect_timeout: Duration,
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("`{s}`: expected KEY=VALUE, e.g. linger.ms=1")),
    }
}

fn usage(message: impl Into<String>) -> CliError {
    CliError::Usage(message.into())
}

impl GenArgs {
    fn config(&self) -> Result<GeneratorConfig, CliError> {
        let name = self
            .stream
            .as_deref()
            .ok_or_else(|| usage("--stream is required (or --from FILE)"))?;
        let stream = StreamKind::parse(name).ok_or_else(|| {
            usage(format!(
                "--stream {name}: expected clicks, iot, payments or device_profiles"
            ))
        })?;
        for (flag, v) in [
            ("--late-fraction", self.late_fraction),
            ("--malformed", self.malformed),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(usage(format!(
                    "{flag} {v}: expected a fraction between 0 and 1"
                )));
            }
        }
        let mut config = GeneratorConfig::new(stream, self.events, self.seed);
        config.start_ms = match self.start_time.as_str() {
            "now" => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            other => parse_rfc3339(other).map_err(|e| usage(format!("--start-time: {e}")))?,
        };
        config.step_ms = self.time_step_ms;
        config.disorder_ms = self.disorder_ms;
        config.late_fraction = self.late_fraction;
        config.late_by_ms = self.late_by_ms;
        config.malformed = self.malformed;
        config.rate = self.rate;
        Ok(config)
    }
}

pub fn gen(args: GenArgs) -> Result<(), CliError> {
    if let Some(r) = args.rate.filter(|r| r.is_nan() || *r <= 0.0) {
        return Err(usage(format!(
            "--rate {r}: expected events per second, more than 0"
        )));
    }
    match (&args.out, &args.brokers) {
        (Some(out), None) => to_file(&args, out.clone()),
        (None, Some(_)) => to_kafka(&args),
        _ => Err(usage(
            "say where to write: --out FILE, or --brokers HOST:PORT --topic TOPIC",
        )),
    }
}

fn to_file(args: &GenArgs, out: PathBuf) -> Result<(), CliError> {
    let config = args.config()?;
    let events = config
        .events
        .ok_or_else(|| usage("--events is required when writing a file"))?;
    let show = std::io::IsTerminal::is_terminal(&std::io::stderr()) && out.as_os_str() != "-";
    let mut progress = |n: u64| {
        if show {
            eprint!("\r{n} / {events} events");
        }
    };
    let written = if out.as_os_str() == "-" {
        let stdout = std::io::stdout();
        let mut w = BufWriter::new(stdout.lock());
        let n = write_jsonl(&config, &mut w, &mut progress).context("writing to stdout")?;
        w.flush().context("writing to stdout")?;
        n
    } else {
        let file =
            File::create(&out).with_context(|| format!("cannot create {}", out.display()))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        let n = write_jsonl(&config, &mut w, &mut progress)
            .with_context(|| format!("writing {}", out.display()))?;
        w.flush()
            .with_context(|| format!("writing {}", out.display()))?;
        n
    };
    if show {
        eprint!("\r");
    }
    eprintln!(
        "wrote {written} {} events to {}",
        config.stream.name(),
        out.display()
    );
    Ok(())
}

/// Holds a producer to a rate, and reports progress once a second.
#[cfg(feature = "kafka")]
struct Pace {
    rate: Option<f64>,
    started: Instant,
    last_report: Instant,
    show: bool,
}

#[cfg(feature = "kafka")]
impl Pace {
    fn new(rate: Option<f64>) -> Self {
        let now = Instant::now();
        Pace {
            rate,
            started: now,
            last_report: now,
            show: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        }
    }

    fn tick(&mut self, sent: u64, delivered: u64) {
        if let Some(rate) = self.rate {
            let due = Duration::from_secs_f64(sent as f64 / rate);
            if let Some(wait) = due.checked_sub(self.started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        if self.show && self.last_report.elapsed() >= Duration::from_secs(1) {
            let secs = self.started.elapsed().as_secs_f64();
            eprint!(
                "\r{sent} sent, {delivered} acknowledged ({:.0}/s)",
                sent as f64 / secs
            );
            self.last_report = Instant::now();
        }
    }
}

#[cfg(feature = "kafka")]
fn to_kafka(args: &GenArgs) -> Result<(), CliError> {
    use weir_operators::kafka::{create_topic, Connection, MessageProducer};
    use weir_operators::source::generator::{Generated, Generator, Pools};

    let brokers = args.brokers.clone().expect("checked");
    let topic = args
        .topic
        .clone()
        .expect("clap requires --topic with --brokers");
    if args.partitions < 1 {
        return Err(usage(format!(
            "--partitions {}: at least 1",
            args.partitions
        )));
    }
    let conn = Connection {
        brokers,
        properties: args.properties.iter().cloned().collect(),
        connect_timeout: args.connect_timeout,
    };
    let failed = |e: weir_operators::kafka::KafkaError| CliError::Failed(anyhow::anyhow!(e));
    // Generated and recorded events carry their event time as the message timestamp, often
    // in the past: keep them, or the broker's time-based retention deletes them at once.
    let mut configs: Vec<(&str, &str)> = args
        .topic_configs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if !configs.iter().any(|(k, _)| *k == "retention.ms") {
        configs.push(("retention.ms", "-1"));
    }
    if create_topic(&conn, &topic, args.partitions, &configs).map_err(failed)? {
        let listed: Vec<String> = configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        eprintln!(
            "created topic `{topic}` with {} partitions ({})",
            args.partitions,
            listed.join(", ")
        );
    }
    let producer = MessageProducer::new(&conn, &topic).map_err(failed)?;
    let mut sent = 0u64;
    let what;
    let mut pace;
    if let Some(path) = &args.from {
        pace = Pace::new(args.rate);
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let fields: Option<serde_json::Value> = serde_json::from_str(line).ok();
            let field = |name: &Option<String>| {
                name.as_ref()
                    .and_then(|n| fields.as_ref().map(|f| f[n.as_str()].clone()))
            };
            let key = field(&args.key_field).and_then(|k| match k {
                serde_json::Value::String(s) => Some(s),
                serde_json::Value::Null => None,
                other => Some(other.to_string()),
            });
            let time = field(&args.time_field).and_then(|t| match t {
                serde_json::Value::String(s) => parse_rfc3339(&s).ok(),
                serde_json::Value::Number(n) => n.as_i64(),
                _ => None,
            });
            producer
                .send(key.as_deref(), line.as_bytes(), time)
                .map_err(failed)?;
            sent += 1;
            pace.tick(sent, producer.delivered());
            if args.events.is_some_and(|n| sent >= n) {
                break;
            }
        }
        what = format!("lines of {}", path.display());
    } else {
        // Resolves `--start-time now` as the first event goes out.
        let config = std::sync::Arc::new(args.config()?);
        pace = Pace::new(args.rate);
        let mut generator = Generator::new(
            config.clone(),
            std::sync::Arc::new(Pools::new(config.cardinalities)),
        );
        let mut line = String::with_capacity(256);
        let mut i = 0u64;
        while config.events.is_none_or(|n| i < n) {
            match generator.event(i) {
                Generated::Row { ts, row } => {
                    line.clear();
                    generator.json(&row, &mut line);
                    producer
                        .send(generator.key(&row), line.as_bytes(), Some(ts))
                        .map_err(failed)?;
                }
                Generated::Malformed { line: bad, ts } => producer
                    .send(None, bad.as_bytes(), Some(ts))
                    .map_err(failed)?,
            }
            i += 1;
            sent += 1;
            pace.tick(sent, producer.delivered());
        }
        what = format!("{} events", config.stream.name());
    }
    let delivered = producer.finish(Duration::from_secs(60)).map_err(failed)?;
    if pace.show {
        eprint!("\r");
    }
    eprintln!("produced {sent} {what} to topic `{topic}` ({delivered} acknowledged)");
    Ok(())
}

#[cfg(not(feature = "kafka"))]
fn to_kafka(_: &GenArgs) -> Result<(), CliError> {
    Err(usage(
        "this weir was built without Kafka support (cargo feature `kafka`)",
    ))
}
