//! The Redis sink against Debian's redis-server on a free loopback port, read back with
//! redis-cli: every mode writes what the job's file twin writes, versions keep older values
//! from overwriting newer ones, and a server that is not there is a clear error.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{run, stderr};
use weir_engine::data::{DataType, Field, Row, Schema, TimestampFormat, Value};
use weir_engine::event::Event;
use weir_operators::redis::{RedisCommitter, RedisMode, RedisSinkConfig, Template};
use weir_operators::sink::TwoPhase;
use weir_tests::{json_lines, RedisServer};

fn job(dir: &Path, url: &str, checkpoint: bool) {
    let checkpoint = match checkpoint {
        true => "checkpoint: { interval: 200ms, store: store }",
        false => "",
    };
    let spec = format!(
        r#"
name: redis-modes
tick: 50ms
{checkpoint}
sources:
  payments: {{ kind: generator, stream: payments, events: 20000, seed: 3, partitions: 4 }}
steps:
  per_merchant: {{ from: payments, key: merchant, window: {{ kind: tumbling, size: 1m }}, aggregates: {{ n: "count(*)", revenue: "sum(amount)" }} }}
  bursts: {{ from: payments, rule: {{ key: user_id, count_over: 10m, threshold: 3, where: "status = 'FAILED'", id: payment_id }} }}
sinks:
  windows_file: {{ from: per_merchant, kind: file, path: out/windows.jsonl }}
  alerts_file: {{ from: bursts, kind: file, path: out/alerts.jsonl }}
  windows: {{ from: per_merchant, kind: redis, url: "{url}", key: "m:{{merchant}}:{{window_start}}", mode: hash }}
  latest: {{ from: per_merchant, kind: redis, url: "{url}", key: "latest:{{merchant}}", mode: string, ttl: 1h }}
  board: {{ from: per_merchant, kind: redis, url: "{url}", key: "board:{{window_start}}", mode: sorted_set, member: "{{merchant}}", score: revenue }}
  alerts: {{ from: bursts, kind: redis, url: "{url}", key: "alerts", mode: stream }}
"#
    );
    std::fs::write(dir.join("job.yaml"), spec).unwrap();
}

fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn check_modes(redis: &RedisServer, db: u32, dir: &Path) {
    let windows = json_lines(&dir.join("out/windows.jsonl"));
    let alerts = json_lines(&dir.join("out/alerts.jsonl"));
    assert!(windows.len() > 50 && !alerts.is_empty());
    // hash: one per window, a field per column.
    for w in windows.iter().step_by(50) {
        let key = format!("m:{}:{}", text(&w["merchant"]), text(&w["window_start"]));
        let fields: BTreeMap<String, String> = redis
            .cli(db, &["HGETALL", &key])
            .chunks(2)
            .map(|c| (c[0].clone(), c[1].clone()))
            .collect();
        for column in ["merchant", "window_start", "window_end", "n", "revenue"] {
            assert_eq!(
                fields.get(column),
                Some(&text(&w[column])),
                "{key} {column}"
            );
        }
        assert!(fields.contains_key("__weir_version"), "{key}");
    }
    let hashes = redis.cli(db, &["--scan", "--pattern", "m:*"]).len();
    assert_eq!(hashes, windows.len(), "one hash per window");
    // string: the newest window of each merchant, as JSON, with a TTL.
    let mut newest: BTreeMap<String, &serde_json::Value> = BTreeMap::new();
    for w in &windows {
        let m = text(&w["merchant"]);
        if newest
            .get(&m)
            .is_none_or(|n| text(&n["window_start"]) < text(&w["window_start"]))
        {
            newest.insert(m, w);
        }
    }
    for (m, w) in &newest {
        let got = redis.cli(db, &["GET", &format!("latest:{m}")]).join("");
        let got: serde_json::Value = serde_json::from_str(&got).unwrap();
        assert_eq!(&got, *w, "latest:{m}");
        let ttl: i64 = redis.cli(db, &["PTTL", &format!("latest:{m}")])[0]
            .parse()
            .unwrap();
        assert!(
            ttl > 3_000_000 && ttl <= 3_600_000,
            "latest:{m} expires in {ttl} ms"
        );
    }
    // sorted_set: each window's merchants by revenue.
    let mut boards: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
    for w in &windows {
        let revenue = w["revenue"].as_f64().unwrap();
        boards
            .entry(text(&w["window_start"]))
            .or_default()
            .push((text(&w["merchant"]), revenue));
    }
    for (start, members) in boards.iter().take(5) {
        let got = redis.cli(
            db,
            &["ZRANGE", &format!("board:{start}"), "0", "-1", "WITHSCORES"],
        );
        let got: BTreeMap<String, f64> = got
            .chunks(2)
            .map(|c| (c[0].clone(), c[1].parse().unwrap()))
            .collect();
        assert_eq!(got.len(), members.len(), "board:{start}");
        for (m, revenue) in members {
            assert!((got[m] - revenue).abs() < 1e-6, "board:{start} {m}");
        }
    }
    // stream: one entry per alert.
    let len: usize = redis.cli(db, &["XLEN", "alerts"])[0].parse().unwrap();
    assert_eq!(len, alerts.len());
}

