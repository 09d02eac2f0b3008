//! Reprocessing: start Kafka sources from chosen positions, stop them at chosen ends, and send
//! a run's output to shadow sinks so it can be compared before it replaces the live output.

use std::path::PathBuf;

use weir_operators::kafka::{EndMode, StartMode};

use crate::plan::{Plan, SinkOp, SourceInput};

impl Plan {
    /// Starts the Kafka source `source` (every Kafka source when `None`) at `mode`.
    pub fn set_start(&mut self, source: Option<&str>, mode: StartMode) -> Result<(), String> {
        self.each_kafka_source(source, "--start", |k| k.start = mode.clone())
    }

    /// Stops the Kafka source `source` (every Kafka source when `None`) at `end`.
    pub fn set_until(&mut self, source: Option<&str>, end: EndMode) -> Result<(), String> {
        self.each_kafka_source(source, "--until", |k| k.until = Some(end.clone()))
    }

    fn each_kafka_source(
        &mut self,
        source: Option<&str>,
        option: &str,
        mut apply: impl FnMut(&mut crate::plan::KafkaInput),
    ) -> Result<(), String> {
        let mut applied = 0;
        for s in &mut self.sources {
            if source.is_some_and(|name| name != s.name) {
                continue;
            }
            match &mut s.input {
                SourceInput::Kafka(k) => {
                    apply(k);
                    applied += 1;
                }
                _ if source.is_some() => {
                    return Err(format!("{option}: source `{}` does not read Kafka", s.name));
                }
                _ => {}
            }
        }
        match (applied, source) {
            (0, Some(name)) => Err(format!(
                "{option}: no source `{name}` (sources: {})",
                self.sources
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            (0, None) => Err(format!("{option}: the job has no Kafka source")),
            _ => Ok(()),
        }
    }

    /// Redirects every sink to its shadow: Kafka topic `<topic>.<suffix>`, file
    /// `<path>.<suffix>`, Redis keys `<suffix>:<key>`, Iceberg table `<table>_<suffix>`.
    /// Stdout and blackhole sinks are left as they are. The job becomes `<name>.<suffix>`, so
    /// its checkpoints, transactional ids and consumer group never mix with the live job's.
    pub fn shadow(&mut self, suffix: &str) -> Result<(), String> {
        if suffix.is_empty()
            || !suffix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!(
                "--shadow `{suffix}`: use letters, digits, `_` and `-`"
            ));
        }
        self.name = format!("{}.{suffix}", self.name);
        for sink in &mut self.sinks {
            match &mut sink.op {
                SinkOp::File { path, .. } => {
                    let mut p = path.clone().into_os_string();
                    p.push(format!(".{suffix}"));
                    *path = PathBuf::from(p);
                }
                SinkOp::Kafka(k) => k.topic = format!("{}.{suffix}", k.topic),
                SinkOp::Redis(r) => r.key = r.key.prefixed(&format!("{suffix}:")),
                SinkOp::Iceberg(i) => i.table = format!("{}_{}", i.table, suffix.replace('-', "_")),
                SinkOp::Stdout { .. } | SinkOp::Null => {}
            }
        }
        Ok(())
    }
}

/// Splits `payments=timestamp:...` into the source and the value; `latest` alone applies to
/// every source.
pub fn split_source_option(text: &str) -> (Option<&str>, &str) {
    match text.split_once('=') {
        // `offsets:0=42` has `=` inside the value: only a plain name before it is a source.
        Some((name, value))
            if !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
        {
            (Some(name), value)
        }
        _ => (None, text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_options_split_at_a_plain_name_only() {
        assert_eq!(split_source_option("latest"), (None, "latest"));
        assert_eq!(
            split_source_option("payments=earliest"),
            (Some("payments"), "earliest")
        );
        assert_eq!(
            split_source_option("offsets:0=42,1=7"),
            (None, "offsets:0=42,1=7")
        );
        assert_eq!(
            split_source_option("p=offsets:0=42"),
            (Some("p"), "offsets:0=42")
        );
        assert_eq!(
            split_source_option("timestamp:2026-01-01T00:00:00Z"),
            (None, "timestamp:2026-01-01T00:00:00Z")
        );
    }
}
