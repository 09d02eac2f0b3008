//! The files in deploy/: Prometheus accepts the config and the alerting rules (promtool), and
//! every metric they and the Grafana dashboard query is one weir exports.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use weir_engine::metrics::{Metrics, Role};

fn deploy(file: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file)
}

fn promtool(args: &[&str], file: &Path) {
    let out = Command::new("promtool")
        .args(args)
        .arg(file)
        .output()
        .expect("promtool (Debian package prometheus) is needed: run scripts/test.sh");
    assert!(
        out.status.success(),
        "promtool {args:?} {}: {}{}",
        file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every `weir_*` metric name a process or the coordinator exports.
fn exported() -> BTreeSet<String> {
    let m = Metrics::new("j");
    for role in [Role::Source, Role::Step, Role::Sink] {
        m.operator("op", 0, role);
    }
    m.sink("op", 0).committed();
    m.kafka_lag("op", "t", 0).set(1);
    m.kafka_lost("op", "t", 0).inc();
    let mut text = m.encode();
    // The coordinator's own families.
    text.push_str("weir_coordinator_jobs weir_coordinator_workers_alive weir_job_restarts_total\n");
    let mut names = BTreeSet::new();
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("weir_") {
            names.insert(word.to_string());
        }
    }
    names
}

/// The `weir_*` names a file mentions (histogram series by their family's suffixes).
fn mentioned(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| {
            w.starts_with("weir_") && !w.starts_with("weir_job_id") && !w.starts_with("weir_role")
        })
        .filter(|w| !matches!(*w, "weir_job" | "weir_process" | "weir_token"))
        .map(str::to_string)
        .collect()
}

#[test]
fn prometheus_accepts_the_config_and_the_rules() {
    promtool(&["check", "config"], &deploy("prometheus.yml"));
    promtool(&["check", "rules"], &deploy("alerts.yml"));
}

#[test]
fn the_rules_and_the_dashboard_query_metrics_weir_exports() {
    let exported = exported();
    let dashboard = std::fs::read_to_string(deploy("grafana-dashboard.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    assert!(json["panels"].as_array().is_some_and(|p| p.len() >= 8));
    for file in ["alerts.yml", "grafana-dashboard.json"] {
        let text = std::fs::read_to_string(deploy(file)).unwrap();
        let unknown: Vec<String> = mentioned(&text).difference(&exported).cloned().collect();
        assert!(
            unknown.is_empty(),
            "{file} queries metrics weir does not export: {unknown:?}"
        );
    }
}
