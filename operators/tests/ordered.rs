//! Rules, rolling aggregates and joins against naive recomputations from their definitions,
//! on seeded input with disorder, late records and duplicate timestamps: identical at 1, 2 and
//! 3 workers, and across a snapshot → restore onto another worker count.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{assert_restores_exactly, on_time, rows, run_everywhere, scenario, schema, Build};
use weir_engine::data::{Row, Value};
use weir_engine::event::Event;
use weir_engine::keys::KeyGroups;
use weir_operators::aggregate::Aggregates;
use weir_operators::expr::Expr;
use weir_operators::join::{IntervalJoin, JoinType, TemporalJoin, WindowJoin};
use weir_operators::ordered::{ordered, KeyedProcess, OrderedConfig};
use weir_operators::rolling::Rolling;
use weir_operators::rule::{Pattern, PatternKind, Threshold};
use weir_operators::window::WindowKind;

fn expr(text: &str) -> Expr {
    Expr::compile(text, &schema()).unwrap()
}

fn key(e: &Event) -> String {
    e.row.get_str(0).unwrap().to_string()
}

fn v(e: &Event) -> i64 {
    e.row.get_i64(1).unwrap()
}

/// Builds `process` keyed by column 0 on every input.
fn build<P: KeyedProcess + Clone + Send + Sync>(
    process: P,
    sides: usize,
    lateness: i64,
) -> Arc<Build> {
    Arc::new(move |inputs, wm, state| {
        let config = OrderedConfig {
            name: "op".into(),
            key_columns: vec![vec![0]; sides],
            allowed_lateness: lateness,
            key_groups: KeyGroups::new(16),
            control: false,
        };
        ordered(
            inputs,
            wm,
            config,
            process.clone(),
            state,
            Default::default(),
        )
    })
}

/// Per key, the on-time records in processing order: event time, then row bytes.
fn by_key(events: &[Event]) -> BTreeMap<String, Vec<Event>> {
    let mut map: BTreeMap<String, Vec<Event>> = BTreeMap::new();
    for e in events {
        map.entry(key(e)).or_default().push(e.clone());
    }
    for list in map.values_mut() {
        list.sort_by(|a, b| (a.ts, &a.row).cmp(&(b.ts, &b.row)));
    }
    map
}

fn alert(
    key: &str,
    ts: i64,
    count: i64,
    sum: Option<f64>,
    first: i64,
    last: i64,
    ids: &[i64],
) -> String {
    let mut values = vec![Value::Str(key.to_string().into()), Value::Int(count)];
    if let Some(s) = sum {
        values.push(Value::Float(s));
    }
    let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    values.extend([
        Value::Ts(first),
        Value::Ts(last),
        Value::Str(ids.join(",").into()),
    ]);
    format!("{ts} {:?}", Row::from_values(&values))
}

fn sorted(mut rows: Vec<String>) -> Vec<String> {
    rows.sort();
    rows
}

fn inputs(seed: u64, sides: usize, keys: u64) -> Arc<Vec<common::Scenario>> {
    let list = (0..sides)
        .map(|s| scenario(seed + s as u64 * 1000, 4, 250, 40, 0.03, 30, keys))
        .collect();
    Arc::new(common::aligned(list))
}

/// The threshold rule by its definition: at each event (in order), the matching events at or
/// before it in `(ts - over, ts]`; re-armed by any moment since the last alert — an eviction
/// time `w.ts + over` or just before an event — at which the condition did not hold.
fn threshold_oracle(
    events: &[Event],
    over: i64,
    count_above: Option<i64>,
    sum_above: Option<f64>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (k, list) in by_key(events) {
        let list: Vec<&Event> = list.iter().filter(|e| v(e) < 70).collect();
        let exceeded = |window: &[&&Event]| {
            count_above.is_none_or(|t| window.len() as i64 > t)
                && sum_above.is_none_or(|s| window.iter().map(|e| v(e) as f64).sum::<f64>() > s)
        };
        let mut last_alert: Option<i64> = None;
        for (i, e) in list.iter().enumerate() {
            let processed = &list[..i];
            fn in_window<'a>(t: i64, over: i64, upto: &[&'a Event]) -> Vec<&'a Event> {
                upto.iter()
                    .filter(|w| w.ts <= t && w.ts > t - over)
                    .copied()
                    .collect()
            }
            let armed = match last_alert {
                None => true,
                Some(alerted) => {
                    let timers = processed
                        .iter()
                        .map(|w| w.ts + over)
                        .filter(|t| *t >= alerted && *t < e.ts);
                    let before = in_window(e.ts, over, processed);
                    timers
                        .map(|t| in_window(t, over, processed))
                        .chain(std::iter::once(before))
                        .any(|w| !exceeded(&w.iter().collect::<Vec<_>>()))
                }
            };
            let window = in_window(e.ts, over, &list[..=i]);
            if armed && exceeded(&window.iter().collect::<Vec<_>>()) {
                last_alert = Some(e.ts);
                let ids: Vec<i64> = window.iter().map(|w| v(w)).collect();
                let sum = sum_above.map(|_| ids.iter().sum::<i64>() as f64);
                out.push(alert(
                    &k,
                    e.ts,
                    window.len() as i64,
                    sum,
                    window[0].ts,
                    e.ts,
                    &ids,
                ));
            } else if armed {
                last_alert = None;
            }
        }
    }
    sorted(out)
}

