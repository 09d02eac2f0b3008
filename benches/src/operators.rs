//! The mission's operators on the generator, each alone behind its source into a blackhole:
//! threshold rule, rolling aggregate, interval join, temporal join (and the source alone, for
//! the baseline). Figures are events in (both sides of a join) per CPU-second.

use anyhow::Result;

use crate::measure;

fn scenarios(events: u64) -> Vec<(&'static str, String)> {
    let half = events / 2;
    let payments = format!("payments: {{ kind: generator, stream: payments, events: {events}, partitions: 8, seed: 1, event_time: {{ max_out_of_orderness: 1s }} }}");
    let iot = format!("iot: {{ kind: generator, stream: iot, events: {events}, partitions: 8, seed: 2, devices: 5000, event_time: {{ max_out_of_orderness: 1s }} }}");
    let clicks = format!("clicks: {{ kind: generator, stream: clicks, events: {half}, partitions: 8, seed: 3, time_step: 2ms, event_time: {{ max_out_of_orderness: 1s }} }}");
    let iot_half = format!("iot: {{ kind: generator, stream: iot, events: {half}, partitions: 8, seed: 4, time_step: 2ms, event_time: {{ max_out_of_orderness: 1s }} }}");
    let profiles = format!("device_profiles: {{ kind: generator, stream: device_profiles, events: {half}, partitions: 8, seed: 5, time_step: 2ms, event_time: {{ max_out_of_orderness: 1s }} }}");
    let job = |name: &str, sources: &[&str], step: &str| {
        let sources: Vec<String> = sources.iter().map(|s| format!("  {s}")).collect();
        format!(
            "name: bench-{name}\nsources:\n{}\nsteps:\n  op: {step}\nsinks:\n  out: {{ from: op, kind: blackhole }}\n",
            sources.join("\n")
        )
    };
    vec![
        (
            "generator → filter → blackhole (baseline)",
            job("source", &[&payments], "{ from: payments, filter: \"amount >= 0\" }"),
        ),
        (
            "threshold rule: > 20 payments per user in 1m",
            job(
                "threshold",
                &[&payments],
                "{ from: payments, rule: { key: user_id, count_over: 1m, threshold: 20, id: payment_id } }",
            ),
        ),
        (
            "rolling 5m avg/max/count per device",
            job(
                "rolling",
                &[&iot],
                "{ from: iot, rolling: { key: device_id, over: 5m, aggregates: { avg_t: \"avg(temperature)\", max_t: \"max(temperature)\", n: \"count(*)\" } } }",
            ),
        ),
        (
            "interval join clicks ⋈ iot ±30s on device",
            job(
                "interval",
                &[&clicks, &iot_half],
                "{ join: { left: clicks, right: iot, on: \"left.device_id = right.device_id\", within: 30s } }",
            ),
        ),
        (
            "temporal join clicks ⋈ device_profiles",
            job(
                "temporal",
                &[&clicks, &profiles],
                "{ join: { left: clicks, temporal: { dimension: device_profiles, key: device_id }, type: left } }",
            ),
        ),
    ]
}

/// Runs every operator scenario at each worker count.
pub fn run(events: u64, workers: &[usize], repeat: usize) -> Result<()> {
    for (name, spec) in scenarios(events) {
        for &w in workers {
            measure(name, &spec, w, repeat, None)?;
        }
    }
    Ok(())
}
