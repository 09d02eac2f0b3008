//! Edge cases of rules and temporal joins, and bounded state, through the synchronous driver
//! of the ordered engine (the same logic the timely operator runs).

use weir_engine::data::{DataType, Field, Row, Schema, Value};
use weir_engine::event::{Event, WATERMARK_END};
use weir_engine::keys::KeyGroups;
use weir_engine::state::KeyedState;
use weir_operators::expr::Expr;
use weir_operators::join::{IntervalJoin, JoinType, TemporalJoin};
use weir_operators::ordered::{KeyedProcess, OrderedConfig, OrderedLogic};
use weir_operators::rule::{Pattern, PatternKind, Threshold};
use weir_operators::timed::TimedLogic;

const MIN: i64 = 60_000;

/// `user: string, id: string, amount: float`.
fn schema() -> Schema {
    Schema::new(vec![
        Field::new("user", DataType::String),
        Field::new("id", DataType::String),
        Field::new("amount", DataType::Float),
    ])
    .unwrap()
}

fn ev(user: &str, id: &str, amount: f64, ts: i64) -> Event {
    let row = Row::from_values(&[
        Value::Str(user.into()),
        Value::Str(id.into()),
        Value::Float(amount),
    ]);
    Event::new(ts, i64::MIN, row)
}

fn driver<P: KeyedProcess>(process: P, sides: usize) -> OrderedLogic<P> {
    let config = OrderedConfig {
        name: "edge".into(),
        key_columns: vec![vec![0]; sides],
        allowed_lateness: 0,
        key_groups: KeyGroups::new(8),
        control: false,
    };
    OrderedLogic::new(&config, process, Default::default())
}

/// Feeds `events` (side 0) and advances to `wm`; returns the results as `(ts, ids)` or the
/// whole row text.
fn feed<P: KeyedProcess>(d: &mut OrderedLogic<P>, events: Vec<Event>, wm: i64) -> Vec<Event> {
    for e in events {
        assert!(d.insert(0, e, i64::MIN).is_none(), "nothing is late here");
    }
    let mut out = Vec::new();
    d.advance(wm, &mut out);
    out
}

fn ids(alerts: &[Event]) -> Vec<(String, &str)> {
    alerts
        .iter()
        .map(|a| {
            (
                a.row.get_str(0).unwrap().to_string(),
                a.row.get_str(a.row.len() - 1).unwrap(),
            )
        })
        .collect()
}

fn more_than_3_in_10_minutes() -> Threshold {
    Threshold::new(1, 10 * MIN, Some(3), None, None, Some(1))
}

#[test]
fn exactly_threshold_events_do_not_alert_and_one_more_does() {
    let mut d = driver(more_than_3_in_10_minutes(), 1);
    let three: Vec<Event> = (0..3)
        .map(|i| ev("ann", &format!("p{i}"), 1.0, i * MIN))
        .collect();
    assert!(
        feed(&mut d, three, 5 * MIN).is_empty(),
        "3 is not more than 3"
    );
    let alerts = feed(&mut d, vec![ev("ann", "p3", 1.0, 9 * MIN)], WATERMARK_END);
    assert_eq!(ids(&alerts), [("ann".to_string(), "p0,p1,p2,p3")]);
    assert_eq!(alerts[0].ts, 9 * MIN);
    assert_eq!(alerts[0].row.get(2), Value::Ts(0), "first event time");
    assert_eq!(alerts[0].row.get(3), Value::Ts(9 * MIN), "last event time");
}

