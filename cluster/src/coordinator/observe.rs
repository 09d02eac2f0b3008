//! What the coordinator reads to report on a job: its checkpoints (from the job's checkpoint
//! store) and its processes' `/metrics`.

use std::time::Duration;

use weir_engine::checkpoint::Checkpoints;
use weir_engine::store::Store;

use crate::wire::{rfc3339_ms, CheckpointInfo};

/// Every complete checkpoint of job `name` in `store`, oldest first.
pub fn checkpoints(store: &str, name: &str) -> Result<Vec<CheckpointInfo>, String> {
    let store = Store::open(store).map_err(|e| format!("checkpoint store {store}: {e}"))?;
    let checkpoints = Checkpoints::new(store, name);
    let epochs = checkpoints.epochs().map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for epoch in epochs {
        if let Ok(Some(m)) = checkpoints.manifest(epoch) {
            out.push(CheckpointInfo {
                id: format!("chk-{epoch:020}"),
                epoch,
                completed_at: rfc3339_ms(m.completed_ms),
                bytes: m.files.values().sum(),
                files: m.files.len(),
                workers: m.workers,
                savepoint: m.savepoint,
            });
        }
    }
    Ok(out)
}

/// The newest savepoint of job `name` (`chk-<epoch>`).
pub fn newest_savepoint(store: &str, name: &str) -> Option<String> {
    checkpoints(store, name)
        .ok()?
        .into_iter()
        .rev()
        .find(|c| c.savepoint.is_some())
        .map(|c| c.id)
}

/// The few figures `GET /api/v1/jobs/{id}` shows from a process's metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Scraped {
    /// `weir_watermark_seconds`.
    pub watermark: Option<f64>,
    /// Sum of `weir_kafka_consumer_lag_records`.
    pub lag: Option<i64>,
    /// Sum of `weir_records_in_total`.
    pub records_in: u64,
    /// Sum of `weir_records_out_total`.
    pub records_out: u64,
    /// Sum of `weir_kafka_records_lost_total`.
    pub records_lost: u64,
}

impl Scraped {
    /// Reads the figures from the Prometheus text format.
    pub fn parse(text: &str) -> Scraped {
        let mut s = Scraped::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let name = series.split('{').next().unwrap_or(series);
            let Ok(v) = value.parse::<f64>() else {
                continue;
            };
            match name {
                "weir_watermark_seconds" if v > 0.0 => s.watermark = Some(v),
                "weir_kafka_consumer_lag_records" => {
                    s.lag = Some(s.lag.unwrap_or(0) + v as i64);
                }
                "weir_records_in_total" => s.records_in += v as u64,
                "weir_records_out_total" => s.records_out += v as u64,
                "weir_kafka_records_lost_total" => s.records_lost += v as u64,
                _ => {}
            }
        }
        s
    }

    /// Adds another process's figures (the lowest watermark wins).
    pub fn merge(self, other: Scraped) -> Scraped {
        Scraped {
            watermark: match (self.watermark, other.watermark) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            lag: match (self.lag, other.lag) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            },
            records_in: self.records_in + other.records_in,
            records_out: self.records_out + other.records_out,
            records_lost: self.records_lost + other.records_lost,
        }
    }
}

/// Scrapes `http://<addr>/metrics` (bounded: a slow process is left out).
pub async fn scrape(client: &reqwest::Client, addr: &str) -> Option<Scraped> {
    let response = client
        .get(format!("http://{addr}/metrics"))
        .timeout(Duration::from_millis(500))
        .send()
        .await
        .ok()?;
    let text = response.text().await.ok()?;
    Some(Scraped::parse(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_from_the_text_format() {
        let a = Scraped::parse(
            "# HELP x\nweir_watermark_seconds{job=\"j\"} 1700000000.5\n\
             weir_kafka_consumer_lag_records{job=\"j\",operator=\"p\",partition=\"0\",topic=\"t\"} 5\n\
             weir_kafka_consumer_lag_records{job=\"j\",operator=\"p\",partition=\"1\",topic=\"t\"} 7\n\
             weir_records_in_total{job=\"j\",operator=\"source.p\",worker=\"0\"} 100\n\
             weir_kafka_records_lost_total{job=\"j\",operator=\"p\",partition=\"1\",topic=\"t\"} 3\n",
        );
        assert_eq!(a.lag, Some(12));
        assert_eq!(a.records_in, 100);
        assert_eq!(a.records_lost, 3);
        let b = Scraped::parse(
            "weir_watermark_seconds{job=\"j\"} 1600000000\n\
             weir_kafka_records_lost_total{job=\"j\",operator=\"p\",partition=\"2\",topic=\"t\"} 4\n",
        );
        let m = a.merge(b);
        assert_eq!(m.watermark, Some(1_600_000_000.0));
        assert_eq!(m.lag, Some(12));
        assert_eq!(m.records_lost, 7);
    }
}
