//! The synthetic generator source: seeded, reproducible streams with realistic disorder,
//! late events and malformed input; bounded or endless, rate-limited or full speed.
//!
//! Event `i` is a pure function of `(seed, i)`. Partition `p` of `P` produces the events
//! `i ≡ p (mod P)`, so the same stream comes out at any number of workers, and `weir gen`
//! writes exactly the events (and malformed lines) the in-process source would produce.

mod rng;
mod streams;

use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_engine::data::{encode_row, JsonDecoder, Row, RowBuilder, TimestampFormat};
use weir_engine::event::EVENT_TIME_RANGE;

pub use rng::Rng;
pub use streams::{Cardinalities, Pools, StreamKind};

use super::{Emitter, PartitionReader, ReadStatus};

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratorConfig {
    /// The stream.
    pub stream: StreamKind,
    /// Number of events; `None` for endless.
    pub events: Option<u64>,
    /// Events per second across all partitions; `None` for full speed.
    pub rate: Option<f64>,
    /// Seed.
    pub seed: u64,
    /// Number of partitions (independent of workers).
    pub partitions: u32,
    /// Event time of event 0, ms since the epoch.
    pub start_ms: i64,
    /// Event time between consecutive events, ms (fractions allowed).
    pub step_ms: f64,
    /// Events are up to this much behind their nominal time (uniform), ms.
    pub disorder_ms: i64,
    /// Fraction of events that are far behind (late data).
    pub late_fraction: f64,
    /// How far behind late events are, ms (plus up to half as much again).
    pub late_by_ms: i64,
    /// Fraction of events written as malformed input.
    pub malformed: f64,
    /// Key cardinalities.
    pub cardinalities: Cardinalities,
}

impl GeneratorConfig {
    /// A bounded stream with defaults: 2026-01-01T00:00:00Z, one event per ms, 8 partitions,
    /// up to 500 ms of disorder, nothing late or malformed.
    pub fn new(stream: StreamKind, events: Option<u64>, seed: u64) -> Self {
        GeneratorConfig {
            stream,
            events,
            rate: None,
            seed,
            partitions: 8,
            start_ms: 1_767_225_600_000,
            step_ms: 1.0,
            disorder_ms: 500,
            late_fraction: 0.0,
            late_by_ms: 60_000,
            malformed: 0.0,
            cardinalities: Cardinalities::default(),
        }
    }
}

/// One generated event.
#[derive(Debug, PartialEq)]
pub enum Generated {
    /// A well-formed event.
    Row {
        /// Event time.
        ts: i64,
        /// Values.
        row: Row,
    },
    /// A malformed input line, with the event time it would have had.
    Malformed {
        /// The damaged line.
        line: String,
        /// Event time of the event it was made from.
        ts: i64,
    },
}

/// Produces events by index.
pub struct Generator {
    config: Arc<GeneratorConfig>,
    pools: Arc<Pools>,
    builder: RowBuilder,
    scratch: String,
    names: Vec<String>,
    time_column: usize,
}

impl Generator {
    /// A generator for `config`, sharing `pools`.
    pub fn new(config: Arc<GeneratorConfig>, pools: Arc<Pools>) -> Self {
        let schema = config.stream.schema();
        let names = schema.fields().iter().map(|f| f.name.clone()).collect();
        let time_column = schema
            .index_of(config.stream.time_column())
            .expect("time column");
        Generator {
            builder: RowBuilder::new(schema.len()),
            scratch: String::new(),
            names,
            time_column,
            config,
            pools,
        }
    }

    /// Event `index`.
    pub fn event(&mut self, index: u64) -> Generated {
        let c = &self.config;
        let mut rng = Rng::for_event(c.seed, index);
        let nominal = c.start_ms + (index as f64 * c.step_ms) as i64;
        let ts = if rng.chance(c.late_fraction) {
            nominal - c.late_by_ms - rng.below(c.late_by_ms.max(0) as u64 / 2 + 1) as i64
        } else {
            nominal - rng.below(c.disorder_ms.max(0) as u64 + 1) as i64
        };
        let malformed = rng.chance(c.malformed);
        streams::fill_row(
            c.stream,
            index,
            ts,
            &mut rng,
            &self.pools,
            &mut self.scratch,
            &mut self.builder,
        );
        let row = self.builder.finish();
        if malformed {
            Generated::Malformed {
                line: self.corrupt(&row, &mut rng),
                ts,
            }
        } else {
            Generated::Row { ts, row }
        }
    }

