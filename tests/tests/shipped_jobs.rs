//! Every shipped job of `jobs/examples/` runs end to end on the embedded default (generator
//! sources, file sinks), and its results mean what the job says.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use weir_engine::data::time::parse_rfc3339;
use weir_engine::stats::JobStats;
use weir_jobs::run::{run, RunOptions};
use weir_tests::json_lines;

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../jobs/examples/{name}.yaml"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs a shipped job at `workers` with every file sink redirected into `dir`; returns each
/// sink's rows by sink name.
fn run_example(name: &str, dir: &Path, workers: usize) -> BTreeMap<String, Vec<Value>> {
    let text = example(name);
    let doc: serde_json::Value = serde_norway::from_str(&text).unwrap();
    let mut overrides = Vec::new();
    let mut paths: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (sink, spec) in doc["sinks"].as_object().unwrap() {
        if spec["kind"] == "file" {
            let path = dir.join(format!("{sink}.jsonl"));
            overrides.push(format!("sinks.{sink}.path={}", path.display()));
            paths.insert(sink.clone(), path);
        }
    }
    let plan = weir_jobs::load_spec(&text, &overrides).unwrap_or_else(|e| panic!("{name}: {e}"));
    run(
        Arc::new(plan),
        RunOptions::local(workers),
        Arc::new(JobStats::default()),
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    paths
        .into_iter()
        .map(|(sink, path)| (sink, json_lines(&path)))
        .collect()
}

fn strings<'a>(rows: &'a [Value], column: &str) -> BTreeSet<&'a str> {
    rows.iter().filter_map(|r| r[column].as_str()).collect()
}

#[test]
fn payment_fraud_alerts_mean_what_the_rules_say() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_example("payment-fraud", dir.path(), 2);
    let bursts = &out["bursts"];
    assert!(bursts.len() > 50, "{} burst alerts", bursts.len());
    for alert in bursts {
        let ids = alert["event_ids"].as_str().unwrap().split(',').count();
        assert_eq!(
            alert["count"], 4,
            "the alert fires on the 4th failure: {alert}"
        );
        assert_eq!(ids, 4, "{alert}");
        let first = alert["first_ts"].as_str().unwrap();
        let last = alert["last_ts"].as_str().unwrap();
        assert!(first <= last, "{alert}");
    }
    // The generator's fraudsters (one user in 211, most payments failing) lead the alerts.
    let fraudsters = strings(bursts, "user_id")
        .into_iter()
        .filter(|u| u[1..].parse::<u64>().unwrap() % 211 == 3)
        .count();
    assert!(fraudsters >= 20, "{fraudsters} fraudsters alerted");
    for alert in &out["high_value"] {
        assert!(alert["sum"].as_f64().unwrap() > 5000.0, "{alert}");
    }
    assert!(!out["high_value"].is_empty() && !out["abandoned"].is_empty());
    for alert in &out["abandoned"] {
        assert_eq!(alert["count"], 1);
        assert_eq!(alert["first_ts"], alert["last_ts"]);
    }
    assert!(!out["late"].is_empty() && !out["bad_input"].is_empty());
}

#[test]
fn clicks_join_readings_of_their_device_within_30_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_example("clicks-iot-join", dir.path(), 2);
    let joined = &out["joined"];
    assert!(joined.len() > 50_000, "{}", joined.len());
    let parse = |v: &Value| parse_rfc3339(v.as_str().unwrap()).unwrap();
    let (mut matched, mut unmatched) = (0, 0);
    for row in joined {
        if row["reading_ts"].is_null() {
            unmatched += 1;
            assert!(row["temperature"].is_null());
            continue;
        }
        matched += 1;
        let gap = (parse(&row["click_ts"]) - parse(&row["reading_ts"])).abs();
        assert!(gap <= 30_000, "{row}");
    }
    assert!(
        matched > 10_000 && unmatched > 1_000,
        "{matched} matched, {unmatched} not"
    );
}

