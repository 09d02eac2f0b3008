//! The `weir` binary: multi-process runs on loopback, exit codes and messages.

mod common;

use std::time::Duration;

use common::{run, stderr, wait, weir};
use weir_tests::{free_port, lines, read_dir};

const JOB: &str = r#"
name: two-processes
sources:
  payments: { kind: generator, stream: payments, events: 60000, seed: 4, partitions: 6, late_fraction: 0.01, late_by: 30s, malformed: 0.001, event_time: { max_out_of_orderness: 1s } }
  clicks:   { kind: generator, stream: clicks, events: 30000, seed: 8, partitions: 3 }
steps:
  failed:   { from: payments, filter: "status = 'FAILED'" }
  per_user: { from: failed, key: user_id, window: { kind: sliding, size: 1m, slide: 10s }, aggregates: { n: "count(*)", total: "sum(amount)" } }
  per_min:  { from: payments, key: [currency, merchant], window: { kind: tumbling, size: 30s }, allowed_lateness: 2s, aggregates: { n: "count(*)", avg: "avg(amount)" } }
  sessions: { from: clicks, key: user_id, window: { kind: session, gap: 2s }, aggregates: { n: "count(*)" } }
sinks:
  per_user: { from: per_user, kind: file, path: out/per_user.jsonl }
  per_min:  { from: per_min, kind: file, path: out/per_min.jsonl }
  late:     { from: per_min.late, kind: file, path: out/late.jsonl }
  sessions: { from: sessions, kind: file, path: out/sessions.jsonl }
  bad:      { from: payments.dead_letter, kind: file, path: out/bad.jsonl }
"#;

#[test]
fn two_processes_on_loopback_equal_one_process() {
    let one = tempfile::tempdir().unwrap();
    std::fs::write(one.path().join("job.yaml"), JOB).unwrap();
    let out = run(
        &["run", "job.yaml", "--workers", "2", "--progress", "never"],
        one.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let two = tempfile::tempdir().unwrap();
    std::fs::write(two.path().join("job.yaml"), JOB).unwrap();
    let hosts = format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port());
    std::fs::write(two.path().join("hosts.txt"), hosts).unwrap();
    let spawn = |i: &str| {
        weir()
            .args([
                "run",
                "job.yaml",
                "--workers",
                "2",
                "--processes",
                "2",
                "--process",
                i,
                "--hosts",
                "hosts.txt",
                "--progress",
                "never",
            ])
            .current_dir(two.path())
            .spawn()
            .expect("spawn")
    };
    let (p0, p1) = (spawn("0"), spawn("1"));
    let (o0, o1) = (
        wait(p0, Duration::from_secs(120)),
        wait(p1, Duration::from_secs(120)),
    );
    assert!(o0.status.success(), "process 0: {}", stderr(&o0));
    assert!(o1.status.success(), "process 1: {}", stderr(&o1));
    assert!(stderr(&o1).contains("process 1 of 2"), "{}", stderr(&o1));

    let a = read_dir(&one.path().join("out"));
    let b = read_dir(&two.path().join("out"));
    assert_eq!(a.len(), 5);
    for (name, content) in &a {
        assert!(!content.is_empty(), "{name}");
        assert!(
            content == &b[name],
            "{name} differs between 1 and 2 processes"
        );
    }
}

#[test]
fn a_process_whose_peers_never_come_gives_up_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("job.yaml"), JOB).unwrap();
    std::fs::write(
        dir.path().join("hosts.txt"),
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port()),
    )
    .unwrap();
    let out = run(
        &[
            "run",
            "job.yaml",
            "--processes",
            "2",
            "--process",
            "1",
            "--hosts",
            "hosts.txt",
            "--connect-timeout",
            "2s",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("could not connect"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn validate_prints_the_plan_or_every_error_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("job.yaml"), JOB).unwrap();
    let ok = run(&["validate", "job.yaml"], dir.path());
    assert!(ok.status.success(), "{}", stderr(&ok));
    let plan = String::from_utf8_lossy(&ok.stdout);
    assert!(
        plan.contains("window sliding 1m every 10s by [user_id]"),
        "{plan}"
    );

    let bad = JOB
        .replace("size: 30s", "size: 30 fortnights")
        .replace("from: failed,", "from: faild,");
    std::fs::write(dir.path().join("bad.yaml"), bad).unwrap();
    let out = run(&["validate", "bad.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("steps.per_min.window.size: invalid duration `30 fortnights`"),
        "{err}"
    );
    let missing = run(&["validate", "nope.yaml"], dir.path());
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("cannot read spec nope.yaml"));
}

#[test]
fn gen_writes_a_stream_that_run_reads_with_dead_letters_counted() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &[
            "gen",
            "--stream",
            "payments",
            "--events",
            "5000",
            "--malformed",
            "0.01",
            "--seed",
            "3",
            "--out",
            "payments.jsonl",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(lines(&dir.path().join("payments.jsonl")).len(), 5000);
    let job = r#"
name: from-file
sources:
  p: { kind: file, path: payments.jsonl, schema: { user_id: string, amount: float, status: string, ts: timestamp }, event_time: { field: ts, max_out_of_orderness: 1s } }
steps:
  n: { from: p, key: status, window: { kind: tumbling, size: 1s }, aggregates: { n: "count(*)" } }
sinks:
  n:   { from: n, kind: file, path: out/n.jsonl }
  bad: { from: p.dead_letter, kind: file, path: out/bad.jsonl }
"#;
    std::fs::write(dir.path().join("job.yaml"), job).unwrap();
    let out = run(&["run", "job.yaml", "--progress", "never"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let bad = lines(&dir.path().join("out/bad.jsonl"));
    assert!((20..90).contains(&bad.len()), "{}", bad.len());
    assert!(
        stderr(&out).contains(&format!("{} dead letters", bad.len())),
        "{}",
        stderr(&out)
    );
    // A changed input path through --set.
    let out = run(
        &["run", "job.yaml", "--set", "sources.p.path=missing.jsonl"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("source `p`: cannot read `missing.jsonl`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn failures_exit_non_zero_naming_what_and_where() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.jsonl"),
        "{\"ts\": 1, \"v\": 1}\n{\"ts\": 2, \"v\": \"two\"}\n",
    )
    .unwrap();
    let job = |on_error: &str, path: &str| {
        format!(
            "name: fail\nsources:\n  s: {{ kind: file, path: in.jsonl, schema: {{ v: int, ts: int }}, event_time: {{ field: ts }}, on_error: {on_error} }}\nsinks:\n  o: {{ from: s, kind: file, path: \"{path}\" }}\n"
        )
    };
    std::fs::write(dir.path().join("strict.yaml"), job("fail", "out/o.jsonl")).unwrap();
    let out = run(&["run", "strict.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(
            "source `s`, in.jsonl[0..40] at offset 18: field `v`: expected int, got string \"two\""
        ),
        "{err}"
    );

    std::fs::write(
        dir.path().join("unwritable.yaml"),
        job("skip", "/proc/weir/o.jsonl"),
    )
    .unwrap();
    let out = run(&["run", "unwritable.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("sink `o`: cannot create directory /proc/weir"),
        "{}",
        stderr(&out)
    );

    let out = run(&["run", "strict.yaml", "--workers", "0"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--workers must be at least 1"));
}