#[test]
fn an_event_exactly_count_over_after_the_first_is_outside_its_window() {
    let mut d = driver(more_than_3_in_10_minutes(), 1);
    let events = vec![
        ev("ann", "a", 1.0, 0),
        ev("ann", "b", 1.0, MIN),
        ev("ann", "c", 1.0, 2 * MIN),
        ev("ann", "d", 1.0, 10 * MIN), // (0, 10m]: `a` has left
    ];
    assert!(feed(&mut d, events, WATERMARK_END).is_empty());
    let mut d = driver(more_than_3_in_10_minutes(), 1);
    let events = vec![
        ev("ann", "a", 1.0, 0),
        ev("ann", "b", 1.0, MIN),
        ev("ann", "c", 1.0, 2 * MIN),
        ev("ann", "d", 1.0, 10 * MIN - 1),
    ];
    assert_eq!(
        feed(&mut d, events, WATERMARK_END).len(),
        1,
        "one ms earlier it is in"
    );
}

#[test]
fn the_rule_re_arms_only_after_the_count_falls_back() {
    let mut d = driver(more_than_3_in_10_minutes(), 1);
    // Alert at the 4th; the 5th and 6th keep the count above 3: no new alert.
    let burst: Vec<Event> = (0..6)
        .map(|i| ev("ann", &format!("a{i}"), 1.0, i * MIN))
        .collect();
    let alerts = feed(&mut d, burst, 7 * MIN);
    assert_eq!(ids(&alerts), [("ann".to_string(), "a0,a1,a2,a3")]);
    // By 12m the window (2m, 12m] holds a3..a5: 3, the rule re-arms as events leave.
    // Two more events: 5 in the window, one alert — for the event that crossed 3.
    let alerts = feed(
        &mut d,
        vec![
            ev("ann", "b0", 1.0, 12 * MIN + 1),
            ev("ann", "b1", 1.0, 12 * MIN + 2),
        ],
        WATERMARK_END,
    );
    assert_eq!(ids(&alerts), [("ann".to_string(), "a3,a4,a5,b0")]);
}

#[test]
fn several_keys_alert_in_the_same_epoch_in_time_then_key_order() {
    let mut d = driver(more_than_3_in_10_minutes(), 1);
    let mut events = Vec::new();
    for (user, offset) in [("cy", 0), ("ann", 5), ("bo", 5)] {
        for i in 0..4 {
            events.push(ev(user, &format!("{user}{i}"), 1.0, i * 1000 + offset));
        }
    }
    events.reverse();
    let alerts = feed(&mut d, events, WATERMARK_END);
    let users: Vec<String> = ids(&alerts).into_iter().map(|(u, _)| u).collect();
    assert_eq!(users, ["cy", "ann", "bo"]);
}

#[test]
fn sums_alert_on_value_not_count() {
    let amount = Expr::compile("amount", &schema()).unwrap();
    let rule = Threshold::new(1, 60 * MIN, None, Some((amount, 5000.0)), None, Some(1));
    let mut d = driver(rule, 1);
    let events = vec![
        ev("ann", "small", 4000.0, 0),
        ev("ann", "big", 1000.0, MIN),     // 5000: not more than 5000
        ev("ann", "bigger", 0.5, 2 * MIN), // 5000.5
    ];
    let alerts = feed(&mut d, events, WATERMARK_END);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].row.get(2), Value::Float(5000.5));
    assert_eq!(alerts[0].row.get_str(5).unwrap(), "small,big,bigger");
}

#[test]
fn absence_fires_when_the_watermark_passes_the_deadline_and_not_before() {
    let s = schema();
    let rule = Pattern::new(
        PatternKind::Absence,
        1,
        Expr::compile("id LIKE 'pay%'", &s).unwrap(),
        Expr::compile("id LIKE 'conf%'", &s).unwrap(),
        5 * MIN,
        Some(1),
    );
    let mut d = driver(rule, 1);
    let events = vec![
        ev("ann", "pay1", 1.0, 0),
        ev("bo", "pay2", 1.0, 0),
        ev("bo", "conf2", 1.0, 5 * MIN), // exactly at the deadline: in time
    ];
    assert!(
        feed(&mut d, events, 5 * MIN).is_empty(),
        "deadline not passed"
    );
    let alerts = feed(&mut d, vec![], 5 * MIN + 1);
    assert_eq!(ids(&alerts), [("ann".to_string(), "pay1")]);
    assert_eq!(alerts[0].ts, 5 * MIN);
}

