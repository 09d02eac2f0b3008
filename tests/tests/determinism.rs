//! The same input gives the same output at 1, 2 and 3 workers, for every operator; and the
//! generator source equals its `weir gen` file twin.

use std::path::Path;

use weir_operators::source::generator::{write_jsonl, GeneratorConfig, StreamKind};
use weir_tests::{lines, read_dir, run_spec};

fn every_operator(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"
name: every-operator
sources:
  clicks:
    kind: generator
    stream: clicks
    events: 30000
    partitions: 5
    seed: 9
    disorder: 800ms
    late_fraction: 0.01
    late_by: 20s
    malformed: 0.002
    event_time: {{ max_out_of_orderness: 500ms }}
  iot:
    kind: generator
    stream: iot
    events: 20000
    seed: 3
    devices: 50
steps:
  purchases:   {{ from: clicks, filter: "event_type IN ('add_to_cart', 'purchase') AND page_url LIKE '/%'" }}
  projected:   {{ from: clicks, project: {{ who: "upper(user_id)", product_id: product_id, minute: "date_trunc('minute', ts)" }} }}
  per_product: {{ from: purchases, key: product_id, window: {{ kind: tumbling, size: 10s }}, allowed_lateness: 2s, aggregates: {{ n: "count(*)", users: "count(user_id)" }} }}
  sessions:    {{ from: clicks, key: [user_id], window: {{ kind: session, gap: 3s }}, aggregates: {{ clicks: "count(*)", first_page: "min(page_url)" }} }}
  hot:         {{ from: iot, key: device_id, window: {{ kind: sliding, size: 1m, slide: 10s }}, aggregates: {{ avg_temp: "avg(temperature)", max_temp: "max(temperature)", readings: "count(*)" }} }}
  overheating: {{ from: hot, filter: "avg_temp > 40", project: {{ device_id: device_id, window_end: window_end, avg_temp: "round(avg_temp, 1)" }} }}
sinks:
  purchases:     {{ from: purchases, kind: file, path: "{d}/purchases.jsonl" }}
  projected:     {{ from: projected, kind: file, path: "{d}/projected.jsonl", timestamp_format: millis }}
  per_product:   {{ from: per_product, kind: file, path: "{d}/per_product.jsonl" }}
  late:          {{ from: per_product.late, kind: file, path: "{d}/per_product_late.jsonl" }}
  sessions:      {{ from: sessions, kind: file, path: "{d}/sessions.jsonl" }}
  sessions_late: {{ from: sessions.late, kind: file, path: "{d}/sessions_late.jsonl" }}
  hot:           {{ from: hot, kind: file, path: "{d}/hot.jsonl" }}
  overheating:   {{ from: overheating, kind: file, path: "{d}/overheating.jsonl" }}
  dead:          {{ from: clicks.dead_letter, kind: file, path: "{d}/dead.jsonl" }}
"#
    )
}

#[test]
fn every_operator_gives_identical_output_at_one_two_and_three_workers() {
    let mut outputs = Vec::new();
    for workers in 1..=3 {
        let dir = tempfile::tempdir().unwrap();
        let summary = run_spec(&every_operator(dir.path()), workers);
        assert!(
            summary.stats.late > 0 && summary.stats.dead_letters > 0,
            "{:?}",
            summary.stats
        );
        let files = read_dir(dir.path());
        assert_eq!(files.len(), 9, "{:?}", files.keys());
        for (name, content) in &files {
            assert!(!content.is_empty(), "{name} is empty at {workers} workers");
        }
        outputs.push(files);
    }
    for (i, out) in outputs.iter().enumerate().skip(1) {
        for (name, content) in out {
            assert!(
                content == &outputs[0][name],
                "{name}: {} workers differ from 1",
                i + 1
            );
        }
    }
}

