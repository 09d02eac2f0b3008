//! The record in flight between operators, and the dead-letter record.

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use crate::data::{DataType, Field, Row, RowBuilder, Schema, SchemaRef};

/// Timely timestamps in weir are epochs: processing-time ticks advanced by the sources.
pub type Epoch = u64;

/// The watermark before anything is known.
pub const WATERMARK_MIN: i64 = i64::MIN;
/// The watermark of a stream that has ended: every window can close.
pub const WATERMARK_END: i64 = i64::MAX;

/// Event times weir accepts: years 1 to 9999 (what RFC 3339 can spell). Anything else is bad
/// input — and keeps window arithmetic far from overflow.
pub const EVENT_TIME_RANGE: std::ops::RangeInclusive<i64> =
    -62_135_596_800_000..=253_402_300_799_999;

/// One record: its row, its event time, and the watermark of its source partition at the
/// moment it was read (`wm`).
///
/// Whether a record is late is decided against `wm`, a function of the partition's content
/// only, never of how partitions interleaved at run time: this is what makes lateness — and
/// so every windowed result — the same at any worker count and on every replay. Records
/// derived by an operator carry the watermark at which they were (deterministically) produced.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Event {
    /// Event time, milliseconds since the epoch.
    pub ts: i64,
    /// The partition watermark when this record was read (or produced).
    pub wm: i64,
    /// The values.
    pub row: Row,
}

impl Event {
    /// A record at event time `ts` read at partition watermark `wm`.
    pub fn new(ts: i64, wm: i64, row: Row) -> Self {
        Event { ts, wm, row }
    }
}

/// Column positions of [`dead_letter_schema`].
pub mod dead_letter {
    /// Name of the source the input came from.
    pub const SOURCE: usize = 0;
    /// File path, topic/partition or generator partition.
    pub const LOCATION: usize = 1;
    /// Byte offset (files), message offset (Kafka) or event index (generator).
    pub const OFFSET: usize = 2;
    /// What was wrong.
    pub const ERROR: usize = 3;
    /// The input as received (lossy UTF-8 for binary input).
    pub const RAW: usize = 4;
}

/// The schema of every `<source>.dead_letter` stream.
pub fn dead_letter_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(
                Schema::new(vec![
                    Field::required("source", DataType::String),
                    Field::required("location", DataType::String),
                    Field::required("offset", DataType::Int),
                    Field::required("error", DataType::String),
                    Field::required("raw", DataType::String),
                ])
                .expect("static schema"),
            )
        })
        .clone()
}

/// Builds a dead-letter record. Its event time is the partition watermark when the bad input
/// was read (the epoch, 1970, before any record), so it sorts deterministically among its
/// partition's output.
pub fn dead_letter_event(
    source: &str,
    location: &str,
    offset: i64,
    error: &str,
    raw: &[u8],
    wm: i64,
) -> Event {
    let mut b = RowBuilder::new(5);
    b.set_str(dead_letter::SOURCE, source);
    b.set_str(dead_letter::LOCATION, location);
    b.set_int(dead_letter::OFFSET, offset);
    b.set_str(dead_letter::ERROR, error);
    b.set_str(dead_letter::RAW, &String::from_utf8_lossy(raw));
    let ts = if wm == WATERMARK_MIN { 0 } else { wm };
    Event::new(ts, wm, b.finish())
}