#[test]
fn overheating_alerts_come_from_the_faulty_devices_once_per_episode() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_example("iot-overheating", dir.path(), 2);
    assert_eq!(out["rolling"].len(), 100_000, "one rolling row per reading");
    let alerts = &out["alerts"];
    let devices = strings(alerts, "device_id");
    assert_eq!(
        devices,
        BTreeSet::from(["d00000", "d00097", "d00194"]),
        "one device in 97 is faulty"
    );
    // Each faulty device overheats ten minutes in every hour: 83 minutes hold one or two
    // episodes each, never one alert per hot reading.
    assert!(alerts.len() <= 6, "{alerts:?}");
    for row in &out["rolling"] {
        let n = row["readings"].as_i64().unwrap();
        assert!((1..=80).contains(&n), "5 minutes hold ~30 readings: {row}");
    }
}

#[test]
fn clicks_are_enriched_with_the_profile_valid_at_their_time_identically_at_1_and_3_workers() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let one = run_example("clicks-enriched", a.path(), 1);
    let three = run_example("clicks-enriched", b.path(), 3);
    assert_eq!(one, three);
    let rows = &one["enriched"];
    assert_eq!(
        rows.len(),
        100_000,
        "a left temporal join keeps every click once"
    );
    let mut with_profile = 0;
    for row in rows {
        if let Some(version) = row["profile_version_at"].as_str() {
            with_profile += 1;
            assert!(
                version <= row["ts"].as_str().unwrap(),
                "a version from the future: {row}"
            );
        }
    }
    // The first pass over the devices takes 125 s: early clicks often precede their profile.
    assert!(with_profile > 60_000, "{with_profile}");
}

#[test]
fn product_revenue_windows_sum_purchase_prices() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_example("product-revenue", dir.path(), 2);
    let revenue = &out["revenue"];
    assert!(revenue.len() > 1000);
    for row in revenue {
        let n = row["purchases"].as_f64().unwrap();
        let r = row["revenue"].as_f64().unwrap();
        assert!(r >= n * 4.99 - 1e-6 && r <= n * 499.99 + 1e-6, "{row}");
    }
    for row in &out["leaders"] {
        assert!(row["revenue"].as_f64().unwrap() >= 500.0);
    }
    assert!(!out["late"].is_empty());
}

#[test]
fn rule_updates_apply_from_their_event_time_identically_at_1_and_3_workers() {
    use weir_operators::source::generator::{write_jsonl, GeneratorConfig, StreamKind};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut config = GeneratorConfig::new(StreamKind::Payments, Some(120_000), 21);
    config.disorder_ms = 300;
    write_jsonl(
        &config,
        &mut std::fs::File::create(d.join("payments.jsonl")).unwrap(),
        |_| {},
    )
    .unwrap();
    // One minute in (of two), the threshold of `failed_bursts` drops from 3 to 1.
    let change = "2026-01-01T00:01:00.000Z";
    std::fs::write(
        d.join("rules.jsonl"),
        format!("{{\"rule\":\"failed_bursts\",\"threshold\":1,\"ts\":\"{change}\"}}\n{{\"rule\":\"another\",\"threshold\":0,\"ts\":\"2026-01-01T00:00:00.000Z\"}}\n"),
    )
    .unwrap();
    let spec = |out: &str| {
        format!(
            r#"
name: fraud-with-rule-updates
sources:
  payments:
    kind: file
    path: "{d}/payments.jsonl"
    schema: {{ payment_id: string, user_id: string, amount: float, currency: string, status: string, merchant: string, ts: timestamp }}
    event_time: {{ field: ts, max_out_of_orderness: 1s }}
  rules:
    kind: file
    path: "{d}/rules.jsonl"
    schema: {{ rule: string, threshold: int, ts: timestamp }}
    event_time: {{ field: ts }}
steps:
  failed_bursts:
    from: payments
    rule: {{ key: user_id, count_over: 10m, threshold: 3, where: "status = 'FAILED'", updates: {{ from: rules }} }}
sinks:
  alerts: {{ from: failed_bursts, kind: file, path: "{out}" }}
"#,
            d = d.display()
        )
    };
    let one = d.join("one.jsonl");
    let three = d.join("three.jsonl");
    weir_tests::run_spec(&spec(&one.display().to_string()), 1);
    weir_tests::run_spec(&spec(&three.display().to_string()), 3);
    let alerts = json_lines(&one);
    assert_eq!(alerts, json_lines(&three));
    let (before, after): (Vec<&Value>, Vec<&Value>) = alerts
        .iter()
        .partition(|a| a["last_ts"].as_str().unwrap() < change);
    assert!(!before.is_empty() && !after.is_empty());
    for a in &before {
        assert!(
            a["count"].as_i64().unwrap() >= 4,
            "old threshold before the change: {a}"
        );
    }
    assert!(
        after.iter().any(|a| a["count"] == 2),
        "the new threshold after it: {after:?}"
    );
}

