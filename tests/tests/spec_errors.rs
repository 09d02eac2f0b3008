//! Spec validation: each kind of mistake is reported with the path where it is and what was
//! expected, before anything runs.

use weir_jobs::{load_spec, SpecError};

const SOURCE: &str = r#"
  pay:
    kind: file
    path: /tmp/payments.jsonl
    schema: { user_id: string, amount: float, status: string, ts: timestamp }
    event_time: { field: ts }"#;

fn errors(yaml: &str) -> Vec<SpecError> {
    match load_spec(yaml, &[]) {
        Ok(_) => panic!("expected errors for:\n{yaml}"),
        Err(e) => e.0,
    }
}

/// Asserts that some error is at `path` and mentions `fragment`.
fn assert_error(yaml: &str, path: &str, fragment: &str) {
    let errors = errors(yaml);
    assert!(
        errors
            .iter()
            .any(|e| e.path == path && e.message.contains(fragment)),
        "no error at `{path}` mentioning `{fragment}`; got:\n{}",
        errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn job(steps: &str, sinks: &str) -> String {
    format!("name: t\nsources:{SOURCE}\nsteps:\n{steps}\nsinks:\n{sinks}\n")
}

const SINK: &str = "  out: { from: pay, kind: stdout }";

#[test]
fn a_valid_spec_plans() {
    let plan = load_spec(
        &job(
            "  big: { from: pay, filter: \"amount > 10\" }",
            "  out: { from: big, kind: blackhole }",
        ),
        &[],
    )
    .unwrap();
    assert_eq!(plan.steps.len(), 1);
}

#[test]
fn unknown_stream_reference() {
    assert_error(
        &job("  a: { from: paymnts, filter: \"true\" }", SINK),
        "steps.a.from",
        "unknown stream `paymnts` (known: pay, pay.dead_letter, a)",
    );
    assert_error(
        &job(
            "  a: { from: pay, filter: \"true\" }",
            "  out: { from: nope, kind: stdout }",
        ),
        "sinks.out.from",
        "unknown stream `nope`",
    );
}

#[test]
fn late_output_of_a_step_that_has_none() {
    assert_error(
        &job(
            "  a: { from: pay, filter: \"true\" }\n  b: { from: a.late, filter: \"true\" }",
            SINK,
        ),
        "steps.b.from",
        "only window, rule, rolling and join steps do",
    );
}

#[test]
fn cycles_between_steps() {
    let e = errors(&job("  a: { from: c, filter: \"true\" }\n  b: { from: a, filter: \"true\" }\n  c: { from: b, filter: \"true\" }", SINK));
    assert!(
        e.iter()
            .any(|e| e.path == "steps.a.from" && e.message.contains("cycle: a → c → b → a")),
        "{e:?}"
    );
}

#[test]
fn unknown_columns_in_expressions_keys_and_aggregates() {
    assert_error(
        &job("  a: { from: pay, filter: \"stauts = 'FAILED'\" }", SINK),
        "steps.a.filter",
        "unknown column `stauts`",
    );
    assert_error(
        &job(
            "  a: { from: pay, project: { x: \"amount * rate\" } }",
            SINK,
        ),
        "steps.a.project.x",
        "unknown column `rate`",
    );
    assert_error(&job("  w: { from: pay, key: usr, window: { kind: tumbling, size: 1m }, aggregates: { n: \"count(*)\" } }", SINK), "steps.w.key", "unknown column `usr`");
    assert_error(&job("  w: { from: pay, key: user_id, window: { kind: tumbling, size: 1m }, aggregates: { s: \"sum(amout)\" } }", SINK), "steps.w.aggregates.s", "unknown column `amout`");
}

#[test]
fn type_errors_in_expressions() {
    assert_error(
        &job("  a: { from: pay, filter: \"status > 5\" }", SINK),
        "steps.a.filter",
        "cannot compare string with int",
    );
    assert_error(
        &job("  a: { from: pay, filter: \"amount * 2\" }", SINK),
        "steps.a.filter",
        "is a float, expected a boolean condition",
    );
    assert_error(&job("  w: { from: pay, key: user_id, window: { kind: tumbling, size: 1m }, aggregates: { s: \"sum(status)\" } }", SINK), "steps.w.aggregates.s", "sum needs an int or float argument, got string");
    assert_error(
        &job("  a: { from: pay, filter: \"status = \" }", SINK),
        "steps.a.filter",
        "cannot parse",
    );
}

#[test]
fn bad_durations() {
    assert_error(&job("  w: { from: pay, key: user_id, window: { kind: tumbling, size: 10 parsecs }, aggregates: { n: \"count(*)\" } }", SINK), "steps.w.window.size", "invalid duration `10 parsecs`");
    assert_error(&job("  w: { from: pay, key: user_id, window: { kind: tumbling, size: 10 }, aggregates: { n: \"count(*)\" } }", SINK), "steps.w.window.size", "give a unit, like 10s");
    assert_error(&job("  w: { from: pay, key: user_id, window: { kind: tumbling, size: 0s }, aggregates: { n: \"count(*)\" } }", SINK), "steps.w.window.size", "must be longer than 0");
    assert_error(
        &format!("name: t\ntick: soon\nsources:{SOURCE}\nsinks:\n{SINK}\n"),
        "tick",
        "invalid duration `soon`",
    );
}

#[test]
fn window_shapes() {
    assert_error(&job("  w: { from: pay, key: user_id, window: { kind: sliding, size: 1m, slide: 5m }, aggregates: { n: \"count(*)\" } }", SINK), "steps.w.window.slide", "longer than the window");
    assert_error(&job("  w: { from: pay, key: user_id, window: { kind: sliding, size: 1m }, aggregates: { n: \"count(*)\" } }", SINK), "steps.w.window.slide", "required for sliding windows");
    assert_error(&job("  w: { from: pay, key: user_id, window: { kind: session, size: 1m }, aggregates: { n: \"count(*)\" } }", SINK), "steps.w.window.size", "not a field of a session window");
    assert_error(&job("  w: { from: pay, key: user_id, window: { kind: rolling, size: 1m }, aggregates: { n: \"count(*)\" } }", SINK), "steps.w.window.kind", "unknown window kind `rolling`");
    assert_error(
        &job(
            "  w: { from: pay, key: user_id, window: { kind: tumbling, size: 1m } }",
            SINK,
        ),
        "steps.w.aggregates",
        "required",
    );
    assert_error(&job("  w: { from: pay, key: user_id, window: { kind: tumbling, size: 1m }, aggregates: { user_id: \"count(*)\" } }", SINK), "steps.w.aggregates", "column `user_id` appears twice");
}

#[test]
fn unknown_and_misplaced_fields() {
    assert_error(
        &job("  a: { from: pay, filtr: \"true\" }", SINK),
        "steps.a.filtr",
        "unknown field `filtr`, expected one of `from`, `filter`",
    );
    assert_error(
        &job("  a: { from: pay }", SINK),
        "steps.a",
        "needs `filter`, `project`, `window` with `aggregates`, `rule`, `rolling` or `join`",
    );
    assert_error(
        &job("  a: { from: pay, filter: \"true\", key: user_id }", SINK),
        "steps.a.key",
        "only window steps",
    );
    assert_error(
        &format!("name: t\nsources:{SOURCE}\n    stream: payments\nsinks:\n{SINK}\n"),
        "sources.pay.stream",
        "not a field of a `file` source",
    );
    assert_error(
        &format!("name: t\nparalelism: 2\nsources:{SOURCE}\nsinks:\n{SINK}\n"),
        "paralelism",
        "unknown field `paralelism`",
    );
}

#[test]
fn wrong_value_types_and_kinds() {
    assert_error(
        &format!("name: t\nparallelism: two\nsources:{SOURCE}\nsinks:\n{SINK}\n"),
        "parallelism",
        "invalid type",
    );
    assert_error(
        "name: t\nsources:\n  s: { kind: kafak }\nsinks:\n  o: { from: s, kind: stdout }\n",
        "sources.s.kind",
        "unknown source kind `kafak`",
    );
    assert_error("name: t\nsources:\n  s: { kind: generator, stream: trades }\nsinks:\n  o: { from: s, kind: stdout }\n", "sources.s.stream", "unknown stream `trades`");
    assert_error("name: t\nsources:\n  s: { kind: generator, stream: iot, malformed: 2 }\nsinks:\n  o: { from: s, kind: stdout }\n", "sources.s.malformed", "not a fraction");
    assert_error(
        &job(
            "  a: { from: pay, filter: \"true\" }",
            "  o: { from: a, kind: s3 }",
        ),
        "sinks.o.kind",
        "unknown sink kind `s3`",
    );
    assert_error(
        &job(
            "  a: { from: pay, filter: \"true\" }",
            "  o: { from: a, kind: file }",
        ),
        "sinks.o.path",
        "required for file sinks",
    );
}

#[test]
fn file_source_schema_and_event_time() {
    let src = |schema: &str, time: &str| {
        format!("name: t\nsources:\n  s: {{ kind: file, path: x, schema: {schema}, event_time: {time} }}\nsinks:\n  o: {{ from: s, kind: stdout }}\n")
    };
    assert_error(
        &src("{ a: decimal, ts: timestamp }", "{ field: ts }"),
        "sources.s.schema.a",
        "unknown type `decimal`",
    );
    assert_error(
        &src("{ a: string, ts: timestamp }", "{ field: time }"),
        "sources.s.event_time.field",
        "`time` is not a column",
    );
    assert_error(
        &src("{ a: string, ts: string }", "{ field: ts }"),
        "sources.s.event_time.field",
        "expected timestamp or int",
    );
    assert_error(
        &src(
            "{ a: string, ts: timestamp }",
            "{ max_out_of_orderness: 1s }",
        ),
        "sources.s.event_time.field",
        "required",
    );
    assert_error(
        "name: t\nsources:\n  s: { kind: file, path: x }\nsinks:\n  o: { from: s, kind: stdout }\n",
        "sources.s.schema",
        "required",
    );
}

#[test]
fn names_and_checkpoint_section() {
    assert_error(
        &job("  bad.name: { from: pay, filter: \"true\" }", SINK),
        "steps.bad.name",
        "dots are reserved",
    );
    assert_error(
        &job("  pay: { from: pay, filter: \"true\" }", SINK),
        "steps.pay",
        "already the name of a source",
    );
    let with = |c: &str| format!("name: t\ncheckpoint: {c}\nsources:{SOURCE}\nsinks:\n{SINK}\n");
    assert_error(
        &with("{ interval: 10s, store: \"s4://bucket/x\" }"),
        "checkpoint.store",
        "not a store URL",
    );
    assert_error(
        &with("{ interval: 10s, store: \"file://relative\" }"),
        "checkpoint.store",
        "file:///absolute/path",
    );
    assert_error(
        &with("{ interval: 0s, store: /var/lib/weir }"),
        "checkpoint.interval",
        "",
    );
    assert_error(
        &with("{ interval: 1s, store: /var/lib/weir, retain: 0 }"),
        "checkpoint.retain",
        "at least 1",
    );
    assert_error(
        &with("{ interval: 1s, store: /var/lib/weir, fail_after: 0 }"),
        "checkpoint.fail_after",
        "at least 1",
    );
    // Kafka sources take part in checkpoints; exactly-once Kafka sinks need them.
    let kafka = |checkpoint: &str, sink: &str| {
        format!("name: t\n{checkpoint}\nsources:\n  k: {{ kind: kafka, brokers: \"127.0.0.1:9092\", topic: t, schema: {{ ts: timestamp, user: string }}, event_time: {{ field: ts }} }}\nsinks:\n  o: {{ from: k, kind: kafka, brokers: \"127.0.0.1:9092\", topic: out{sink} }}\n")
    };
    let plan = weir_jobs::load_spec(
        &kafka("checkpoint: { interval: 1s, store: /tmp/ck }", ""),
        &[],
    );
    assert!(plan.is_ok(), "{:?}", plan.err());
    assert_error(
        &kafka("", ", delivery: exactly_once"),
        "sinks.o.delivery",
        "add a `checkpoint:` section",
    );
    assert_error(
        &kafka(
            "checkpoint: { interval: 1s, store: /tmp/ck }",
            ", delivery: twice",
        ),
        "sinks.o.delivery",
        "expected exactly_once, idempotent or at_least_once",
    );
    assert_error(
        &kafka(
            "checkpoint: { interval: 1s, store: /tmp/ck }",
            ", commit_topic: out",
        ),
        "sinks.o.commit_topic",
        "not the sink's topic",
    );
    // What a source does about records the broker deleted before it read them.
    let deleted = |value: &str| {
        kafka("", "").replace(
            "event_time: { field: ts } }",
            &format!("event_time: {{ field: ts }}, on_deleted_records: {value} }}"),
        )
    };
    for ok in ["continue", "fail"] {
        let plan = weir_jobs::load_spec(&deleted(ok), &[]);
        assert!(plan.is_ok(), "{ok}: {:?}", plan.err());
    }
    assert_error(
        &deleted("skip"),
        "sources.k.on_deleted_records",
        "unknown value `skip`: expected continue or fail",
    );
    // A plain directory is a local store.
    let plan = weir_jobs::load_spec(&with("{ interval: 1s, store: ckpt }"), &[]).unwrap();
    let store = plan.checkpoint.unwrap().store;
    assert!(
        store.starts_with("file:///") && store.ends_with("/ckpt"),
        "{store}"
    );
}

#[test]
fn file_sinks_that_would_overwrite_each_other_or_the_input() {
    assert_error(
        &job("  a: { from: pay, filter: \"true\" }", "  o1: { from: a, kind: file, path: out/x.jsonl }\n  o2: { from: pay, kind: file, path: out/x.jsonl }"),
        "sinks.o2.path",
        "also the path of sink `o1`",
    );
    assert_error(
        &job(
            "  a: { from: pay, filter: \"true\" }",
            "  o: { from: a, kind: file, path: /tmp/payments.jsonl }",
        ),
        "sinks.o.path",
        "read by source `pay`",
    );
}

#[test]
fn not_a_document() {
    assert_error("name: [unclosed", "", "not a valid YAML/JSON document");
    assert_error("- just\n- a list\n", "", "a job spec is a mapping");
}

#[test]
fn every_problem_is_reported_at_once() {
    let e = errors(&job(
        "  a: { from: nope, filter: \"true\" }\n  b: { from: pay, filter: \"x = 1\" }\n  w: { from: pay, key: user_id, window: { kind: tumbling, size: 1m }, aggregates: { n: \"count(nothing)\" } }",
        SINK,
    ));
    let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["steps.a.from", "steps.b.filter", "steps.w.aggregates.n"]
    );
}

#[test]
fn set_overrides_are_applied_before_validation() {
    let spec = job("  a: { from: pay, filter: \"true\" }", SINK);
    let plan = load_spec(
        &spec,
        &["parallelism=3".into(), "steps.a.filter=amount > 5".into()],
    )
    .unwrap();
    assert_eq!(plan.parallelism, 3);
    let e = load_spec(&spec, &["steps.a.filter=amount >".into()]).unwrap_err();
    assert_eq!(e.0[0].path, "steps.a.filter");
    let e = load_spec(&spec, &["parallelism".into()]).unwrap_err();
    assert!(e.0[0].message.contains("not path=value"));
}

#[test]
fn rule_steps() {
    assert_error(
        &job(
            "  r: { from: pay, rule: { key: user_id, threshold: 3 } }",
            SINK,
        ),
        "steps.r.rule.count_over",
        "required",
    );
    assert_error(
        &job(
            "  r: { from: pay, rule: { key: usr, count_over: 10m, threshold: 3 } }",
            SINK,
        ),
        "steps.r.rule.key",
        "unknown column `usr`",
    );
    assert_error(
        &job(
            "  r: { from: pay, rule: { key: user_id, count_over: 10m } }",
            SINK,
        ),
        "steps.r.rule.threshold",
        "required (or `sum_over` with `sum_threshold`)",
    );
    assert_error(
        &job("  r: { from: pay, rule: { key: user_id, count_over: 1h, sum_over: status, sum_threshold: 5 } }", SINK),
        "steps.r.rule.sum_over",
        "`status` is not a number",
    );
    assert_error(
        &job("  r: { from: pay, rule: { key: user_id, count_over: 1h, threshold: 1, where: amount } }", SINK),
        "steps.r.rule.where",
        "expected a boolean condition",
    );
    assert_error(
        &job("  r: { from: pay, rule: { kind: absence, key: user_id, first: \"status = 'FAILED'\", within: 5m } }", SINK),
        "steps.r.rule.then",
        "required for a absence rule",
    );
    assert_error(
        &job("  r: { from: pay, rule: { kind: sequence, key: user_id, first: \"true\", then: \"true\", within: 5m, threshold: 2 } }", SINK),
        "steps.r.rule.threshold",
        "not a field of a sequence rule",
    );
    assert_error(
        &job(
            "  r: { from: pay, rule: { kind: often, key: user_id } }",
            SINK,
        ),
        "steps.r.rule.kind",
        "unknown rule kind `often`",
    );
    assert_error(
        &job("  r: { from: pay, filter: \"true\", rule: { key: user_id, count_over: 1m, threshold: 1 } }", SINK),
        "steps.r.filter",
        "not a field of a rule step",
    );
}

#[test]
fn rolling_steps() {
    assert_error(
        &job("  r: { from: pay, rolling: { key: user_id, over: 0s, aggregates: { n: \"count(*)\" } } }", SINK),
        "steps.r.rolling.over",
        "must be longer than 0",
    );
    assert_error(
        &job("  r: { from: pay, rolling: { key: user_id, over: 1m, aggregates: { n: \"median(amount)\" } } }", SINK),
        "steps.r.rolling.aggregates.n",
        "not an aggregate",
    );
    assert_error(
        &job("  r: { from: pay, rolling: { key: user_id, over: 1m, aggregates: { amount: \"sum(amount)\" } } }", SINK),
        "steps.r.rolling.aggregates",
        "rename the aggregate",
    );
}

#[test]
fn join_steps() {
    let two = |join: &str| job(&format!("  j: {{ join: {join} }}"), SINK);
    assert_error(
        &two("{ left: pay, right: pay, on: \"left.user_id = right.user_id\" }"),
        "steps.j.join",
        "a regular join must bound its state",
    );
    assert_error(
        &two("{ left: pay, right: pay, on: \"left.user_id = right.amount\", within: 1m }"),
        "steps.j.join.on",
        "join keys must have one type",
    );
    assert_error(
        &two("{ left: pay, right: pay, on: \"left.user_id < right.user_id\", within: 1m }"),
        "steps.j.join.on",
        "expected equalities",
    );
    assert_error(
        &two("{ left: pay, right: nope, on: \"left.user_id = right.user_id\", within: 1m }"),
        "steps.j.join.right",
        "unknown stream `nope`",
    );
    assert_error(
        &two("{ left: pay, right: pay, on: \"left.user_id = right.user_id\", within: 1m, window: { kind: tumbling, size: 1m } }"),
        "steps.j.join",
        "not within and window",
    );
    assert_error(
        &two("{ left: pay, right: pay, on: \"left.user_id = right.user_id\", window: { kind: session, gap: 1m } }"),
        "steps.j.join.window.kind",
        "tumbling or sliding",
    );
    assert_error(
        &two("{ left: pay, right: pay, type: full, on: \"left.user_id = right.user_id\", within: 1m }"),
        "steps.j.join.type",
        "expected inner or left",
    );
    assert_error(
        &two("{ left: pay, temporal: { dimension: pay, key: user_id, deleted: amount } }"),
        "steps.j.join.temporal.deleted",
        "expected a boolean condition",
    );
    assert_error(
        &job("  j: { from: pay, join: { left: pay, right: pay, on: \"left.user_id = right.user_id\", within: 1m } }", SINK),
        "steps.j.from",
        "names its inputs in `join.left`",
    );
    // Output columns of the right side that clash with the left are prefixed.
    let plan = load_spec(
        &job(
            "  j: { join: { left: pay, right: pay, on: \"left.user_id = right.user_id\", within: 1m } }",
            "  out: { from: j, kind: stdout }\n  late: { from: j.late_right, kind: stdout }",
        ),
        &[],
    )
    .unwrap();
    let names: Vec<&str> = plan.steps[0]
        .schema
        .fields()
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "user_id",
            "amount",
            "status",
            "ts",
            "pay_user_id",
            "pay_amount",
            "pay_status",
            "pay_ts"
        ]
    );
}

