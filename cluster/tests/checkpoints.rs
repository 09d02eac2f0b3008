//! Durable checkpoints end to end: the `weir` binary killed with SIGKILL at random moments and
//! restarted with `--restore latest` (at changing worker counts) writes exactly the files of a
//! run that never failed; damaged checkpoints are skipped for the one before.

mod common;

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use common::{run, stderr, weir, Lcg};
use weir_tests::read_iceberg;

/// A windowed aggregate and a fraud rule over generated payments, paced to last 10 s,
/// checkpointing every 200 ms into `store/`; the aggregate also goes to an Iceberg table.
fn job(dir: &Path) -> std::path::PathBuf {
    let d = dir.display();
    let spec = format!(
        r#"
name: crash-test
tick: 50ms
checkpoint: {{ interval: 200ms, store: store, retain: 3 }}
sources:
  payments:
    kind: generator
    stream: payments
    events: 100000
    rate: 10000
    partitions: 4
    seed: 11
    malformed: 0.01
    event_time: {{ max_out_of_orderness: 1s }}
steps:
  per_user: {{ from: payments, key: user_id, window: {{ kind: tumbling, size: 10s }}, aggregates: {{ n: "count(*)", total: "sum(amount)" }} }}
  bursts: {{ from: payments, rule: {{ key: user_id, count_over: 20s, threshold: 3, id: payment_id }} }}
sinks:
  per_user: {{ from: per_user, kind: file, path: out/per_user.jsonl }}
  alerts: {{ from: bursts, kind: file, path: out/alerts.jsonl }}
  bad: {{ from: payments.dead_letter, kind: file, path: out/bad.jsonl }}
  per_user_table: {{ from: per_user, kind: iceberg, catalog: "sqlite://{d}/catalog.db", warehouse: "file://{d}/warehouse", table: crash.per_user }}
"#
    );
    let path = dir.join("job.yaml");
    std::fs::write(&path, spec).unwrap();
    path
}

/// The job's files, and its table as PyIceberg reads it (rows, canonical, sorted).
fn outputs(dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = ["per_user", "alerts", "bad"]
        .iter()
        .map(|n| {
            let text = std::fs::read_to_string(dir.join(format!("out/{n}.jsonl")))
                .unwrap_or_else(|e| panic!("out/{n}.jsonl: {e}"));
            (n.to_string(), text)
        })
        .collect();
    let table = read_iceberg(
        &dir.join("catalog.db"),
        "weir",
        &format!("file://{}/warehouse", dir.display()),
        "crash.per_user",
    );
    out.push(("per_user table".into(), table.canonical_rows().join("\n")));
    out
}

/// The outputs of the job run at two workers without failure or stop.
fn reference_outputs() -> Vec<(String, String)> {
    let reference = tempfile::tempdir().unwrap();
    job(reference.path());
    let out = run(&["run", "job.yaml", "--workers", "2"], reference.path());
    assert!(out.status.success(), "{}", stderr(&out));
    outputs(reference.path())
}

/// How many checkpoints under `root` (a job's directory in the store) are complete.
fn complete_checkpoints(root: &Path) -> usize {
    std::fs::read_dir(root)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().join("_MANIFEST").exists())
                .count()
        })
        .unwrap_or(0)
}

