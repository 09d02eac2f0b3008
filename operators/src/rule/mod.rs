//! Fraud rules (`rule:` steps), evaluated per key in event-time order by the
//! [ordered](crate::ordered) engine:
//!
//! - [`Threshold`]: an alert when an event makes the count (and/or a sum) of matching events in
//!   the trailing window `(ts - over, ts]` exceed a threshold; the rule re-arms once the
//!   condition no longer holds — after an event, or as events leave the window;
//! - [`Pattern`] in `Sequence` mode: an event matching `then` within `within` after one or more
//!   pending events matching `first` (at the same event time too);
//! - [`Pattern`] in `Absence` mode: an event matching `first` not followed by one matching
//!   `then` within `within`; the alert fires when the watermark passes the deadline.
//!
//! Every alert has one schema: the key columns, `count`, `sum` (threshold rules with a sum),
//! `first_ts`, `last_ts` and `event_ids` (the ids of the events behind the alert, comma
//! separated, in event-time order).

mod pattern;
mod threshold;

pub use pattern::{Pattern, PatternKind};
pub use threshold::{RuleUpdates, Threshold};

use weir_engine::data::{DataType, Field, Row, RowBuilder, Schema, Value};
use weir_engine::event::Event;

/// The id of an event as text: the id column's value (`""` when there is no id column).
pub(crate) fn event_id(row: &Row, column: Option<usize>) -> EventId {
    let Some(c) = column else {
        return EventId::default();
    };
    if let Some(s) = row.get_str(c) {
        return EventId::new(s);
    }
    match row.get(c) {
        Value::Null => EventId::default(),
        v => EventId::new(&v.to_string()),
    }
}

/// An event id kept by a rule until its window passes: ids up to [`EventId::INLINE`] bytes
/// (every id the generators make, UUIDs without dashes) are stored in place, so a counted
/// event costs no allocation.
#[derive(Clone, Debug)]
pub(crate) enum EventId {
    Inline {
        len: u8,
        bytes: [u8; EventId::INLINE],
    },
    Heap(Box<str>),
}

impl Default for EventId {
    fn default() -> Self {
        EventId::Inline {
            len: 0,
            bytes: [0; EventId::INLINE],
        }
    }
}

impl EventId {
    /// The longest id stored in place.
    pub const INLINE: usize = 22;

    pub(crate) fn new(s: &str) -> Self {
        if s.len() <= Self::INLINE {
            let mut bytes = [0; Self::INLINE];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            EventId::Inline {
                len: s.len() as u8,
                bytes,
            }
        } else {
            EventId::Heap(s.into())
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            EventId::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..*len as usize]).expect("copied from a str")
            }
            EventId::Heap(s) => s,
        }
    }
}

impl serde::Serialize for EventId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for EventId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(EventId::new(&s))
    }
}

/// The output schema of a rule step keyed by `key_fields`.
pub fn alert_schema(key_fields: Vec<Field>, with_sum: bool) -> Result<Schema, String> {
    let mut fields = key_fields;
    fields.push(Field::required("count", DataType::Int));
    if with_sum {
        fields.push(Field::new("sum", DataType::Float));
    }
    fields.push(Field::required("first_ts", DataType::Timestamp));
    fields.push(Field::required("last_ts", DataType::Timestamp));
    fields.push(Field::required("event_ids", DataType::String));
    Schema::new(fields).map_err(|e| e.to_string())
}

/// Builds alert rows of [`alert_schema`].
#[derive(Clone, Debug)]
pub(crate) struct AlertBuilder {
    keys: usize,
    with_sum: bool,
    builder: RowBuilder,
}

/// One alert's content.
pub(crate) struct Alert<'a> {
    pub ts: i64,
    pub count: i64,
    pub sum: Option<f64>,
    pub first_ts: i64,
    pub last_ts: i64,
    pub ids: &'a mut dyn Iterator<Item = &'a str>,
}

impl AlertBuilder {
    pub(crate) fn new(keys: usize, with_sum: bool) -> Self {
        AlertBuilder {
            keys,
            with_sum,
            builder: RowBuilder::new(keys + 4 + with_sum as usize),
        }
    }

    /// An alert for `key`, at event time `alert.ts`.
    pub(crate) fn alert(&mut self, key: &Row, alert: Alert<'_>) -> Event {
        for k in 0..self.keys {
            self.builder.copy_from(k, key, k);
        }
        let mut col = self.keys;
        self.builder.set_int(col, alert.count);
        col += 1;
        if self.with_sum {
            match alert.sum {
                Some(s) => self.builder.set_float(col, s),
                None => self.builder.set_null(col),
            }
            col += 1;
        }
        self.builder.set_ts(col, alert.first_ts);
        self.builder.set_ts(col + 1, alert.last_ts);
        let mut ids = String::new();
        for (i, id) in alert.ids.enumerate() {
            if i > 0 {
                ids.push(',');
            }
            ids.push_str(id);
        }
        self.builder.set_str(col + 2, &ids);
        Event::new(alert.ts, alert.ts, self.builder.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_round_trip_inline_and_on_the_heap() {
        for s in [
            "",
            "p000001",
            "0123456789abcdef012345",
            "0123456789abcdef0123456",
        ] {
            let id = EventId::new(s);
            assert_eq!(id.as_str(), s);
            assert_eq!(
                matches!(id, EventId::Inline { .. }),
                s.len() <= EventId::INLINE
            );
            let bytes = bincode::serialize(&id).unwrap();
            let back: EventId = bincode::deserialize(&bytes).unwrap();
            assert_eq!(back.as_str(), s);
        }
        assert_eq!(std::mem::size_of::<EventId>(), 24);
    }
}