#[test]
fn threshold_rules_match_their_definition_everywhere() {
    for (seed, over, count, sum) in [
        (1, 60, Some(3), None),
        (2, 200, Some(5), None),
        (3, 150, None, Some(400.0)),
        (4, 100, Some(2), Some(100.0)),
    ] {
        let input = inputs(seed, 1, 5);
        let rule = Threshold::new(
            1,
            over,
            count,
            sum.map(|s| (expr("v"), s)),
            Some(expr("v < 70")),
            Some(1),
        );
        let (results, late) = run_everywhere(input.clone(), "op", build(rule.clone(), 1, 0));
        let expected = threshold_oracle(&on_time(&input, 0)[0], over, count, sum);
        assert!(
            expected.len() > 10,
            "seed {seed}: {} alerts",
            expected.len()
        );
        assert_eq!(rows(&results), expected, "seed {seed}");
        let mut expected_late: Vec<Event> = input[0]
            .epochs
            .iter()
            .flatten()
            .filter(|e| e.ts < e.wm)
            .cloned()
            .collect();
        expected_late.sort();
        assert!(!expected_late.is_empty());
        assert_eq!(late[0], expected_late, "seed {seed}: late records");
        assert_restores_exactly(input, "op", build(rule, 1, 0));
    }
}

#[test]
fn absence_and_sequence_rules_match_their_definition_everywhere() {
    let input = inputs(11, 1, 6);
    let within = 80;
    let first = "v < 20";
    let then = "v >= 60";
    let events = &on_time(&input, 0)[0];
    // Absence: an opener with no other follower event in [ts, ts + within].
    let mut expected = Vec::new();
    for (k, list) in by_key(events) {
        for (i, a) in list.iter().enumerate() {
            if v(a) >= 20 {
                continue;
            }
            let followed = list
                .iter()
                .enumerate()
                .any(|(j, b)| j != i && v(b) >= 60 && b.ts >= a.ts && b.ts <= a.ts + within);
            if !followed {
                expected.push(alert(&k, a.ts + within, 1, None, a.ts, a.ts, &[v(a)]));
            }
        }
    }
    let absence = Pattern::new(
        PatternKind::Absence,
        1,
        expr(first),
        expr(then),
        within,
        Some(1),
    );
    let (results, _) = run_everywhere(input.clone(), "op", build(absence.clone(), 1, 0));
    assert!(expected.len() > 10);
    assert_eq!(rows(&results), sorted(expected));
    assert_restores_exactly(input.clone(), "op", build(absence, 1, 0));

    // Sequence: each follower takes every unconsumed opener in [ts - within, ts] but itself.
    let mut expected = Vec::new();
    for (k, list) in by_key(events) {
        let mut consumed = vec![false; list.len()];
        for (j, b) in list.iter().enumerate() {
            if v(b) < 60 {
                continue;
            }
            let openers: Vec<usize> = (0..list.len())
                .filter(|&i| {
                    i != j
                        && !consumed[i]
                        && v(&list[i]) < 20
                        && list[i].ts <= b.ts
                        && list[i].ts >= b.ts - within
                })
                .collect();
            if openers.is_empty() {
                continue;
            }
            let mut ids: Vec<i64> = openers.iter().map(|&i| v(&list[i])).collect();
            ids.push(v(b));
            expected.push(alert(
                &k,
                b.ts,
                ids.len() as i64,
                None,
                list[openers[0]].ts,
                b.ts,
                &ids,
            ));
            for i in openers {
                consumed[i] = true;
            }
        }
    }
    let sequence = Pattern::new(
        PatternKind::Sequence,
        1,
        expr(first),
        expr(then),
        within,
        Some(1),
    );
    let (results, _) = run_everywhere(input.clone(), "op", build(sequence.clone(), 1, 0));
    assert!(expected.len() > 10);
    assert_eq!(rows(&results), sorted(expected));
    assert_restores_exactly(input, "op", build(sequence, 1, 0));
}

#[test]
fn rolling_aggregates_match_a_recomputation_everywhere() {
    for (seed, over, lateness) in [(21, 100, 0), (22, 333, 25)] {
        let input = inputs(seed, 1, 4);
        let aggs = Aggregates::compile(
            [
                ("n", "count(*)"),
                ("total", "sum(v)"),
                ("lo", "min(v)"),
                ("hi", "max(v)"),
                ("mean", "avg(v)"),
            ],
            &schema(),
        )
        .unwrap();
        let rolling = Rolling::new(over, 2, Arc::new(aggs));
        let (results, late) =
            run_everywhere(input.clone(), "op", build(rolling.clone(), 1, lateness));
        let events = &on_time(&input, lateness)[0];
        let mut expected = Vec::new();
        for e in events {
            let range: Vec<i64> = events
                .iter()
                .filter(|w| key(w) == key(e) && w.ts <= e.ts && w.ts > e.ts - over)
                .map(v)
                .collect();
            let n = range.len() as i64;
            let total: i64 = range.iter().sum();
            let row = Row::from_values(&[
                Value::Str(key(e).into()),
                Value::Int(v(e)),
                Value::Int(n),
                Value::Int(total),
                Value::Int(*range.iter().min().unwrap()),
                Value::Int(*range.iter().max().unwrap()),
                Value::Float(total as f64 / n as f64),
            ]);
            expected.push(format!("{} {row:?}", e.ts));
        }
        assert_eq!(rows(&results), sorted(expected), "seed {seed}");
        assert_eq!(
            late[0].len(),
            input[0].epochs.iter().flatten().count() - events.len(),
            "seed {seed}: every other record is late"
        );
        assert_restores_exactly(input, "op", build(rolling, 1, lateness));
    }
}