/// Runs the job in `dir` at two workers with `extra` arguments, sends it `signal` (`-TERM`,
/// `-USR1`) once `checkpoints` checkpoints are complete, and waits for it to end.
fn signal_after_checkpoints(
    dir: &Path,
    extra: &[&str],
    checkpoints: usize,
    signal: &str,
) -> std::process::Output {
    let child = weir()
        .args(["run", "job.yaml", "--workers", "2"])
        .args(extra)
        .env("WEIR_LOG", "warn,weir_jobs=info")
        .current_dir(dir)
        .spawn()
        .expect("spawn weir");
    let root = dir.join("store/crash-test");
    let started = Instant::now();
    while complete_checkpoints(&root) < checkpoints {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no checkpoints"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    common::wait(child, Duration::from_secs(120))
}

fn spawn(dir: &Path, workers: usize, restore: bool) -> Child {
    let mut args = vec!["run".to_string(), "job.yaml".into(), "--workers".into()];
    args.push(workers.to_string());
    if restore {
        args.extend(["--restore".into(), "latest".into()]);
    }
    weir()
        .args(&args)
        .current_dir(dir)
        .spawn()
        .expect("spawn weir")
}

#[test]
fn killed_ten_times_and_restored_the_outputs_equal_a_run_without_failure() {
    let expected = reference_outputs();
    assert!(expected.iter().all(|(_, text)| !text.is_empty()));

    let dir = tempfile::tempdir().unwrap();
    job(dir.path());
    let mut rng = Lcg(7);
    let mut resumed = Vec::new();
    for kill in 0..10 {
        let workers = 1 + rng.next(3) as usize;
        let mut child = spawn(dir.path(), workers, kill > 0);
        // Kill at a random moment of the run (the debug binary starts in ~0.2 s).
        std::thread::sleep(Duration::from_millis(300 + rng.next(900)));
        let finished = child.try_wait().unwrap().is_some();
        let _ = child.kill(); // SIGKILL
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        if let Some(line) = err.lines().find(|l| l.contains("resuming job")) {
            resumed.push(line.to_string());
        }
        assert!(!err.contains("ERROR"), "kill {kill}: {err}");
        assert!(
            !finished,
            "run {kill} ended before it was killed: make the job longer"
        );
    }
    let child = spawn(dir.path(), 3, true);
    let out = common::wait(child, Duration::from_secs(120));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        resumed.len() >= 5,
        "most restarts resume from a checkpoint: {resumed:#?}"
    );
    for ((name, got), (_, want)) in outputs(dir.path()).iter().zip(&expected) {
        if got != want {
            let got_lines: std::collections::BTreeSet<&str> = got.lines().collect();
            let want_lines: std::collections::BTreeSet<&str> = want.lines().collect();
            let missing: Vec<_> = want_lines.difference(&got_lines).take(5).collect();
            let extra: Vec<_> = got_lines.difference(&want_lines).take(5).collect();
            let kept = dir.keep();
            panic!(
                "out/{name}.jsonl differs from the run without failures ({} lines, expected {}; \
                 missing {missing:?}, extra {extra:?}; same set: {}; kept in {})",
                got.lines().count(),
                want.lines().count(),
                got_lines == want_lines,
                kept.display()
            );
        }
    }
    // Retention: at most `retain` complete checkpoints are left (abandoned ones are dropped
    // as newer ones complete).
    let checkpoints: Vec<_> = std::fs::read_dir(dir.path().join("store/crash-test"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("chk-"))
        .collect();
    let complete = checkpoints
        .iter()
        .filter(|c| {
            dir.path()
                .join("store/crash-test")
                .join(c)
                .join("_MANIFEST")
                .exists()
        })
        .count();
    assert!((1..=3).contains(&complete), "{checkpoints:?}");
}

#[test]
fn a_damaged_checkpoint_is_skipped_for_the_one_before() {
    let dir = tempfile::tempdir().unwrap();
    job(dir.path());
    let mut child = spawn(dir.path(), 2, false);
    // Let a few checkpoints complete, then stop it hard.
    let root = dir.path().join("store/crash-test");
    let started = Instant::now();
    let complete = |root: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(root)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                    .filter(|n| root.join(n).join("_MANIFEST").exists())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    while complete(&root).len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no checkpoints completed"
        );
        assert!(child.try_wait().unwrap().is_none(), "the run ended first");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let done = complete(&root);
    let (older, newest) = (&done[done.len() - 2], &done[done.len() - 1]);
    // Truncate a state file of the newest complete checkpoint.
    let state = root.join(newest).join("state/per_user");
    let file = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .expect("a state file");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();

    let out = common::wait(spawn(dir.path(), 1, true), Duration::from_secs(120));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("checkpoint {newest} of job `crash-test`"))
            && err.contains("skipped: file state/per_user/"),
        "{err}"
    );
    let epoch: u64 = older.trim_start_matches("chk-").parse().unwrap();
    assert!(
        err.contains(&format!("from checkpoint {epoch} ")),
        "resumes from the one before: {err}"
    );

    // A checkpoint that does not exist is an error naming it.
    let out = run(&["run", "job.yaml", "--restore", "chk-999999"], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("it has no manifest"),
        "{}",
        stderr(&out)
    );
}