#[test]
fn sequences_pair_at_equal_times_but_not_with_themselves() {
    let s = schema();
    let rule = Pattern::new(
        PatternKind::Sequence,
        1,
        Expr::compile("id LIKE 'reset%'", &s).unwrap(),
        Expr::compile("amount > 100", &s).unwrap(),
        5 * MIN,
        Some(1),
    );
    let mut d = driver(rule, 1);
    let events = vec![
        ev("ann", "reset1", 500.0, 0), // opens and would follow: not itself
        ev("bo", "reset2", 1.0, MIN),
        ev("bo", "pay", 200.0, MIN),       // same time: follows
        ev("ann", "pay2", 200.0, 6 * MIN), // 6 min after: too late
    ];
    let alerts = feed(&mut d, events, WATERMARK_END);
    assert_eq!(ids(&alerts), [("bo".to_string(), "reset2,pay")]);
}

/// Dimension rows: `user` is the key, `amount` the attribute, `id = 'd'` deletes.
fn dim(user: &str, amount: f64, ts: i64, delete: bool) -> Event {
    ev(user, if delete { "d" } else { "u" }, amount, ts)
}

#[test]
fn temporal_joins_use_the_version_valid_at_the_event_time() {
    let deleted = Expr::compile("id = 'd'", &schema()).unwrap();
    let mut d = driver(
        TemporalJoin::new(JoinType::LeftOuter, Some(deleted), 3, 3),
        2,
    );
    for e in [
        dim("ann", 1.0, 100, false),
        dim("ann", 2.0, 200, false),
        dim("ann", 0.0, 300, true),
    ] {
        assert!(d.insert(1, e, i64::MIN).is_none());
    }
    for ts in [50, 100, 150, 200, 250, 300, 350] {
        assert!(d
            .insert(0, ev("ann", &format!("e{ts}"), 0.0, ts), i64::MIN)
            .is_none());
    }
    let mut out = Vec::new();
    d.advance(WATERMARK_END, &mut out);
    let seen: Vec<(i64, Value)> = out
        .iter()
        .map(|e| (e.ts, e.row.get(5).into_owned()))
        .collect();
    assert_eq!(
        seen,
        [
            (50, Value::Null),        // before the first version
            (100, Value::Float(1.0)), // a version applies at its own event time
            (150, Value::Float(1.0)),
            (200, Value::Float(2.0)), // updated at the same time
            (250, Value::Float(2.0)),
            (300, Value::Null), // deleted at the same time
            (350, Value::Null),
        ]
    );
    assert_eq!(d.state().stats().keys, 0, "a deleted key holds nothing");
}

#[test]
fn rule_and_join_state_is_gone_once_the_watermark_passes() {
    let mut rule = driver(more_than_3_in_10_minutes(), 1);
    let mut join = driver(IntervalJoin::new(JoinType::LeftOuter, MIN, 3, 3), 2);
    for i in 0..2_000 {
        let e = ev(&format!("u{}", i % 97), &format!("p{i}"), 1.0, i * 1000);
        rule.insert(0, e.clone(), i64::MIN);
        join.insert(i as usize % 2, e, i64::MIN);
    }
    let mut out = Vec::new();
    rule.advance(1_000_000, &mut out);
    join.advance(1_000_000, &mut out);
    let (r, j) = (rule.state().stats(), join.state().stats());
    assert!(
        r.entries > 0 && j.entries > 0,
        "open ranges are held: {r:?} {j:?}"
    );
    // Far past the last record plus every range: nothing left.
    rule.advance(2_000 * 1000 + 12 * MIN, &mut out);
    join.advance(2_000 * 1000 + 2 * MIN, &mut out);
    assert_eq!(rule.state().stats().entries, 0);
    assert_eq!(rule.state().stats().keys, 0);
    assert_eq!(join.state().stats().entries, 0);
    assert_eq!(join.state().stats().keys, 0);
}