    /// The stream's natural message key (user or device) of a well-formed event.
    pub fn key<'r>(&self, row: &'r Row) -> Option<&'r str> {
        // user_id of clicks, device_id of iot and device_profiles, user_id of payments.
        let column = if self.config.stream == StreamKind::Payments {
            1
        } else {
            0
        };
        row.get_str(column)
    }

    /// The JSON line of a well-formed event.
    pub fn json(&self, row: &Row, out: &mut String) {
        encode_row(row, &self.names, TimestampFormat::Rfc3339, out);
    }

    /// Damages the JSON of `row` the ways real producers do.
    fn corrupt(&self, row: &Row, rng: &mut Rng) -> String {
        let mut line = String::new();
        self.json(row, &mut line);
        let time = &self.names[self.time_column];
        match rng.below(4) {
            // Cut off mid-line (a crashed producer).
            0 => {
                let mut at = 1 + rng.below(line.len() as u64 - 2) as usize;
                while !line.is_char_boundary(at) {
                    at -= 1;
                }
                line.truncate(at);
                line
            }
            // An unreadable event time.
            1 => {
                let mut b = RowBuilder::new(row.len());
                (0..row.len()).for_each(|i| b.copy_from(i, row, i));
                b.set_str(self.time_column, "yesterday at noon");
                let mut out = String::new();
                encode_row(&b.finish(), &self.names, TimestampFormat::Rfc3339, &mut out);
                out
            }
            // No event time at all (the producer renamed the field).
            2 => line.replacen(&format!("\"{time}\":"), &format!("\"{time}_old\":"), 1),
            // Not JSON.
            _ => format!(
                "{} event at {}",
                self.config.stream.name(),
                row.get(self.time_column)
            ),
        }
    }
}

/// Reads one partition of a generated stream.
pub struct GeneratorReader {
    generator: Generator,
    decoder: JsonDecoder,
    next: u64,
    emitted: u64,
    started: Option<Instant>,
    location: String,
}

impl GeneratorReader {
    /// The reader of `partition` (of `config.partitions`).
    pub fn new(config: Arc<GeneratorConfig>, pools: Arc<Pools>, partition: u32) -> Self {
        let location = format!("{}#{partition}", config.stream.name());
        let decoder = JsonDecoder::new(config.stream.schema());
        GeneratorReader {
            generator: Generator::new(config, pools),
            decoder,
            next: partition as u64,
            emitted: 0,
            started: None,
            location,
        }
    }
}

impl PartitionReader for GeneratorReader {
    fn location(&self) -> &str {
        &self.location
    }

    fn position(&self) -> Option<Vec<u8>> {
        Some(self.next.to_le_bytes().to_vec())
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), String> {
        let next = position
            .try_into()
            .map(u64::from_le_bytes)
            .map_err(|_| "a generator position is 8 bytes".to_string())?;
        self.next = next;
        Ok(())
    }

    fn read(&mut self, max: usize, out: &mut Emitter<'_>) -> Result<ReadStatus, String> {
        let config = self.generator.config.clone();
        let step = config.partitions.max(1) as u64;
        let mut budget = max as u64;
        if let Some(rate) = config.rate {
            let per_partition = rate / step as f64;
            let started = *self.started.get_or_insert_with(Instant::now);
            let elapsed = started.elapsed().as_secs_f64();
            let allowed = (elapsed * per_partition) as u64 + 1;
            if allowed <= self.emitted {
                let due = (self.emitted as f64 / per_partition - elapsed).max(0.0);
                return Ok(ReadStatus::Waiting(
                    Duration::from_secs_f64(due).max(Duration::from_micros(100)),
                ));
            }
            budget = budget.min(allowed - self.emitted);
        }
        for _ in 0..budget {
            if config.events.is_some_and(|n| self.next >= n) {
                return Ok(ReadStatus::Done);
            }
            match self.generator.event(self.next) {
                Generated::Row { ts, row } if EVENT_TIME_RANGE.contains(&ts) => out.record(ts, row),
                Generated::Row { ts, .. } => {
                    let error = format!("event time {ts} ms is outside years 1 to 9999 (start_time + events × time_step)");
                    out.bad(self.next as i64, error, b"");
                }
                Generated::Malformed { line, .. } => {
                    let error = match self.decoder.decode(line.as_bytes()) {
                        Err(e) => e,
                        Ok(_) => "malformed by the generator".to_string(),
                    };
                    out.bad(self.next as i64, error, line.as_bytes());
                }
            }
            self.next += step;
            self.emitted += 1;
        }
        if config.events.is_some_and(|n| self.next >= n) {
            Ok(ReadStatus::Done)
        } else {
            Ok(ReadStatus::More)
        }
    }
}