/// Both processes of a two-process run, each with `workers` workers, restoring when asked.
fn spawn_two(dir: &Path, workers: usize, restore: bool) -> (Child, Child) {
    let hosts = format!(
        "127.0.0.1:{}\n127.0.0.1:{}\n",
        weir_tests::free_port(),
        weir_tests::free_port()
    );
    std::fs::write(dir.join("hosts.txt"), hosts).unwrap();
    let spawn = |process: &str| {
        let mut args = vec![
            "run",
            "job.yaml",
            "--processes",
            "2",
            "--process",
            process,
            "--hosts",
            "hosts.txt",
        ];
        let workers = workers.to_string();
        args.extend(["--workers", &workers]);
        if restore {
            args.extend(["--restore", "latest"]);
        }
        weir()
            .args(&args)
            .current_dir(dir)
            .spawn()
            .expect("spawn weir")
    };
    (spawn("0"), spawn("1"))
}

#[test]
fn two_processes_killed_and_restored_as_two_others_equal_a_run_without_failure() {
    let expected = reference_outputs();

    let dir = tempfile::tempdir().unwrap();
    job(dir.path());
    // Two processes of one worker each; checkpoints are completed by the first, whose
    // completions the second learns from the store.
    let (mut p0, mut p1) = spawn_two(dir.path(), 1, false);
    let root = dir.path().join("store/crash-test");
    let started = Instant::now();
    while complete_checkpoints(&root) < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no checkpoints completed"
        );
        assert!(p0.try_wait().unwrap().is_none(), "the run ended first");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(700));
    for p in [&mut p0, &mut p1] {
        let _ = p.kill();
        let _ = p.wait();
    }
    // Restored as two processes of two workers each.
    let (p0, p1) = spawn_two(dir.path(), 2, true);
    let (o0, o1) = (
        common::wait(p0, Duration::from_secs(120)),
        common::wait(p1, Duration::from_secs(120)),
    );
    assert!(o0.status.success(), "process 0: {}", stderr(&o0));
    assert!(o1.status.success(), "process 1: {}", stderr(&o1));
    assert!(stderr(&o1).contains("resuming job"), "{}", stderr(&o1));
    for ((name, got), (_, want)) in outputs(dir.path()).iter().zip(&expected) {
        assert!(
            got == want,
            "out/{name}.jsonl differs from the run without failures"
        );
    }
}

#[test]
fn stopped_with_a_savepoint_on_sigterm_and_restored_the_outputs_equal_a_run_without_stop() {
    let expected = reference_outputs();

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    job(d);
    // Stop it once it has completed a couple of checkpoints (the job runs ~10 s).
    let started = Instant::now();
    let out = signal_after_checkpoints(d, &["--savepoint-on-stop"], 2, "-TERM");
    let root = d.join("store/crash-test");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("stopped with savepoint chk-"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the run stopped early, not at the end of its input: {err}"
    );
    // The savepoint is named in its manifest (and kept by retention).
    let savepoint = err
        .split("stopped with savepoint ")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .expect("the savepoint's name");
    let manifest = std::fs::read_to_string(root.join(savepoint).join("_MANIFEST")).unwrap();
    assert!(manifest.contains("\"savepoint\": \"stop-"), "{manifest}");
    let stop_dirs = || {
        std::fs::read_dir(&root)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("stop-"))
            .count()
    };
    assert_eq!(stop_dirs(), 1, "the stopped run recorded where it stopped");

    // Resumed from the savepoint at three workers: as if never stopped.
    let out = common::wait(spawn(d, 3, true), Duration::from_secs(120));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("resuming job"), "{err}");
    for ((name, got), (_, want)) in outputs(d).iter().zip(&expected) {
        assert!(got == want, "{name} differs from the run without a stop");
    }
    assert_eq!(
        stop_dirs(),
        0,
        "the resumed run removed the old stop directory"
    );

    // Without checkpoints there is nothing to take a savepoint in.
    std::fs::write(
        d.join("plain.yaml"),
        "name: plain\nsources:\n  p: { kind: generator, stream: payments, events: 10 }\nsinks:\n  o: { from: p, kind: stdout }\n",
    )
    .unwrap();
    let out = run(&["run", "plain.yaml", "--savepoint-on-stop"], d);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no `checkpoint:` section"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn sigusr1_takes_a_savepoint_that_retention_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    job(d);
    let out = signal_after_checkpoints(d, &[], 1, "-USR1");
    let root = d.join("store/crash-test");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let name = err
        .split("savepoint sp-")
        .nth(1)
        .and_then(|r| r.split(": ").nth(1))
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("no savepoint line: {err}"));
    // Retention (3) has since deleted older checkpoints, not the savepoint.
    let manifest = std::fs::read_to_string(root.join(name).join("_MANIFEST"))
        .unwrap_or_else(|e| panic!("{name} was not kept: {e}"));
    assert!(manifest.contains("\"savepoint\": \"sp-"), "{manifest}");
    assert!(complete_checkpoints(&root) <= 4);
}

