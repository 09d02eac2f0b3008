//! Exactly-once from Kafka to Kafka, Redis and Iceberg across crashes: the fraud job reads
//! payments from a real broker (noida-db), checkpoints, and writes alerts and window results in
//! one transaction per checkpoint, to Redis (Debian's redis-server) as versioned writes, and to
//! Iceberg tables (SQL catalog on SQLite) as one snapshot per checkpoint. It is killed with
//! SIGKILL at random moments, or made to abort in the middle of a commit, and restarted with
//! `--restore latest` at changing worker counts; the topics, read committed by kcat (an
//! independent client), the Redis keys, read by redis-cli, and the tables, read by PyIceberg,
//! must equal those of a run that never failed.

mod common;

use std::path::Path;
use std::process::Child;
use std::time::Duration;

use common::kafka::{kcat_payments, kcat_read, PAYMENTS_SCHEMA};
use common::{recovered, spawn_job, stderr, wait, Lcg};
use weir_tests::{read_iceberg, KafkaBroker, RedisServer};

/// The fraud job over `payments`, writing to topics `<prefix>alerts` and `<prefix>windows`,
/// to Redis at `redis` (window hashes, alert streams per user) and to Iceberg tables in `dir`.
fn job(dir: &Path, broker: &KafkaBroker, redis: &str, prefix: &str, interval: &str) {
    let b = broker.bootstrap();
    let d = dir.display();
    let spec = format!(
        r#"
name: fraud-{prefix}eo
tick: 50ms
checkpoint: {{ interval: {interval}, store: store, retain: 3 }}
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
  alerts: {{ from: bursts, kind: kafka, brokers: "{b}", topic: {prefix}alerts, key: user_id, partitions: 4 }}
  windows: {{ from: per_merchant, kind: kafka, brokers: "{b}", topic: {prefix}windows, key: merchant, partitions: 4 }}
  windows_redis: {{ from: per_merchant, kind: redis, url: "{redis}", key: "m:{{merchant}}:{{window_start}}", mode: hash }}
  alerts_redis: {{ from: bursts, kind: redis, url: "{redis}", key: "alerts:{{user_id}}", mode: stream }}
  windows_table: {{ from: per_merchant, kind: iceberg, catalog: "sqlite://{d}/catalog.db", warehouse: "file://{d}/warehouse", table: fraud.windows, partition_by: ["day(window_end)"] }}
  alerts_table: {{ from: bursts, kind: iceberg, catalog: "sqlite://{d}/catalog.db", warehouse: "file://{d}/warehouse", table: fraud.alerts }}
"#
    );
    std::fs::write(dir.join("job.yaml"), spec).unwrap();
}

fn spawn(dir: &Path, workers: usize, restore: bool, crash_at: Option<&str>) -> Child {
    spawn_job(
        dir,
        workers,
        restore,
        crash_at,
        "warn,weir_operators::kafka=info",
    )
}

/// What the job wrote: its two output topics (committed, sorted), its Redis database and
/// its two Iceberg tables in `dir` (rows, sorted).
fn outputs(
    dir: &Path,
    broker: &KafkaBroker,
    prefix: &str,
    redis: &RedisServer,
    db: u32,
) -> [Vec<String>; 5] {
    let table = |name: &str| {
        read_iceberg(
            &dir.join("catalog.db"),
            "weir",
            &format!("file://{}/warehouse", dir.display()),
            &format!("fraud.{name}"),
        )
        .canonical_rows()
    };
    [
        kcat_read(broker, &format!("{prefix}alerts")),
        kcat_read(broker, &format!("{prefix}windows")),
        redis.dump(db),
        table("alerts"),
        table("windows"),
    ]
}

/// A run that never fails, into topics `ref-*` and Redis database 0.
fn reference(broker: &KafkaBroker, redis: &RedisServer) -> [Vec<String>; 5] {
    let dir = tempfile::tempdir().unwrap();
    job(dir.path(), broker, &redis.url(0), "ref-", "300ms");
    let out = wait(spawn(dir.path(), 2, false, None), Duration::from_secs(180));
    assert!(out.status.success(), "{}", stderr(&out));
    let expected = outputs(dir.path(), broker, "ref-", redis, 0);
    assert!(expected.iter().all(|t| !t.is_empty()));
    expected
}

fn assert_same(got: &[Vec<String>; 5], want: &[Vec<String>; 5]) {
    for (name, (g, w)) in [
        "alerts",
        "windows",
        "redis",
        "alerts table",
        "windows table",
    ]
    .iter()
    .zip(got.iter().zip(want))
    {
        let missing: Vec<&String> = w.iter().filter(|m| !g.contains(m)).collect();
        let extra: Vec<&String> = g.iter().filter(|m| !w.contains(m)).collect();
        assert!(
            g == w,
            "{name}: {} items, expected {} ({} missing, {} extra); first missing {:?}; first extra {:?}",
            g.len(),
            w.len(),
            missing.len(),
            extra.len(),
            &missing[..missing.len().min(3)],
            &extra[..extra.len().min(3)],
        );
    }
}

