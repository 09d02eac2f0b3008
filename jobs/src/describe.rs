//! A readable account of a plan: what `weir validate` prints.

use std::fmt::{self, Write};

use weir_engine::data::time::format_rfc3339;
use weir_operators::kafka::{EndMode, StartMode};
use weir_operators::window::WindowKind;

use crate::plan::{Plan, SinkOp, SourceInput, StepOp};

fn start_text(start: &StartMode) -> String {
    match start {
        StartMode::Earliest => "earliest".into(),
        StartMode::Latest => "latest".into(),
        StartMode::Group => "the group's offsets".into(),
        StartMode::Timestamp(ms) => format_rfc3339(*ms),
        StartMode::Offsets(o) => format!("offsets {o:?}"),
    }
}

fn duration(ms: i64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms.max(0) as u64)).to_string()
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "job {}: {} worker(s) per process, {} key groups, tick {}",
            self.name,
            self.parallelism,
            self.key_groups.count(),
            humantime::format_duration(self.tick)
        )?;
        if let Some(c) = &self.checkpoint {
            writeln!(
                f,
                "checkpoints every {} to {} (keep {})",
                humantime::format_duration(c.interval),
                c.store,
                c.retain
            )?;
        }
        writeln!(f, "\nsources")?;
        for s in &self.sources {
            let what = match &s.input {
                SourceInput::File {
                    patterns,
                    split_size,
                } => {
                    format!(
                        "file {} (json lines, splits of {} MiB)",
                        patterns.join(", "),
                        split_size >> 20
                    )
                }
                SourceInput::Kafka(k) => {
                    let mut w = format!(
                        "kafka topic {} on {} from {}",
                        k.topic,
                        k.brokers,
                        start_text(&k.start)
                    );
                    match &k.until {
                        Some(EndMode::Latest) => w.push_str(" to the end at start"),
                        Some(EndMode::Timestamp(ms)) => {
                            let _ = write!(w, " to {}", format_rfc3339(*ms));
                        }
                        None => w.push_str(", endless"),
                    }
                    w
                }
                SourceInput::Generator(g) => {
                    let mut w = format!(
                        "generator {} ({} partitions, seed {}",
                        g.stream.name(),
                        g.partitions,
                        g.seed
                    );
                    match g.events {
                        Some(n) => {
                            let _ = write!(w, ", {n} events");
                        }
                        None => w.push_str(", endless"),
                    }
                    if let Some(r) = g.rate {
                        let _ = write!(w, ", {r} events/s");
                    }
                    let _ = write!(w, ", from {})", format_rfc3339(g.start_ms));
                    w
                }
            };
            writeln!(f, "  {:<20} {what}", s.name)?;
            writeln!(
                f,
                "  {:<20} event time `{}`, out-of-orderness {}{}",
                "",
                s.schema.field(s.ts_column).name,
                duration(s.max_out_of_orderness),
                s.idle_timeout
                    .map(|t| format!(", idle after {}", humantime::format_duration(t)))
                    .unwrap_or_default()
            )?;
            writeln!(f, "  {:<20} {}", "", s.schema)?;
        }
        if !self.steps.is_empty() {
            writeln!(f, "\nsteps (dataflow order)")?;
        }
        for s in &self.steps {
            let what = match &s.op {
                StepOp::FilterProject { filter, project } => {
                    let mut w = String::new();
                    if let Some(e) = filter {
                        let _ = write!(w, "filter {e}");
                    }
                    if let Some(p) = project {
                        if !w.is_empty() {
                            w.push_str("; ");
                        }
                        let cols: Vec<String> = s
                            .schema
                            .fields()
                            .iter()
                            .zip(p)
                            .map(|(c, e)| format!("{} = {e}", c.name))
                            .collect();
                        let _ = write!(w, "project {}", cols.join(", "));
                    }
                    w
                }
                StepOp::Window {
                    key_columns,
                    kind,
                    allowed_lateness,
                    aggregates,
                } => {
                    let shape = match kind {
                        WindowKind::Tumbling { size } => format!("tumbling {}", duration(*size)),
                        WindowKind::Sliding { size, slide } => {
                            format!("sliding {} every {}", duration(*size), duration(*slide))
                        }
                        WindowKind::Session { gap } => format!("session gap {}", duration(*gap)),
                    };
                    let keys: Vec<&str> = (0..key_columns.len())
                        .map(|i| s.schema.field(i).name.as_str())
                        .collect();
                    let aggs: Vec<String> = aggregates
                        .list()
                        .iter()
                        .map(|a| {
                            let arg = a
                                .call
                                .argument
                                .as_ref()
                                .map_or("*".to_string(), |e| e.to_string());
                            format!("{} = {}({arg})", a.name, a.call.function.name())
                        })
                        .collect();
                    format!(
                        "window {shape} by [{}], lateness {}: {}",
                        keys.join(", "),
                        duration(*allowed_lateness),
                        aggs.join(", ")
                    )
                }
                StepOp::Keyed {
                    summary,
                    allowed_lateness,
                    ..
                } if *allowed_lateness > 0 => {
                    format!("{summary}; lateness {}", duration(*allowed_lateness))
                }
                StepOp::Keyed { summary, .. } => summary.clone(),
            };
            match &s.right {
                Some(right) => writeln!(f, "  {:<20} ← {} ⋈ {right}", s.name, s.input)?,
                None => writeln!(f, "  {:<20} ← {}", s.name, s.input)?,
            }
            writeln!(f, "  {:<20} {what}", "")?;
            writeln!(f, "  {:<20} {}", "", s.schema)?;
        }
        writeln!(f, "\nsinks")?;
        for s in &self.sinks {
            let what = match &s.op {
                SinkOp::File { path, .. } => format!("file {}", path.display()),
                SinkOp::Stdout { .. } => "stdout".to_string(),
                SinkOp::Null => "blackhole (counted, dropped)".to_string(),
                SinkOp::Kafka(k) => format!(
                    "kafka topic {} on {}{}",
                    k.topic,
                    k.brokers,
                    k.key
                        .as_ref()
                        .map(|e| format!(", key {e}"))
                        .unwrap_or_default()
                ),
                SinkOp::Redis(r) => format!("redis {:?} keys `{}` on {}", r.mode, r.key, r.url),
                SinkOp::Iceberg(i) => format!(
                    "iceberg table {} in {}{}",
                    i.table,
                    i.catalog,
                    if i.partition_by.is_empty() {
                        String::new()
                    } else {
                        let fields: Vec<String> = i.partition_by.iter().map(|p| p.name()).collect();
                        format!(", partitioned by {}", fields.join(", "))
                    }
                ),
            };
            writeln!(f, "  {:<20} ← {}: {what}", s.name, s.input)?;
        }
        Ok(())
    }
}