/// A windowed aggregate into one file, checkpointed every 200 ms and every checkpoint kept.
fn file_job(dir: &Path) {
    let spec = r#"
name: older-restore
tick: 50ms
checkpoint: { interval: 200ms, store: store, retain: 1000 }
sources:
  payments:
    kind: generator
    stream: payments
    events: 40000
    rate: 16000
    partitions: 4
    seed: 42
    event_time: { max_out_of_orderness: 2s }
steps:
  per_user: { from: payments, key: user_id, window: { kind: tumbling, size: 1m }, aggregates: { n: "count(*)" } }
sinks:
  per_user: { from: per_user, kind: file, path: out/per_user.jsonl }
"#;
    std::fs::write(dir.join("job.yaml"), spec).unwrap();
}

fn sorted_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

#[test]
fn an_older_checkpoint_restored_after_the_completed_output_was_moved_away_writes_what_follows_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    file_job(d);
    let first = run(&["run", "job.yaml", "--workers", "2"], d);
    assert!(first.status.success(), "{}", stderr(&first));
    let mut kept: Vec<String> = std::fs::read_dir(d.join("store/older-restore"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("_MANIFEST").exists())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    kept.sort();
    assert!(kept.len() >= 4, "checkpoints: {kept:?}");
    let older = kept[2].clone();
    let restore = |d: &Path| {
        common::wait(
            weir()
                .args(["run", "job.yaml", "--workers", "2", "--restore", &older])
                .current_dir(d)
                .spawn()
                .expect("spawn weir"),
            Duration::from_secs(60),
        )
    };

    // The completed file is final: the restored run says so and ends.
    let out = restore(d);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("out/per_user.jsonl is the final output of a run that completed"),
        "{}",
        stderr(&out)
    );

    // Where the file cannot be opened at all (its directory is a file), worker 0 fails while
    // it builds the dataflow: the run ends with the reason, its other worker does not wait.
    std::fs::rename(d.join("out"), d.join("out-first")).unwrap();
    std::fs::write(d.join("out"), "").unwrap();
    let out = restore(d);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("sink `per_user`") && stderr(&out).contains("out"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_file(d.join("out")).unwrap();

    // Moved away (with its marker), as the message says: a new file with what the restored
    // run writes after the checkpoint — the tail of the first run's output.
    let out = restore(d);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("is not there"), "{}", stderr(&out));
    let all = sorted_lines(&d.join("out-first/per_user.jsonl"));
    let after = sorted_lines(&d.join("out/per_user.jsonl"));
    assert!(!after.is_empty() && after.len() < all.len());
    let missing: Vec<&String> = after
        .iter()
        .filter(|l| all.binary_search(l).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "lines the first run did not write: {missing:?}"
    );
}

#[test]
fn a_process_that_fails_ends_and_its_peer_ends_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    file_job(d);
    // The file sink's directory is a file: process 0 fails while it builds its dataflow.
    std::fs::write(d.join("out"), "").unwrap();
    let (p0, p1) = spawn_two(d, 2, false);
    let (p0, p1) = (
        common::wait(p0, Duration::from_secs(60)),
        common::wait(p1, Duration::from_secs(60)),
    );
    assert!(!p0.status.success());
    assert!(
        stderr(&p0).contains("sink `per_user`: cannot create directory"),
        "{}",
        stderr(&p0)
    );
    assert!(!p1.status.success());
    assert!(
        stderr(&p1).contains("process 1 lost its connection to process 0"),
        "{}",
        stderr(&p1)
    );
}

