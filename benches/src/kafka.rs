//! Kafka scenarios: payments JSON on a 4-partition topic → filter + tumbling window → a
//! topic, the same job reading the file instead, and the source alone (→ blackhole). The broker
//! is started here (noida, as in the tests) unless `--brokers` names one; its CPU time is
//! reported next to weir's, since on this machine both share the same two cores.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use weir_operators::kafka::{create_topic, fetch_high_watermarks, Connection, MessageProducer};

use crate::{measure, payments_file, Measurement};

const PARTITIONS: i32 = 4;

fn connection(brokers: &str) -> Connection {
    Connection {
        brokers: brokers.to_string(),
        properties: Default::default(),
        connect_timeout: Duration::from_secs(30),
    }
}

/// The topic holding the `events`-line payments file, produced once per broker (round-robin
/// over the partitions, so each holds a quarter in file order).
fn input_topic(brokers: &str, events: u64) -> Result<String> {
    let conn = connection(brokers);
    let topic = format!("bench-payments-{events}");
    let present: i64 = fetch_high_watermarks(&conn, &topic)
        .map(|ends| ends.values().map(|(low, high)| high - low).sum())
        .unwrap_or(0);
    if present == events as i64 {
        return Ok(topic);
    }
    if present != 0 {
        anyhow::bail!("topic `{topic}` on {brokers} holds {present} messages, not {events}: delete it or use another broker");
    }
    create_topic(&conn, &topic, PARTITIONS, &[("retention.ms", "-1")])?;
    let path = payments_file(events)?;
    let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let producer = MessageProducer::new(&conn, &topic)?;
    for (i, line) in text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        producer.send_to(Some(i as i32 % PARTITIONS), None, line, None)?;
    }
    let acknowledged = producer.finish(Duration::from_secs(120))?;
    eprintln!("produced {acknowledged} payments to `{topic}` on {brokers}");
    Ok(topic)
}

const QUERY: &str = r#"
steps:
  succeeded: { from: payments, filter: "status = 'SUCCESS'" }
  per_user_minute: { from: succeeded, key: user_id, window: { kind: tumbling, size: 1m }, aggregates: { n: "count(*)", total: "sum(amount)" } }
"#;

const SCHEMA: &str = "{ payment_id: string, user_id: string, amount: float, currency: string, status: string, merchant: string, ts: timestamp }";

fn kafka_source(brokers: &str, topic: &str) -> String {
    format!(
        "  payments: {{ kind: kafka, brokers: \"{brokers}\", topic: {topic}, until: latest, partition_discovery: 0s, schema: {SCHEMA}, event_time: {{ field: ts, max_out_of_orderness: 1s }} }}"
    )
}

fn file_source(path: &Path) -> String {
    format!(
        "  payments: {{ kind: file, path: \"{}\", schema: {SCHEMA}, event_time: {{ field: ts, max_out_of_orderness: 1s }} }}",
        path.display()
    )
}

fn kafka_sink(brokers: &str, topic: &str) -> String {
    format!("  out: {{ from: per_user_minute, kind: kafka, brokers: \"{brokers}\", topic: {topic}, key: user_id, partitions: {PARTITIONS} }}")
}

fn spec(name: &str, source: &str, query: &str, sink: &str) -> String {
    format!("name: {name}\nsources:\n{source}\n{query}\nsinks:\n{sink}\n")
}

/// Runs the Kafka scenarios.
pub fn run(events: u64, workers: &[usize], repeat: usize, brokers: Option<String>) -> Result<()> {
    let broker = match brokers {
        Some(_) => None,
        None => Some(weir_tests::KafkaBroker::start()),
    };
    let brokers = brokers.unwrap_or_else(|| broker.as_ref().expect("started").bootstrap());
    let pid = broker.as_ref().and_then(|b| b.pid());
    let topic = input_topic(&brokers, events)?;
    let file = payments_file(events)?;
    Measurement::print_header();
    let mut run_no = 0;
    let mut out_topic = || {
        run_no += 1;
        format!("bench-out-{}-{run_no}", std::process::id())
    };
    for &w in workers {
        measure(
            &format!("{events}-msg Kafka (4 part.) → blackhole"),
            &spec(
                "bench-kafka-source",
                &kafka_source(&brokers, &topic),
                "steps: {}",
                "  out: { from: payments, kind: blackhole }",
            ),
            w,
            repeat,
            pid,
        )?;
        measure(
            &format!("{events}-msg Kafka → filter + window → Kafka"),
            &spec(
                "bench-kafka",
                &kafka_source(&brokers, &topic),
                QUERY,
                &kafka_sink(&brokers, &out_topic()),
            ),
            w,
            repeat,
            pid,
        )?;
        measure(
            &format!("{events}-line file → filter + window → Kafka"),
            &spec(
                "bench-file-kafka",
                &file_source(&file),
                QUERY,
                &kafka_sink(&brokers, &out_topic()),
            ),
            w,
            repeat,
            pid,
        )?;
    }
    Ok(())
}