fn joined(prefix: &[Value<'_>], l: &Event, r: Option<&Event>) -> Row {
    let mut values: Vec<Value> = prefix.to_vec();
    values.extend(l.row.iter());
    match r {
        Some(r) => values.extend(r.row.iter()),
        None => values.extend([Value::Null, Value::Null]),
    }
    Row::from_values(&values)
}

#[test]
fn interval_joins_match_all_pairs_within_the_bound_everywhere() {
    for (seed, within, join_type) in [(31, 20, JoinType::Inner), (32, 35, JoinType::LeftOuter)] {
        let input = inputs(seed, 2, 12);
        let on = on_time(&input, 0);
        let (left, right) = (&on[0], &on[1]);
        let mut expected = Vec::new();
        for l in left {
            let mut matched = false;
            for r in right
                .iter()
                .filter(|r| key(r) == key(l) && (r.ts - l.ts).abs() <= within)
            {
                expected.push(format!("{} {:?}", l.ts.max(r.ts), joined(&[], l, Some(r))));
                matched = true;
            }
            if !matched && join_type == JoinType::LeftOuter {
                expected.push(format!("{} {:?}", l.ts + within, joined(&[], l, None)));
            }
        }
        let join = IntervalJoin::new(join_type, within, 2, 2);
        let (results, late) = run_everywhere(input.clone(), "op", build(join.clone(), 2, 0));
        assert!(expected.len() > 100, "seed {seed}: {}", expected.len());
        assert_eq!(rows(&results), sorted(expected), "seed {seed}");
        assert!(
            !late[0].is_empty() && !late[1].is_empty(),
            "late records on both sides"
        );
        assert_restores_exactly(input, "op", build(join, 2, 0));
    }
}

#[test]
fn window_joins_match_all_pairs_of_a_window_everywhere() {
    let size = 50;
    let input = inputs(41, 2, 15);
    let on = on_time(&input, 0);
    let mut expected = Vec::new();
    for l in &on[0] {
        let start = l.ts - l.ts.rem_euclid(size);
        let mut matched = false;
        for r in on[1]
            .iter()
            .filter(|r| key(r) == key(l) && r.ts - r.ts.rem_euclid(size) == start)
        {
            expected.push(format!(
                "{} {:?}",
                start + size - 1,
                joined(&[Value::Ts(start), Value::Ts(start + size)], l, Some(r))
            ));
            matched = true;
        }
        if !matched {
            expected.push(format!(
                "{} {:?}",
                start + size - 1,
                joined(&[Value::Ts(start), Value::Ts(start + size)], l, None)
            ));
        }
    }
    let join = WindowJoin::new(JoinType::LeftOuter, WindowKind::Tumbling { size }, 2, 2);
    let (results, _) = run_everywhere(input.clone(), "op", build(join.clone(), 2, 0));
    assert_eq!(rows(&results), sorted(expected));
    assert_restores_exactly(input, "op", build(join, 2, 0));
}

#[test]
fn temporal_joins_take_the_version_valid_at_each_event_time_everywhere() {
    for join_type in [JoinType::Inner, JoinType::LeftOuter] {
        let input = inputs(51, 2, 8);
        let on = on_time(&input, 0);
        let mut expected = Vec::new();
        for l in &on[0] {
            // The last version at or before the event (by time, then row order); v ≥ 90 deletes.
            let version = on[1]
                .iter()
                .filter(|d| key(d) == key(l) && d.ts <= l.ts)
                .max_by(|a, b| (a.ts, &a.row).cmp(&(b.ts, &b.row)))
                .filter(|d| v(d) < 90);
            match (version, join_type) {
                (Some(d), _) => expected.push(format!("{} {:?}", l.ts, joined(&[], l, Some(d)))),
                (None, JoinType::LeftOuter) => {
                    expected.push(format!("{} {:?}", l.ts, joined(&[], l, None)))
                }
                (None, JoinType::Inner) => {}
            }
        }
        let join = TemporalJoin::new(join_type, Some(expr("v >= 90")), 2, 2);
        let (results, _) = run_everywhere(input.clone(), "op", build(join.clone(), 2, 0));
        assert!(expected.len() > 100);
        assert_eq!(rows(&results), sorted(expected), "{join_type:?}");
        assert_restores_exactly(input, "op", build(join, 2, 0));
    }
}