/// Checkpoints and an Iceberg warehouse in S3 (moto's server on loopback): a run killed with
/// SIGKILL after its first checkpoints and restored from the newest one (at another worker
/// count) writes the file, and the table (read by PyIceberg from S3), of a run that never
/// failed on local disk.
#[cfg(feature = "s3")]
#[test]
fn checkpoints_in_s3_restore_a_killed_run_to_the_outputs_of_one_without_failure() {
    let server = weir_tests::S3Server::start();
    server.create_bucket("weir-checkpoints");
    // The file-sink job, plus an Iceberg table in `warehouse`, checkpointing to `store`.
    let spec = |dir: &Path, store: &str, warehouse: &str| {
        file_job(dir);
        let path = dir.join("job.yaml");
        let table = format!(
            "sinks:\n  table: {{ from: per_user, kind: iceberg, catalog: \"sqlite://{}/catalog.db\", \
             warehouse: \"{warehouse}\", table: s3.per_user }}\n",
            dir.display()
        );
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace(
                "store: store, retain: 1000",
                &format!("store: \"{store}\", retain: 3"),
            )
            .replace("sinks:\n", &table);
        std::fs::write(&path, text).unwrap();
    };
    let reference = tempfile::tempdir().unwrap();
    let r = reference.path();
    let local_warehouse = format!("file://{}/warehouse", r.display());
    spec(r, "store", &local_warehouse);
    let out = run(&["run", "job.yaml", "--workers", "2"], r);
    assert!(out.status.success(), "{}", stderr(&out));

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    spec(
        d,
        "s3://weir-checkpoints/runs",
        "s3://weir-checkpoints/warehouse",
    );
    let start = |workers: &str, restore: bool| {
        let mut c = weir();
        c.args(["run", "job.yaml", "--workers", workers])
            .env("WEIR_LOG", "warn,weir_jobs=info")
            .current_dir(d);
        if restore {
            c.args(["--restore", "latest"]);
        }
        for (k, v) in server.env() {
            c.env(k, v);
        }
        c.spawn().expect("spawn weir")
    };
    let mut child = start("2", false);
    // Killed once its log says two checkpoints completed (they are in S3: nothing on disk).
    let (lines, completed) = std::sync::mpsc::channel();
    let reader = std::io::BufReader::new(child.stderr.take().unwrap());
    let log = std::thread::spawn(move || {
        let mut log = String::new();
        for line in std::io::BufRead::lines(reader).map_while(Result::ok) {
            if line.contains("checkpoint") && line.contains("complete:") {
                let _ = lines.send(());
            }
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    for _ in 0..2 {
        completed
            .recv_timeout(Duration::from_secs(60))
            .expect("two checkpoints in S3 within a minute");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let log = log.join().unwrap();
    let out = common::wait(start("3", true), Duration::from_secs(120));
    let err = stderr(&out);
    assert!(
        out.status.success(),
        "first run:\n{log}\nrestored run:\n{err}"
    );
    assert!(
        err.contains("resuming job `older-restore` from checkpoint"),
        "the restored run did not resume from S3:\n{err}"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("out/per_user.jsonl")).unwrap(),
        std::fs::read_to_string(reference.path().join("out/per_user.jsonl")).unwrap(),
        "the restored run's file differs from a run without failure"
    );
    // The table in S3, read by PyIceberg through the same server, equals the reference's.
    let in_s3 = weir_tests::read_iceberg_with(
        &d.join("catalog.db"),
        "weir",
        "s3://weir-checkpoints/warehouse",
        "s3.per_user",
        &server.env(),
    );
    let local = read_iceberg(
        &r.join("catalog.db"),
        "weir",
        &local_warehouse,
        "s3.per_user",
    );
    assert!(!local.rows.is_empty());
    assert_eq!(in_s3.canonical_rows(), local.canonical_rows());
    assert!(in_s3
        .files
        .iter()
        .all(|f| f.starts_with("s3://weir-checkpoints/warehouse/")));
}
