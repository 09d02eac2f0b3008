//! The Iceberg sink, read back by PyIceberg (an independent implementation, in the venv the
//! test command creates): tables hold exactly what the job's file twins hold, at 1, 2 and 3
//! workers, with and without checkpoints; one snapshot per checkpoint carrying the job and
//! checkpoint ids; a crash just before or just after a commit is recovered without losing or
//! repeating a batch; a catalog that is not there is a clear error.

mod common;

use std::path::Path;
use std::process::Child;
use std::time::Duration;

use common::{recovered, spawn_job, stderr, wait};
use weir_tests::{canonical, json_lines, read_iceberg, IcebergRead};

/// The fraud job on the generator: window results partitioned by day and alerts, each to a
/// table and to a file (timestamps in milliseconds, as PyIceberg's rows are compared).
fn job(dir: &Path, checkpoint: bool) {
    job_in(dir, checkpoint, None)
}

/// [`job`] with its tables in the catalog at `catalog` (default: the SQL catalog on
/// `dir/catalog.db`).
fn job_in(dir: &Path, checkpoint: bool, catalog: Option<&str>) {
    let checkpoint = match checkpoint {
        true => "checkpoint: { interval: 200ms, store: store }",
        false => "",
    };
    let d = dir.display();
    let catalog = catalog.map_or_else(|| format!("sqlite://{d}/catalog.db"), str::to_string);
    let spec = format!(
        r#"
name: iceberg-fraud
tick: 50ms
{checkpoint}
sources:
  payments: {{ kind: generator, stream: payments, events: 40000, rate: 16000, seed: 5, partitions: 4 }}
steps:
  per_merchant: {{ from: payments, key: merchant, window: {{ kind: tumbling, size: 10s }}, aggregates: {{ n: "count(*)", revenue: "sum(amount)" }} }}
  bursts: {{ from: payments, rule: {{ key: user_id, count_over: 10m, threshold: 3, where: "status = 'FAILED'", id: payment_id }} }}
sinks:
  windows_file: {{ from: per_merchant, kind: file, path: out/windows.jsonl, timestamp_format: millis }}
  alerts_file: {{ from: bursts, kind: file, path: out/alerts.jsonl, timestamp_format: millis }}
  windows: {{ from: per_merchant, kind: iceberg, catalog: "{catalog}", warehouse: "file://{d}/warehouse", table: fraud.windows, partition_by: ["day(window_end)"] }}
  alerts: {{ from: bursts, kind: iceberg, catalog: "{catalog}", warehouse: "file://{d}/warehouse", table: fraud.alerts }}
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
        "warn,weir_operators::iceberg=info",
    )
}

fn table(dir: &Path, name: &str) -> IcebergRead {
    read_iceberg(
        &dir.join("catalog.db"),
        "weir",
        &format!("file://{}/warehouse", dir.display()),
        &format!("fraud.{name}"),
    )
}

/// Both tables' rows, canonical.
fn tables(dir: &Path) -> [Vec<String>; 2] {
    [
        table(dir, "windows").canonical_rows(),
        table(dir, "alerts").canonical_rows(),
    ]
}

/// The checkpoint ids of the table's snapshots, in commit order; checks that every snapshot
/// is weir's, each the child of the one before.
fn checkpoint_ids(read: &IcebergRead) -> Vec<u64> {
    let mut parent = serde_json::Value::Null;
    read.snapshots
        .iter()
        .map(|s| {
            assert_eq!(s["parent"], parent, "snapshots form one line: {s}");
            parent = s["id"].clone();
            let summary = &s["summary"];
            assert_eq!(summary["weir.job-id"], "iceberg-fraud", "{s}");
            summary["weir.checkpoint-id"]
                .as_str()
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| panic!("no weir.checkpoint-id: {s}"))
        })
        .collect()
}

#[test]
fn tables_hold_what_the_file_sinks_hold_at_one_two_and_three_workers() {
    let mut reference: Option<[Vec<String>; 2]> = None;
    for workers in [1, 2, 3] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        job(d, true);
        let out = wait(spawn(d, workers, false, None), Duration::from_secs(120));
        assert!(out.status.success(), "{}", stderr(&out));
        let files = [
            canonical(&json_lines(&d.join("out/windows.jsonl"))),
            canonical(&json_lines(&d.join("out/alerts.jsonl"))),
        ];
        assert!(files[0].len() > 100 && files[1].len() > 5, "{files:?}");
        let got = tables(d);
        assert_eq!(got, files, "{workers} workers: the tables equal the files");
        if let Some(r) = &reference {
            assert_eq!(&got, r, "{workers} workers: the same tables as at 1 worker");
        }
        reference = Some(got);

        let windows = table(d, "windows");
        let ids = checkpoint_ids(&windows);
        assert!(
            ids.len() >= 3,
            "one snapshot per checkpoint with rows (a run of ~2.5 s at 200 ms): {ids:?}"
        );
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "one per checkpoint: {ids:?}"
        );
        assert_eq!(
            windows.spec,
            vec![serde_json::json!({"name": "window_end_day", "transform": "day", "source_id": 3})]
        );
        assert!(windows
            .files
            .iter()
            .all(|f| f.contains("/data/window_end_day=")
                && f.contains("/weir-iceberg_fraud-windows-w")));
        let mut unique = windows.files.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), windows.files.len());
    }
}