/// Rule updates: `rule: string, threshold: int, enabled: bool`.
fn updates_schema() -> Schema {
    Schema::new(vec![
        Field::new("rule", DataType::String),
        Field::new("threshold", DataType::Int),
        Field::new("enabled", DataType::Bool),
    ])
    .unwrap()
}

fn update(rule: &str, threshold: Option<i64>, enabled: Option<bool>, ts: i64) -> Event {
    let row = Row::from_values(&[
        Value::Str(rule.into()),
        threshold.map_or(Value::Null, Value::Int),
        enabled.map_or(Value::Null, Value::Bool),
    ]);
    Event::new(ts, i64::MIN, row)
}

#[test]
fn a_rule_changed_at_runtime_applies_from_its_event_time_on_and_not_before() {
    let _ = updates_schema();
    let updates = weir_operators::rule::RuleUpdates {
        name: "bursts".into(),
        rule: 0,
        threshold: Some(1),
        sum_threshold: None,
        condition: None,
        enabled: Some(2),
        input: std::sync::Arc::new(schema()),
    };
    let rule = Threshold::new(1, 10 * MIN, Some(5), None, None, Some(1)).with_updates(updates);
    let config = OrderedConfig {
        name: "edge".into(),
        key_columns: vec![vec![0]],
        allowed_lateness: 0,
        key_groups: KeyGroups::new(8),
        control: true,
    };
    let mut d = OrderedLogic::new(&config, rule, Default::default());
    for i in 0..10 {
        d.insert(0, ev("ann", &format!("a{i}"), 1.0, i * MIN), i64::MIN);
    }
    for i in 0..3 {
        d.insert(0, ev("bo", &format!("b{i}"), 1.0, i * MIN), i64::MIN);
    }
    // At 2m30s the threshold drops from 5 to 2; another rule's update changes nothing here;
    // at 7m30s the rule is switched off.
    d.insert(
        1,
        update("bursts", Some(2), None, 2 * MIN + 30_000),
        i64::MIN,
    );
    d.insert(1, update("other", Some(0), None, MIN), i64::MIN);
    d.insert(
        1,
        update("bursts", None, Some(false), 7 * MIN + 30_000),
        i64::MIN,
    );
    let mut out = Vec::new();
    d.advance(WATERMARK_END, &mut out);
    // Not at a2 (3 > 2 only under the new threshold, which came later), but at a3; `bo` never
    // reaches 3 events after the change.
    assert_eq!(ids(&out), [("ann".to_string(), "a0,a1,a2,a3")]);
    // The parameters are part of the checkpoint: restored, the rule goes on with them.
    let snapshot = d.state().snapshot_groups(&|_| true).unwrap();
    let fresh = Threshold::new(1, 10 * MIN, Some(5), None, None, Some(1)).with_updates(
        weir_operators::rule::RuleUpdates {
            name: "bursts".into(),
            rule: 0,
            threshold: Some(1),
            sum_threshold: None,
            condition: None,
            enabled: Some(2),
            input: std::sync::Arc::new(schema()),
        },
    );
    let mut restored = OrderedLogic::new(&config, fresh, Default::default());
    for (group, bytes) in &snapshot {
        restored.state_mut().restore_group(*group, bytes).unwrap();
    }
    restored.restored();
    // Switched back on (threshold untouched): the restored threshold, 2, is the one in force.
    restored.insert(1, update("bursts", None, Some(true), 20 * MIN), i64::MIN);
    let events: Vec<Event> = (0..4)
        .map(|i| ev("cy", &format!("c{i}"), 1.0, 20 * MIN + i))
        .collect();
    let alerts = feed(&mut restored, events, WATERMARK_END);
    assert_eq!(ids(&alerts), [("cy".to_string(), "c0,c1,c2")]);
}
