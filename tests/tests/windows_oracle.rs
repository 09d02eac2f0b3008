//! End to end through files: seeded random input with disorder inside and beyond the allowed
//! lateness, and malformed lines; the windowed output, the late output and the dead letters
//! are compared with a naive recomputation, at 1, 2 and 3 workers.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};
use weir_engine::data::time::format_rfc3339;
use weir_operators::source::generator::Rng;
use weir_tests::{json_lines, read_dir, run_spec};

const PARTITIONS: usize = 3;
const PER_PARTITION: usize = 1500;
const OOO: i64 = 200;
const T0: i64 = 1_767_225_600_000;

/// One input record, as written.
#[derive(Clone, Debug)]
struct Record {
    key: String,
    amount: f64,
    ts: i64,
    /// The watermark of its file when it is read (what weir compares lateness against).
    wm: i64,
    line: String,
}

struct Input {
    records: Vec<Record>,
    /// (file name, byte offset, raw line) of every malformed line.
    malformed: Vec<(String, u64, String)>,
}

/// Writes one file per partition; returns what an oracle needs.
fn write_input(dir: &Path, seed: u64) -> Input {
    let mut rng = Rng::new(seed);
    let mut records = Vec::new();
    let mut malformed = Vec::new();
    for p in 0..PARTITIONS {
        let name = format!("part-{p}.jsonl");
        let mut text = String::new();
        let mut max_ts = i64::MIN;
        for i in 0..PER_PARTITION {
            let offset = text.len() as u64;
            if rng.chance(0.01) {
                let bad = match rng.below(3) {
                    0 => format!("{{\"key\":\"k1\",\"amount\":1.5,\"ts\":{}", T0),
                    1 => "{\"key\":\"k1\",\"amount\":\"twelve\",\"ts\":0}".to_string(),
                    _ => "key=k1 amount=3".to_string(),
                };
                writeln!(text, "{bad}").unwrap();
                malformed.push((name.clone(), offset, bad));
                continue;
            }
            let nominal = T0 + (i as i64) * 40 + p as i64 * 7;
            let behind = if rng.chance(0.03) {
                1_000 + rng.below(4_000) as i64
            } else {
                rng.below(OOO as u64 + 50) as i64
            };
            let ts = nominal - behind;
            let key = format!("k{}", rng.below(6));
            let amount = (rng.below(100_000) as f64) / 100.0;
            // Timestamps as RFC 3339 text or as epoch milliseconds: both are timestamps.
            let ts_json = if rng.chance(0.5) {
                json!(format_rfc3339(ts))
            } else {
                json!(ts)
            };
            let line = json!({ "key": key, "amount": amount, "ts": ts_json, "extra": {"ignored": [1, 2]} }).to_string();
            writeln!(text, "{line}").unwrap();
            let wm = if max_ts == i64::MIN {
                i64::MIN
            } else {
                max_ts - OOO
            };
            max_ts = max_ts.max(ts);
            records.push(Record {
                key,
                amount,
                ts,
                wm,
                line,
            });
        }
        std::fs::write(dir.join(&name), text).unwrap();
    }
    Input { records, malformed }
}

type Windows = BTreeMap<(String, i64, i64), Vec<f64>>;

/// Fixed windows of `size` every `slide` ms; returns the windows and the late records.
fn fixed_oracle(input: &Input, size: i64, slide: i64, lateness: i64) -> (Windows, Vec<String>) {
    let mut windows = Windows::new();
    let mut late = Vec::new();
    for r in &input.records {
        let mut accepted = false;
        let mut start = r.ts - r.ts.rem_euclid(slide);
        while start > r.ts - size {
            if start + size + lateness > r.wm {
                windows
                    .entry((r.key.clone(), start, start + size))
                    .or_default()
                    .push(r.amount);
                accepted = true;
            }
            start -= slide;
        }
        if !accepted {
            late.push(r.line.clone());
        }
    }
    (windows, late)
}

fn session_oracle(input: &Input, gap: i64, lateness: i64) -> (Windows, Vec<String>) {
    let mut by_key: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    let mut late = Vec::new();
    for r in &input.records {
        if r.ts + lateness >= r.wm {
            by_key
                .entry(r.key.clone())
                .or_default()
                .push((r.ts, r.amount));
        } else {
            late.push(r.line.clone());
        }
    }
    let mut windows = Windows::new();
    for (key, mut items) in by_key {
        items.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let mut current: Option<(i64, i64, Vec<f64>)> = None;
        for (ts, amount) in items {
            match &mut current {
                Some((_, end, v)) if ts < *end => {
                    *end = (*end).max(ts + gap);
                    v.push(amount);
                }
                _ => {
                    if let Some((s, e, v)) = current.take() {
                        windows.insert((key.clone(), s, e), v);
                    }
                    current = Some((ts, ts + gap, vec![amount]));
                }
            }
        }
        if let Some((s, e, v)) = current {
            windows.insert((key, s, e), v);
        }
    }
    (windows, late)
}

fn ms(v: &Value) -> i64 {
    weir_engine::data::time::parse_rfc3339(v.as_str().unwrap()).unwrap()
}

