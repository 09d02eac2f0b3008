//! `weir diff A B`: compares two outputs — files or Kafka topics — as multisets of rows, for
//! checking a shadow run against the live output before switching over.

use std::collections::BTreeMap;
use std::path::Path;

use super::CliError;

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// An output: a file path, or `kafka://HOST:PORT/TOPIC`.
    a: String,
    /// The other output.
    b: String,
    /// Rows shown from each side when they differ.
    #[arg(long, default_value_t = 5)]
    show: usize,
}

/// The rows of an output, counted.
fn rows(location: &str) -> Result<BTreeMap<String, i64>, CliError> {
    let lines: Vec<String> = match location.strip_prefix("kafka://") {
        Some(rest) => read_kafka(location, rest)?,
        None => std::fs::read_to_string(Path::new(location))
            .map_err(|e| CliError::Usage(format!("cannot read {location}: {e}")))?
            .lines()
            .map(str::to_string)
            .collect(),
    };
    let mut counts = BTreeMap::new();
    for line in lines.into_iter().filter(|l| !l.trim().is_empty()) {
        *counts.entry(line).or_insert(0) += 1;
    }
    Ok(counts)
}

#[cfg(feature = "kafka")]
fn read_kafka(location: &str, rest: &str) -> Result<Vec<String>, CliError> {
    use weir_operators::kafka::{read_topic, Connection};
    let Some((brokers, topic)) = rest.split_once('/') else {
        return Err(CliError::Usage(format!(
            "{location}: expected kafka://HOST:PORT/TOPIC"
        )));
    };
    let conn = Connection {
        brokers: brokers.to_string(),
        properties: Default::default(),
        connect_timeout: std::time::Duration::from_secs(30),
    };
    let messages = read_topic(&conn, topic).map_err(|e| CliError::Failed(anyhow::anyhow!(e)))?;
    Ok(messages
        .into_iter()
        .map(|m| String::from_utf8_lossy(&m.payload.unwrap_or_default()).to_string())
        .collect())
}

#[cfg(not(feature = "kafka"))]
fn read_kafka(location: &str, _: &str) -> Result<Vec<String>, CliError> {
    Err(CliError::Usage(format!(
        "{location}: this weir was built without Kafka support"
    )))
}

pub fn diff(args: DiffArgs) -> Result<(), CliError> {
    let a = rows(&args.a)?;
    let b = rows(&args.b)?;
    let total = |m: &BTreeMap<String, i64>| m.values().sum::<i64>();
    let mut only_a = Vec::new();
    let mut only_b = Vec::new();
    for (line, &n) in &a {
        let m = b.get(line).copied().unwrap_or(0);
        only_a.extend(std::iter::repeat_n(line.as_str(), (n - m).max(0) as usize));
    }
    for (line, &n) in &b {
        let m = a.get(line).copied().unwrap_or(0);
        only_b.extend(std::iter::repeat_n(line.as_str(), (n - m).max(0) as usize));
    }
    if only_a.is_empty() && only_b.is_empty() {
        println!("identical: {} rows in each", total(&a));
        return Ok(());
    }
    println!(
        "differ: {} has {} rows, {} has {}; {} only in the first, {} only in the second",
        args.a,
        total(&a),
        args.b,
        total(&b),
        only_a.len(),
        only_b.len()
    );
    for line in only_a.iter().take(args.show) {
        println!("- {line}");
    }
    for line in only_b.iter().take(args.show) {
        println!("+ {line}");
    }
    Err(CliError::Different)
}