#[test]
fn redis_sinks_name_what_is_wrong() {
    let with = |sink: &str| {
        format!(
            "name: t\nsources:\n  p: {{ kind: generator, stream: payments, events: 10 }}\nsinks:\n  r: {{ from: p, kind: redis, {sink} }}\n"
        )
    };
    assert_error(&with("key: \"u:{user_id}\""), "sinks.r.url", "required");
    assert_error(
        &with("url: \"http://x\", key: \"u:{user_id}\""),
        "sinks.r.url",
        "not a redis://",
    );
    assert_error(&with("url: \"redis://x:1\""), "sinks.r.key", "required");
    assert_error(
        &with("url: \"redis://x:1\", key: \"u:{user}\""),
        "sinks.r.key",
        "`{user}` in `u:{user}` is not a column",
    );
    assert_error(
        &with("url: \"redis://x:1\", key: \"u\", mode: list"),
        "sinks.r.mode",
        "expected hash, string, sorted_set or stream",
    );
    assert_error(
        &with("url: \"redis://x:1\", key: \"top\", mode: sorted_set, member: \"{merchant}\""),
        "sinks.r.score",
        "required for mode sorted_set",
    );
    assert_error(
        &with("url: \"redis://x:1\", key: \"top\", mode: sorted_set, member: \"{merchant}\", score: \"amount +\""),
        "sinks.r.score",
        "",
    );
    assert_error(
        &with("url: \"redis://x:1\", key: \"a\", mode: stream, ttl: 1h"),
        "sinks.r.ttl",
        "only for mode hash or string",
    );
    assert_error(
        &with("url: \"redis://x:1\", key: \"a\", value: amount"),
        "sinks.r.value",
        "only for mode string",
    );
    assert_error(
        &with("url: \"redis://x:1\", key: \"a\", topic: t"),
        "sinks.r.topic",
        "not a field of a `redis` sink",
    );
    let ok = weir_jobs::load_spec(
        &with("url: \"redis://x:1/2\", key: \"top:{currency}\", mode: sorted_set, member: \"{merchant}\", score: amount"),
        &[],
    );
    assert!(ok.is_ok(), "{:?}", ok.err());
}