#[test]
fn every_mode_writes_what_the_file_twin_writes_with_and_without_checkpoints() {
    let redis = RedisServer::start();
    for (db, checkpoint) in [(0, false), (1, true)] {
        let dir = tempfile::tempdir().unwrap();
        job(dir.path(), &redis.url(db), checkpoint);
        let out = run(&["run", "job.yaml", "--workers", "2"], dir.path());
        assert!(out.status.success(), "{}", stderr(&out));
        check_modes(&redis, db, dir.path());
    }
    let dump = redis.dump(0);
    assert!(dump.len() > 100, "{dump:?}");
    assert_eq!(
        dump,
        redis.dump(1),
        "with and without checkpoints, the same keys and values"
    );
}

fn committer(redis: &RedisServer, generation: u64) -> RedisCommitter {
    committer_in(redis, generation, RedisMode::Hash)
}

fn committer_in(redis: &RedisServer, generation: u64, mode: RedisMode) -> RedisCommitter {
    let schema = Schema::new(vec![
        Field::new("user_id", DataType::String),
        Field::new("n", DataType::Int),
    ])
    .unwrap();
    let config = RedisSinkConfig {
        name: "s".into(),
        job: "j".into(),
        url: redis.url(0),
        mode,
        key: Template::parse("u:{user_id}", &schema).unwrap(),
        columns: vec!["user_id".into(), "n".into()],
        format: TimestampFormat::Rfc3339,
        ttl: None,
        member: None,
        score: None,
        value: None,
        timeout: Duration::from_secs(10),
    };
    RedisCommitter::new(config, 0, generation).unwrap()
}

fn write(c: &mut RedisCommitter, batch: u64, ts: i64, n: i64) {
    let row = Row::from_values(&[Value::Str("a".into()), Value::Int(n)]);
    let item = c.item(Event::new(ts, ts, row)).unwrap();
    let prepared = c.prepare(batch, vec![item]).unwrap();
    c.commit(batch, &prepared).unwrap();
}

#[test]
fn an_older_version_never_overwrites_a_newer_one() {
    let redis = RedisServer::start();
    let n = || redis.cli(0, &["HGET", "u:a", "n"]).join("");
    let mut c = committer(&redis, 100);
    write(&mut c, 5, 1_000, 1);
    assert_eq!(n(), "1");
    write(&mut c, 3, 9_000, 2); // an older batch (a replay): ignored
    assert_eq!(n(), "1");
    write(&mut c, 5, 500, 3); // the same batch, an older row: ignored
    assert_eq!(n(), "1");
    write(&mut c, 5, 1_000, 4); // the same write again (a recovery): applied, same version
    assert_eq!(n(), "4");
    write(&mut c, 6, 0, 5); // a newer batch
    assert_eq!(n(), "5");
    // A fresh run (a newer lineage) replaces what an older run wrote, whatever its batches.
    let mut fresh = committer(&redis, 200);
    write(&mut fresh, 0, 0, 6);
    assert_eq!(n(), "6");
    write(&mut c, 7, 0, 7); // the old lineage no longer wins
    assert_eq!(n(), "6");
}

#[test]
fn a_server_that_is_not_there_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redis://127.0.0.1:{}/0", weir_tests::free_port());
    job(dir.path(), &url, false);
    let started = std::time::Instant::now();
    let out = run(&["run", "job.yaml"], dir.path());
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("sink `windows`") && err.contains(&url),
        "names the sink and the server: {err}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn a_stream_batch_is_appended_once_even_when_committed_again() {
    let redis = RedisServer::start();
    let len = || redis.cli(0, &["XLEN", "u:a"]).join("");
    let mut c = committer_in(&redis, 100, RedisMode::Stream);
    write(&mut c, 5, 1_000, 1);
    write(&mut c, 5, 1_000, 1); // recovery after a crash that followed the commit
    assert_eq!(len(), "1");
    write(&mut c, 4, 1_000, 2); // an older batch
    assert_eq!(len(), "1");
    write(&mut c, 6, 1_000, 3);
    assert_eq!(len(), "2");
    let mut other = committer_in(&redis, 100, RedisMode::Stream);
    let row = Row::from_values(&[Value::Str("a".into()), Value::Int(4)]);
    let item = other.item(Event::new(0, 0, row)).unwrap();
    other.recover(1, vec![(6, vec![item])]).unwrap(); // another writer's batch 6
    assert_eq!(len(), "3");
}