/// The newest complete checkpoint in `dir/store`, by directory name.
fn newest_checkpoint(dir: &Path) -> Option<String> {
    let jobs = std::fs::read_dir(dir.join("store")).ok()?;
    jobs.flatten()
        .flat_map(|job| {
            std::fs::read_dir(job.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .filter(|c| c.path().join("_MANIFEST").exists())
        .map(|c| c.file_name().to_string_lossy().to_string())
        .max()
}

#[test]
fn killed_ten_times_the_topics_hold_each_result_exactly_once() {
    let broker = KafkaBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let kills: u64 = std::env::var("WEIR_SOAK_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(10);
    // Long enough that the job is still running at the last kill (a run is killed within
    // 300 ms of its first checkpoint). Not much more: noida answers a fetch over a large
    // backlog with one response beyond librdkafka's 100 MB receive limit.
    kcat_payments(&broker, d, 30_000 * kills.max(10), 21);
    let redis = RedisServer::start();
    let expected = reference(&broker, &redis);

    job(d, &broker, &redis.url(1), "", "300ms");
    // `WEIR_SOAK_KILLS` and `WEIR_SOAK_SEED` (scripts/soak.sh): more kills, other moments.
    let seed = std::env::var("WEIR_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let mut rng = Lcg(seed);
    let mut resumed = 0;
    for kill in 0..kills {
        let workers = 1 + rng.next(3) as usize;
        let mut child = spawn(d, workers, kill > 0, None);
        // Kill at a random moment after the run has completed a checkpoint of its own (so
        // that every run makes progress however loaded the machine is).
        let seen = newest_checkpoint(d);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while newest_checkpoint(d) == seen && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(rng.next(300)));
        let finished = child.try_wait().unwrap().is_some();
        let _ = child.kill(); // SIGKILL
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        resumed += err.contains("resuming job") as usize;
        assert!(!err.contains("ERROR"), "kill {kill}: {err}");
        assert!(!finished, "run {kill} ended before it was killed: {err}");
    }
    let out = wait(spawn(d, 3, true, None), Duration::from_secs(180));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        resumed as u64 >= kills / 2,
        "most restarts resume from a checkpoint (only {resumed} of {} did)",
        kills - 1
    );
    assert_same(&outputs(d, &broker, "", &redis, 1), &expected);
}

/// Aborts the process at `point` (the second time it is reached), restarts it, and checks the
/// topics: the recovery decision of a crash around a transaction's commit. Returns how many
/// batches the restored run found committed already and how many it committed.
fn crash_in_commit(point: &str, prefix: &str) -> (usize, usize) {
    let broker = KafkaBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    kcat_payments(&broker, d, 100_000, 22);
    let redis = RedisServer::start();
    let expected = reference(&broker, &redis);

    job(d, &broker, &redis.url(1), prefix, "200ms");
    let out = wait(
        spawn(d, 2, false, Some(&format!("{point}:2"))),
        Duration::from_secs(120),
    );
    let err = stderr(&out);
    assert!(
        !out.status.success() && err.contains(&format!("crash point `{point}`")),
        "the run did not crash at {point}: {err}"
    );
    let out = wait(spawn(d, 3, true, None), Duration::from_secs(180));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("resuming job"), "{err}");
    assert_same(&outputs(d, &broker, prefix, &redis, 1), &expected);
    recovered(&err)
}

#[test]
fn a_crash_before_the_commit_aborts_the_transaction_and_commits_the_batch_again() {
    let (_, again) = crash_in_commit("kafka.before_commit", "before-");
    assert!(
        again >= 1,
        "the interrupted batch is committed by the restored run"
    );
}

#[test]
fn a_crash_after_the_commit_does_not_commit_the_batch_twice() {
    let (skipped, _) = crash_in_commit("kafka.after_commit", "after-");
    assert!(
        skipped >= 1,
        "the committed batch is recognised and skipped"
    );
}

#[test]
fn idempotent_delivery_writes_each_batch_with_its_checkpoint_and_a_commit_record() {
    let broker = KafkaBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    kcat_payments(&broker, d, 20_000, 23);
    let b = broker.bootstrap();
    let spec = format!(
        r#"
name: idem
tick: 50ms
checkpoint: {{ interval: 200ms, store: store }}
sources:
  payments: {{ kind: kafka, brokers: "{b}", topic: payments, until: latest, schema: {PAYMENTS_SCHEMA}, event_time: {{ field: ts, max_out_of_orderness: 2s }} }}
steps:
  per_merchant: {{ from: payments, key: merchant, window: {{ kind: tumbling, size: 1m }}, aggregates: {{ n: "count(*)" }} }}
sinks:
  windows: {{ from: per_merchant, kind: kafka, brokers: "{b}", topic: idem-windows, key: merchant, delivery: idempotent, commit_topic: idem-commits }}
  file: {{ from: per_merchant, kind: file, path: out/windows.jsonl }}
"#
    );
    std::fs::write(d.join("job.yaml"), spec).unwrap();
    let out = wait(spawn(d, 2, false, None), Duration::from_secs(120));
    assert!(out.status.success(), "{}", stderr(&out));
    let mut file = weir_tests::lines(&d.join("out/windows.jsonl"));
    file.sort();
    assert!(!file.is_empty());
    assert_eq!(kcat_read(&broker, "idem-windows"), file);
    // Every message names its batch and writer; every batch has its commit record.
    let headers = std::process::Command::new("kcat")
        .args([
            "-b",
            &b,
            "-t",
            "idem-windows",
            "-C",
            "-e",
            "-q",
            "-f",
            "%h\n",
        ])
        .output()
        .unwrap();
    let headers = String::from_utf8_lossy(&headers.stdout).to_string();
    assert!(headers
        .lines()
        .all(|h| h.contains("weir-checkpoint=") && h.contains("weir-worker=")));
    let records = kcat_read(&broker, "idem-commits");
    assert!(!records.is_empty());
}