#[test]
fn iceberg_sinks_name_what_is_wrong() {
    let with = |sink: &str| {
        format!(
            "name: t\nsources:\n  p: {{ kind: generator, stream: payments, events: 10 }}\nsinks:\n  i: {{ from: p, kind: iceberg, {sink} }}\n"
        )
    };
    let good =
        "catalog: \"sqlite:///tmp/c.db\", warehouse: \"file:///tmp/wh\", table: \"db.payments\"";
    assert_error(
        &with("warehouse: \"file:///tmp/wh\", table: \"db.t\""),
        "sinks.i.catalog",
        "required: sqlite:///abs/catalog.db",
    );
    assert_error(
        &with("catalog: \"sqlite://rel/c.db\", warehouse: \"file:///tmp/wh\", table: \"db.t\""),
        "sinks.i.catalog",
        "expected sqlite:///absolute/path.db",
    );
    assert_error(
        &with("catalog: \"thrift://hms:9083\", warehouse: \"file:///tmp/wh\", table: \"db.t\""),
        "sinks.i.catalog",
        "expected sqlite:///abs/catalog.db or http(s)://host:port",
    );
    assert_error(
        &with("catalog: \"sqlite:///tmp/c.db\", table: \"db.t\""),
        "sinks.i.warehouse",
        "required with a SQL catalog",
    );
    assert_error(
        &with("catalog: \"sqlite:///tmp/c.db\", warehouse: \"/tmp/wh\", table: \"db.t\""),
        "sinks.i.warehouse",
        "expected file:///abs/path",
    );
    assert_error(
        &with("catalog: \"sqlite:///tmp/c.db\", warehouse: \"file:///tmp/wh\", table: payments"),
        "sinks.i.table",
        "required: namespace.table",
    );
    assert_error(
        &with(&format!("{good}, partition_by: [\"day(nope)\"]")),
        "sinks.i.partition_by[0]",
        "no column `nope`",
    );
    assert_error(
        &with(&format!("{good}, partition_by: [\"ts\", \"day(user_id)\"]")),
        "sinks.i.partition_by[1]",
        "column `user_id` is string",
    );
    assert_error(
        &with(&format!("{good}, topic: t")),
        "sinks.i.topic",
        "not a field of a `iceberg` sink",
    );
    let ok = weir_jobs::load_spec(
        &with(&format!(
            "{good}, catalog_name: cat, partition_by: [\"day(ts)\", \"bucket(8, user_id)\"]"
        )),
        &[],
    );
    assert!(ok.is_ok(), "{:?}", ok.err());
}
