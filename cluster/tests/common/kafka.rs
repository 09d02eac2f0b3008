//! Kafka helpers of the end-to-end tests: a connection to the test broker, payments produced
//! with kcat, topics read back with kcat (independent of weir's own client).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use weir_operators::kafka::{create_topic, Connection};
use weir_tests::KafkaBroker;

use super::{run, stderr};

/// Partitions of the topics the tests create.
pub const PARTITIONS: i32 = 4;

/// The payments schema, as a spec writes it.
pub const PAYMENTS_SCHEMA: &str =
    "{ payment_id: string, user_id: string, amount: float, currency: string, status: string, merchant: string, ts: timestamp }";

/// weir's client settings for `broker`.
pub fn conn(broker: &KafkaBroker) -> Connection {
    Connection {
        brokers: broker.bootstrap(),
        properties: Default::default(),
        connect_timeout: Duration::from_secs(20),
    }
}

/// Writes `events` generated payments to `dir/payments.jsonl` (in order enough that nothing is
/// late under any partitioning) and produces them with kcat to a 4-partition topic `payments`.
pub fn kcat_payments(broker: &KafkaBroker, dir: &Path, events: u64, seed: u64) {
    let (events, seed) = (events.to_string(), seed.to_string());
    let gen = run(
        &[
            "gen",
            "--stream",
            "payments",
            "--events",
            &events,
            "--seed",
            &seed,
            "--disorder-ms",
            "200",
            "--out",
            "payments.jsonl",
        ],
        dir,
    );
    assert!(gen.status.success(), "{}", stderr(&gen));
    create_topic(
        &conn(broker),
        "payments",
        PARTITIONS,
        &[("retention.ms", "-1")],
    )
    .unwrap();
    let kcat = Command::new("kcat")
        .args([
            "-b",
            &broker.bootstrap(),
            "-t",
            "payments",
            "-P",
            "-l",
            "payments.jsonl",
        ])
        .current_dir(dir)
        .output()
        .expect("kcat (Debian package kcat) is needed: run scripts/test.sh");
    assert!(
        kcat.status.success(),
        "kcat: {}",
        String::from_utf8_lossy(&kcat.stderr)
    );
}

/// Every message value of `topic`, read with kcat, sorted.
pub fn kcat_read(broker: &KafkaBroker, topic: &str) -> Vec<String> {
    let read = Command::new("kcat")
        .args([
            "-b",
            &broker.bootstrap(),
            "-t",
            topic,
            "-C",
            "-e",
            "-q",
            "-f",
            "%s\n",
        ])
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "kcat: {}",
        String::from_utf8_lossy(&read.stderr)
    );
    let mut values: Vec<String> = String::from_utf8(read.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    values.sort();
    values
}