fn check_windows(path: &Path, expected: &Windows, what: &str) {
    let got = json_lines(path);
    assert_eq!(got.len(), expected.len(), "{what}: number of windows");
    for row in got {
        let key = (
            row["key"].as_str().unwrap().to_string(),
            ms(&row["window_start"]),
            ms(&row["window_end"]),
        );
        let amounts = expected
            .get(&key)
            .unwrap_or_else(|| panic!("{what}: unexpected window {row}"));
        assert_eq!(row["n"], json!(amounts.len()), "{what}: {row}");
        let sum: f64 = amounts.iter().sum();
        assert!(
            (row["total"].as_f64().unwrap() - sum).abs() < 1e-6,
            "{what}: {row} vs {sum}"
        );
        let max = amounts.iter().cloned().fold(f64::MIN, f64::max);
        assert_eq!(row["largest"].as_f64().unwrap(), max, "{what}: {row}");
    }
}

fn check_late(path: &Path, expected: &[String], what: &str) {
    let mut got: Vec<Value> = json_lines(path);
    let mut want: Vec<Value> = expected
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            // The late output is the decoded row: unknown fields gone, timestamps in RFC 3339.
            let ts = match &v["ts"] {
                Value::Number(n) => format_rfc3339(n.as_i64().unwrap()),
                s => format_rfc3339(ms(s)),
            };
            json!({"key": v["key"], "amount": v["amount"], "ts": ts})
        })
        .collect();
    let order = |a: &Value, b: &Value| a.to_string().cmp(&b.to_string());
    got.sort_by(order);
    want.sort_by(order);
    assert!(!want.is_empty(), "{what}: the input must have late records");
    assert_eq!(got, want, "{what}");
}

fn spec(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"
name: oracle
sources:
  sales:
    kind: file
    path: "{d}/in/part-*.jsonl"
    split_size: 100000000
    schema: {{ key: string, amount: float, ts: timestamp }}
    event_time: {{ field: ts, max_out_of_orderness: {OOO}ms }}
steps:
  tumbling:
    from: sales
    key: key
    window: {{ kind: tumbling, size: 1s }}
    allowed_lateness: 300ms
    aggregates: {{ n: "count(*)", total: "sum(amount)", largest: "max(amount)" }}
  sliding:
    from: sales
    key: [key]
    window: {{ kind: sliding, size: 2s, slide: 500ms }}
    aggregates: {{ n: "count(*)", total: "sum(amount)", largest: "max(amount)" }}
  session:
    from: sales
    key: key
    window: {{ kind: session, gap: 150ms }}
    allowed_lateness: 100ms
    aggregates: {{ n: "count(*)", total: "sum(amount)", largest: "max(amount)" }}
sinks:
  tumbling:      {{ from: tumbling, kind: file, path: "{d}/out/tumbling.jsonl" }}
  tumbling_late: {{ from: tumbling.late, kind: file, path: "{d}/out/tumbling_late.jsonl" }}
  sliding:       {{ from: sliding, kind: file, path: "{d}/out/sliding.jsonl" }}
  sliding_late:  {{ from: sliding.late, kind: file, path: "{d}/out/sliding_late.jsonl" }}
  session:       {{ from: session, kind: file, path: "{d}/out/session.jsonl" }}
  session_late:  {{ from: session.late, kind: file, path: "{d}/out/session_late.jsonl" }}
  bad:           {{ from: sales.dead_letter, kind: file, path: "{d}/out/bad.jsonl" }}
"#
    )
}

#[test]
fn windowed_late_and_dead_letter_outputs_equal_a_naive_recomputation_at_every_worker_count() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    let input = write_input(&dir.path().join("in"), 2026);
    let spec = spec(dir.path());
    let out = dir.path().join("out");

    let mut first = None;
    for workers in 1..=3 {
        let summary = run_spec(&spec, workers);
        assert_eq!(
            summary.stats.dead_letters,
            input.malformed.len() as u64,
            "dead letters are counted"
        );
        assert_eq!(
            summary.stats.records_in,
            (input.records.len() + input.malformed.len()) as u64
        );

        let (windows, late) = fixed_oracle(&input, 1000, 1000, 300);
        check_windows(&out.join("tumbling.jsonl"), &windows, "tumbling");
        check_late(&out.join("tumbling_late.jsonl"), &late, "tumbling late");
        let (windows, late) = fixed_oracle(&input, 2000, 500, 0);
        check_windows(&out.join("sliding.jsonl"), &windows, "sliding");
        check_late(&out.join("sliding_late.jsonl"), &late, "sliding late");
        let (windows, late) = session_oracle(&input, 150, 100);
        check_windows(&out.join("session.jsonl"), &windows, "session");
        check_late(&out.join("session_late.jsonl"), &late, "session late");

        let mut bad: Vec<(String, i64, String)> = json_lines(&out.join("bad.jsonl"))
            .into_iter()
            .map(|v| {
                assert_eq!(v["source"], "sales");
                assert!(!v["error"].as_str().unwrap().is_empty());
                let file = Path::new(v["location"].as_str().unwrap().split('[').next().unwrap())
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                (
                    file,
                    v["offset"].as_i64().unwrap(),
                    v["raw"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        bad.sort();
        let mut expected: Vec<(String, i64, String)> = input
            .malformed
            .iter()
            .map(|(f, o, l)| (f.clone(), *o as i64, l.clone()))
            .collect();
        expected.sort();
        assert_eq!(
            bad, expected,
            "every malformed line, with its file and byte offset"
        );

        let files = read_dir(&out);
        match &first {
            None => first = Some(files),
            Some(first) => assert_eq!(
                &files, first,
                "output at {workers} workers differs from 1 worker"
            ),
        }
    }
}