#[test]
fn a_file_split_into_many_parts_gives_identical_output_at_every_worker_count() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("payments.jsonl");
    let mut config = GeneratorConfig::new(StreamKind::Payments, Some(40_000), 17);
    config.late_fraction = 0.005;
    config.malformed = 0.001;
    write_jsonl(&config, &mut std::fs::File::create(&input).unwrap(), |_| {}).unwrap();
    let mut outputs = Vec::new();
    for workers in 1..=3 {
        let out = dir.path().join(format!("out{workers}"));
        let spec = format!(
            r#"
name: split-file
sources:
  payments:
    kind: file
    path: "{}"
    split_size: 300000          # about 20 splits: partitions independent of the worker count
    schema: {{ payment_id: string, user_id: string, amount: float, currency: string, status: string, merchant: string, ts: timestamp }}
    event_time: {{ field: ts, max_out_of_orderness: 1s }}
steps:
  per_currency: {{ from: payments, key: currency, window: {{ kind: tumbling, size: 5s }}, aggregates: {{ n: "count(*)", total: "sum(amount)", avg: "avg(amount)" }} }}
sinks:
  out:  {{ from: per_currency, kind: file, path: "{o}/per_currency.jsonl" }}
  late: {{ from: per_currency.late, kind: file, path: "{o}/late.jsonl" }}
  bad:  {{ from: payments.dead_letter, kind: file, path: "{o}/bad.jsonl" }}
"#,
            input.display(),
            o = out.display()
        );
        let summary = run_spec(&spec, workers);
        assert_eq!(summary.stats.records_in, 40_000);
        outputs.push(read_dir(&out));
    }
    assert!(!outputs[0]["late.jsonl"].is_empty() && !outputs[0]["bad.jsonl"].is_empty());
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(outputs[0], outputs[2]);
}

#[test]
fn the_generator_and_its_weir_gen_file_give_the_same_results() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("iot.jsonl");
    // In-order enough that nothing is late under either partitioning.
    let mut config = GeneratorConfig::new(StreamKind::Iot, Some(20_000), 5);
    config.disorder_ms = 100;
    config.malformed = 0.001;
    write_jsonl(&config, &mut std::fs::File::create(&file).unwrap(), |_| {}).unwrap();
    let d = dir.path().display();
    let steps = r#"
steps:
  per_location: { from: readings, key: location, window: { kind: tumbling, size: 2s }, aggregates: { n: "count(*)", avg_t: "avg(temperature)", max_h: "max(humidity)" } }
"#;
    let generated = format!(
        "name: gen\nsources:\n  readings: {{ kind: generator, stream: iot, events: 20000, seed: 5, disorder: 100ms, malformed: 0.001, event_time: {{ max_out_of_orderness: 1s }} }}\n{steps}sinks:\n  out: {{ from: per_location, kind: file, path: \"{d}/gen.jsonl\" }}\n  bad: {{ from: readings.dead_letter, kind: file, path: \"{d}/gen_bad.jsonl\" }}\n"
    );
    let from_file = format!(
        "name: file\nsources:\n  readings: {{ kind: file, path: \"{}\", split_size: 200000, schema: {{ device_id: string, temperature: float, humidity: float, location: string, ts: timestamp }}, event_time: {{ field: ts, max_out_of_orderness: 1s }} }}\n{steps}sinks:\n  out: {{ from: per_location, kind: file, path: \"{d}/file.jsonl\" }}\n  bad: {{ from: readings.dead_letter, kind: file, path: \"{d}/file_bad.jsonl\" }}\n",
        file.display()
    );
    let a = run_spec(&generated, 2);
    let b = run_spec(&from_file, 3);
    assert_eq!((a.stats.late, b.stats.late), (0, 0));
    assert_eq!(a.stats.dead_letters, b.stats.dead_letters);
    assert!(a.stats.dead_letters > 0);
    let results = lines(&dir.path().join("gen.jsonl"));
    assert!(results.len() > 100);
    assert_eq!(results, lines(&dir.path().join("file.jsonl")));
}

#[test]
fn the_shipped_examples_validate() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../jobs/examples");
    let mut n = 0;
    for dir in [root.clone(), root.join("kafka")] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let text = std::fs::read_to_string(&path).unwrap();
                weir_jobs::load_spec(&text, &[])
                    .unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
                n += 1;
            }
        }
    }
    assert!(n >= 12, "{n} examples");
}