#[test]
fn a_debezium_changelog_drives_a_temporal_join_with_updates_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let change = |op: &str, before: &str, after: &str, ts: i64| {
        format!(r#"{{"before":{before},"after":{after},"op":"{op}","ts_ms":{ts}}}"#)
    };
    let a = r#"{"device_id":"d1","model":"A"}"#;
    let b = r#"{"device_id":"d1","model":"B"}"#;
    let c = r#"{"device_id":"d2","model":"C"}"#;
    let changes = [
        change("c", "null", a, 1_000),
        change("r", "null", c, 2_000),
        change("u", a, b, 3_000),
        change("d", b, "null", 5_000),
    ];
    std::fs::write(d.join("profiles.jsonl"), changes.join("\n")).unwrap();
    let clicks: Vec<String> = [
        ("d1", 500),
        ("d1", 1_000),
        ("d1", 2_000),
        ("d2", 2_500),
        ("d1", 3_000),
        ("d1", 4_000),
        ("d1", 5_000),
        ("d1", 6_000),
    ]
    .iter()
    .map(|(dev, ts)| format!(r#"{{"device_id":"{dev}","ts":{ts}}}"#))
    .collect();
    std::fs::write(d.join("clicks.jsonl"), clicks.join("\n")).unwrap();
    let spec = |workers: usize| {
        format!(
            r#"
name: cdc-join
sources:
  clicks: {{ kind: file, path: "{d}/clicks.jsonl", schema: {{ device_id: string, ts: timestamp }}, event_time: {{ field: ts }} }}
  profiles: {{ kind: file, format: debezium, path: "{d}/profiles.jsonl", schema: {{ device_id: string, model: string }}, event_time: {{ field: _ts_ms }} }}
steps:
  enriched: {{ join: {{ left: clicks, temporal: {{ dimension: profiles, key: device_id }}, type: left }} }}
  slim: {{ from: enriched, project: {{ device_id: device_id, ts: "epoch_ms(ts)", model: model }} }}
sinks:
  out: {{ from: slim, kind: file, path: "{d}/out{workers}.jsonl" }}
"#,
            d = d.display()
        )
    };
    weir_tests::run_spec(&spec(1), 1);
    weir_tests::run_spec(&spec(2), 2);
    let rows = json_lines(&d.join("out1.jsonl"));
    assert_eq!(rows, json_lines(&d.join("out2.jsonl")));
    let seen: Vec<(String, i64, Option<String>)> = rows
        .iter()
        .map(|r| {
            (
                r["device_id"].as_str().unwrap().to_string(),
                r["ts"].as_i64().unwrap(),
                r["model"].as_str().map(String::from),
            )
        })
        .collect();
    let m = |s: &str| Some(s.to_string());
    assert_eq!(
        seen,
        [
            ("d1".into(), 500, None),
            ("d1".into(), 1_000, m("A")),
            ("d1".into(), 2_000, m("A")),
            ("d2".into(), 2_500, m("C")),
            ("d1".into(), 3_000, m("B")),
            ("d1".into(), 4_000, m("B")),
            ("d1".into(), 5_000, None),
            ("d1".into(), 6_000, None),
        ]
    );
}
