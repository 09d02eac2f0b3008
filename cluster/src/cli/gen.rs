//! `weir gen`: synthetic streams as JSON lines.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use weir_engine::data::time::parse_rfc3339;
use weir_operators::source::generator::{write_jsonl, GeneratorConfig, StreamKind};

use super::CliError;

#[derive(Debug, clap::Args)]
pub struct GenArgs {
    /// clicks, iot, payments or device_profiles.
    #[arg(long)]
    stream: String,
    /// Number of events.
    #[arg(long)]
    events: u64,
    /// Output file (`-` for stdout).
    #[arg(long)]
    out: PathBuf,
    /// Seed: the same seed gives the same events.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Event time of the first event (RFC 3339).
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
}

pub fn gen(args: GenArgs) -> Result<(), CliError> {
    let stream = StreamKind::parse(&args.stream).ok_or_else(|| {
        CliError::Usage(format!(
            "--stream {}: expected clicks, iot, payments or device_profiles",
            args.stream
        ))
    })?;
    for (name, v) in [
        ("--late-fraction", args.late_fraction),
        ("--malformed", args.malformed),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return Err(CliError::Usage(format!(
                "{name} {v}: expected a fraction between 0 and 1"
            )));
        }
    }
    let mut config = GeneratorConfig::new(stream, Some(args.events), args.seed);
    config.start_ms = parse_rfc3339(&args.start_time)
        .map_err(|e| CliError::Usage(format!("--start-time: {e}")))?;
    config.step_ms = args.time_step_ms;
    config.disorder_ms = args.disorder_ms;
    config.late_fraction = args.late_fraction;
    config.late_by_ms = args.late_by_ms;
    config.malformed = args.malformed;

    let show = std::io::IsTerminal::is_terminal(&std::io::stderr()) && args.out.as_os_str() != "-";
    let mut progress = |n: u64| {
        if show {
            eprint!("\r{n} / {} events", args.events);
        }
    };
    let written = if args.out.as_os_str() == "-" {
        let stdout = std::io::stdout();
        let mut out = BufWriter::new(stdout.lock());
        let n = write_jsonl(&config, &mut out, &mut progress).context("writing to stdout")?;
        out.flush().context("writing to stdout")?;
        n
    } else {
        let file = File::create(&args.out)
            .with_context(|| format!("cannot create {}", args.out.display()))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let n = write_jsonl(&config, &mut out, &mut progress)
            .with_context(|| format!("writing {}", args.out.display()))?;
        out.flush()
            .with_context(|| format!("writing {}", args.out.display()))?;
        n
    };
    if show {
        eprint!("\r");
    }
    eprintln!(
        "wrote {written} {} events to {}",
        stream.name(),
        args.out.display()
    );
    Ok(())
}