/// Writes events `0 .. config.events` as JSON lines, in index order (malformed ones included);
/// calls `progress` with the count every 100 000 events. Returns the number written.
pub fn write_jsonl(
    config: &GeneratorConfig,
    out: &mut impl Write,
    mut progress: impl FnMut(u64),
) -> io::Result<u64> {
    let events = config.events.unwrap_or(0);
    let config = Arc::new(config.clone());
    let mut generator = Generator::new(config.clone(), Arc::new(Pools::new(config.cardinalities)));
    let mut line = String::with_capacity(256);
    for i in 0..events {
        line.clear();
        match generator.event(i) {
            Generated::Row { row, .. } => generator.json(&row, &mut line),
            Generated::Malformed { line: bad, .. } => line.push_str(&bad),
        }
        line.push('\n');
        out.write_all(line.as_bytes())?;
        if (i + 1) % 100_000 == 0 {
            progress(i + 1);
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use weir_engine::data::Value;

    use super::*;

    fn generator(config: GeneratorConfig) -> Generator {
        let pools = Arc::new(Pools::new(config.cardinalities));
        Generator::new(Arc::new(config), pools)
    }

    #[test]
    fn same_seed_same_events_other_seed_other_events() {
        for stream in StreamKind::ALL {
            let mut a = generator(GeneratorConfig::new(stream, Some(100), 1));
            let mut b = generator(GeneratorConfig::new(stream, Some(100), 1));
            let mut c = generator(GeneratorConfig::new(stream, Some(100), 2));
            let same = (0..100).all(|i| a.event(i) == b.event(i));
            let differ = (0..100).filter(|&i| a.event(i) != c.event(i)).count();
            assert!(same, "{stream:?}");
            assert!(differ > 90, "{stream:?}: {differ}");
        }
    }

    #[test]
    fn every_generated_row_round_trips_through_json() {
        for stream in StreamKind::ALL {
            let mut g = generator(GeneratorConfig::new(stream, Some(1000), 3));
            let mut decoder = JsonDecoder::new(stream.schema());
            for i in 0..1000 {
                let Generated::Row { row, ts } = g.event(i) else {
                    panic!("nothing malformed")
                };
                let mut line = String::new();
                g.json(&row, &mut line);
                let back = decoder.decode(line.as_bytes()).unwrap();
                assert_eq!(back, row, "{line}");
                assert_eq!(row.get_i64(g.time_column), Some(ts));
            }
        }
    }

    #[test]
    fn malformed_events_never_decode() {
        for stream in StreamKind::ALL {
            let mut config = GeneratorConfig::new(stream, Some(2000), 5);
            config.malformed = 0.5;
            let mut g = generator(config);
            let mut decoder = JsonDecoder::new(stream.schema());
            let mut bad = 0;
            for i in 0..2000 {
                if let Generated::Malformed { line, .. } = g.event(i) {
                    bad += 1;
                    assert!(decoder.decode(line.as_bytes()).is_err(), "{line}");
                }
            }
            assert!((800..1200).contains(&bad), "{stream:?}: {bad}");
        }
    }

    #[test]
    fn disorder_and_lateness_stay_within_their_bounds() {
        let mut config = GeneratorConfig::new(StreamKind::Iot, Some(5000), 9);
        config.disorder_ms = 200;
        config.late_fraction = 0.01;
        config.late_by_ms = 10_000;
        let start = config.start_ms;
        let mut g = generator(config);
        let mut late = 0;
        for i in 0..5000u64 {
            let Generated::Row { ts, .. } = g.event(i) else {
                unreachable!()
            };
            let behind = start + i as i64 - ts;
            assert!(
                (0..=200).contains(&behind) || (10_000..=15_000).contains(&behind),
                "{behind}"
            );
            late += (behind >= 10_000) as u32;
        }
        assert!((20..100).contains(&late), "{late}");
    }

    #[test]
    fn payments_have_fraudsters_and_high_values() {
        let mut g = generator(GeneratorConfig::new(StreamKind::Payments, Some(50_000), 11));
        let (mut failed, mut high) = (0, 0);
        for i in 0..50_000 {
            let Generated::Row { row, .. } = g.event(i) else {
                unreachable!()
            };
            failed += (row.get_str(4) == Some("FAILED")) as u32;
            high += matches!(row.get(2), Value::Float(a) if a > 5000.0) as u32;
        }
        assert!((1500..6000).contains(&failed), "{failed}");
        assert!((20..120).contains(&high), "{high}");
    }
}