#[test]
fn without_checkpoints_the_tables_are_written_at_least_once_and_here_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    job(d, false);
    let out = wait(spawn(d, 2, false, None), Duration::from_secs(120));
    assert!(out.status.success(), "{}", stderr(&out));
    let files = [
        canonical(&json_lines(&d.join("out/windows.jsonl"))),
        canonical(&json_lines(&d.join("out/alerts.jsonl"))),
    ];
    assert_eq!(tables(d), files);
}

/// Aborts the run at `point` (the third time), restores it at another worker count, and
/// compares the tables with those of a run that never failed. Returns the recovery counts.
fn crash_in_commit(point: &str) -> (usize, usize) {
    crash_in_commit_in(point, false)
}

/// [`crash_in_commit`], the crashed and restored runs writing through a REST catalog when
/// `rest`; the reference run always uses the SQL catalog.
fn crash_in_commit_in(point: &str, rest: bool) -> (usize, usize) {
    let reference = tempfile::tempdir().unwrap();
    job(reference.path(), true);
    let out = wait(
        spawn(reference.path(), 2, false, None),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let expected = tables(reference.path());

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let catalog = rest.then(|| {
        weir_tests::RestCatalog::start(
            &d.join("catalog.db"),
            "weir",
            &format!("file://{}/warehouse", d.display()),
        )
    });
    job_in(d, true, catalog.as_ref().map(|c| c.url()).as_deref());
    let out = wait(
        spawn(d, 2, false, Some(&format!("{point}:3"))),
        Duration::from_secs(120),
    );
    let err = stderr(&out);
    assert!(
        !out.status.success() && err.contains(&format!("crash point `{point}`")),
        "the run did not crash at {point}: {err}"
    );
    let out = wait(spawn(d, 3, true, None), Duration::from_secs(120));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("resuming job"), "{err}");
    assert_eq!(tables(d), expected, "after a crash at {point}");
    for name in ["windows", "alerts"] {
        let ids = checkpoint_ids(&table(d, name));
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "{name}: no checkpoint committed twice: {ids:?}"
        );
    }
    recovered(&err)
}

#[test]
fn a_crash_before_the_commit_is_committed_by_the_restored_run() {
    let (_, again) = crash_in_commit("iceberg.before_commit");
    assert!(again >= 1, "the interrupted batch is committed on restore");
}

#[test]
fn a_crash_after_the_commit_is_found_in_the_snapshot_ancestry_and_not_repeated() {
    let (skipped, _) = crash_in_commit("iceberg.after_commit");
    assert!(
        skipped >= 1,
        "the committed batch is recognised and skipped"
    );
}

#[test]
fn through_a_rest_catalog_a_crash_before_the_commit_is_committed_once_by_the_restored_run() {
    // The REST protocol (tests/py/rest_catalog.py: PyIceberg's SQL catalog behind it, which
    // checks every commit's requirements): the tables equal a failure-free SQL-catalog run's.
    let (_, again) = crash_in_commit_in("iceberg.before_commit", true);
    assert!(again >= 1, "the interrupted batch is committed on restore");
}

#[test]
fn restoring_an_older_checkpoint_into_the_same_table_says_what_will_be_appended_again() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    job(d, true);
    let spec = std::fs::read_to_string(d.join("job.yaml")).unwrap();
    // Keep every checkpoint, so that an early one can be restored; the tables only.
    let spec = spec.replace("interval: 200ms,", "interval: 200ms, retain: 1000,");
    let spec: String = spec
        .lines()
        .filter(|l| !l.contains("kind: file"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(d.join("job.yaml"), spec).unwrap();
    let out = wait(spawn(d, 2, false, None), Duration::from_secs(120));
    assert!(out.status.success(), "{}", stderr(&out));
    let ids = checkpoint_ids(&table(d, "windows"));
    assert!(ids.len() >= 3, "{ids:?}");
    // The second checkpoint the table holds, restored into the same table.
    let chk = format!("chk-{:020}", ids[1]);
    let restored = common::weir()
        .env("WEIR_LOG", "warn")
        .args([
            "run",
            "job.yaml",
            "--progress",
            "never",
            "--workers",
            "2",
            "--restore",
        ])
        .arg(&chk)
        .current_dir(d)
        .spawn()
        .unwrap();
    let out = wait(restored, Duration::from_secs(120));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let later = ids[ids.len() - 1];
    assert!(
        err.contains(&format!(
            "table fraud.windows already holds checkpoint {later} of this job, later than the restored checkpoint {}",
            ids[1]
        )) && err.contains("appended again"),
        "{err}"
    );
    // The latest one: no such warning.
    let out = wait(spawn(d, 2, true, None), Duration::from_secs(120));
    let err = stderr(&out);
    assert!(
        out.status.success() && !err.contains("appended again"),
        "{err}"
    );
}

#[test]
fn a_catalog_that_is_not_there_is_an_error_naming_the_sink() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = weir_tests::free_port();
    let spec = format!(
        r#"
name: no-catalog
sources:
  payments: {{ kind: generator, stream: payments, events: 100 }}
sinks:
  table: {{ from: payments, kind: iceberg, catalog: "http://127.0.0.1:{port}", table: db.payments }}
"#
    );
    std::fs::write(d.join("job.yaml"), spec).unwrap();
    let out = wait(spawn(d, 1, false, None), Duration::from_secs(90));
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("sink `table`") && err.contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}
