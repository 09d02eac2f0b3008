//! JSON lines ↔ rows, driven by the schema.
//!
//! Decoding walks each JSON object once and writes every known field straight into a
//! [`RowBuilder`] slot — no intermediate `Value` tree. Unknown fields are skipped; a field of
//! the wrong type, a missing required field or malformed JSON is an error that names the
//! field, for the dead-letter output.
//!
//! The decoder was picked by measurement (`benches/`, figures in `benches/RESULTS.md`): a
//! schema-driven scanner (the `scan` module) beats serde_json and sonic-rs driven through serde's
//! streaming API, and a `serde_json::Value` tree by far. The serde path stays as
//! [`JsonDecoder::decode_serde`], the reference the scanner is tested against.

mod scan;

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::row::{Row, RowBuilder, Value};
use super::schema::{DataType, SchemaRef};
use super::time::{parse_rfc3339, write_rfc3339};

/// Decodes JSON objects into rows of one schema. Keep one per thread: it reuses its buffers.
#[derive(Debug, Clone)]
pub struct JsonDecoder {
    schema: SchemaRef,
    builder: RowBuilder,
    keys: Vec<scan::KeyPattern>,
    /// Debezium change events: the columns `_op` and `_ts_ms` are filled from the envelope.
    debezium: Option<(usize, usize)>,
}

/// Column names a Debezium source adds to its schema.
pub const DEBEZIUM_OP: &str = "_op";
/// See [`DEBEZIUM_OP`].
pub const DEBEZIUM_TS: &str = "_ts_ms";

impl JsonDecoder {
    /// A decoder for `schema`.
    pub fn new(schema: SchemaRef) -> Self {
        let builder = RowBuilder::new(schema.len());
        let keys = schema
            .fields()
            .iter()
            .map(|f| scan::KeyPattern::of(&f.name))
            .collect();
        JsonDecoder {
            schema,
            builder,
            keys,
            debezium: None,
        }
    }

    /// Decodes Debezium change events (`{"before": {...}, "after": {...}, "op": "c|u|d|r",
    /// "ts_ms": ...}`, optionally inside `{"payload": ...}`): the row is `after` (`before` for
    /// deletes), and the schema's `_op` and `_ts_ms` columns get the operation and the
    /// change's time.
    pub fn debezium(mut self) -> Self {
        let op = self.schema.index_of(DEBEZIUM_OP);
        let ts = self.schema.index_of(DEBEZIUM_TS);
        self.debezium = op.zip(ts);
        self
    }

    /// The schema rows are decoded into.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Decodes one JSON object (surrounding whitespace allowed, nothing else).
    #[inline]
    pub fn decode(&mut self, line: &[u8]) -> Result<Row, String> {
        self.decode_with(line, |_| {})
    }

    /// Decodes one JSON object, then lets `extra` set columns that do not come from the JSON
    /// (a Kafka message's key, partition, offset and timestamp) before the row is finished.
    #[inline]
    pub fn decode_with(
        &mut self,
        line: &[u8],
        extra: impl FnOnce(&mut RowBuilder),
    ) -> Result<Row, String> {
        let mut change = None;
        let unwrapped;
        let line = match self.debezium {
            None => line,
            Some(_) => {
                let (inner, op, ts) = unwrap_debezium(line)?;
                unwrapped = inner;
                change = Some((op, ts));
                &unwrapped[..]
            }
        };
        let scanned = scan::Scan::new(line)
            .and_then(|mut s| s.object(&self.schema, &self.keys, &mut self.builder));
        if let Err(e) = scanned {
            self.builder.reset();
            return Err(e);
        }
        if let (Some((op_col, ts_col)), Some((op, ts))) = (self.debezium, change) {
            self.builder.set_str(op_col, op);
            match ts {
                Some(ms) => self.builder.set_ts(ts_col, ms),
                None => self.builder.set_null(ts_col),
            }
        }
        extra(&mut self.builder);
        self.finish_row().map_err(|e| e.to_string())
    }

    fn finish_row(&mut self) -> Result<Row, RequiredMissing<'_>> {
        for (i, field) in self.schema.fields().iter().enumerate() {
            if !field.nullable && self.builder.is_null(i) {
                self.builder.reset();
                return Err(RequiredMissing(&field.name));
            }
        }
        Ok(self.builder.finish())
    }

    /// Decodes like [`decode`](Self::decode), through serde_json's streaming API (the
    /// reference implementation).
    pub fn decode_serde(&mut self, line: &[u8]) -> Result<Row, String> {
        let mut de = serde_json::Deserializer::from_slice(line);
        let decoded = self
            .decode_from(&mut de)
            .and_then(|row| de.end().map(|()| row));
        decoded.map_err(|e| {
            self.builder.reset();
            e.to_string()
        })
    }

    /// Decodes one JSON object from any serde deserializer (used to compare JSON parsers).
    pub fn decode_from<'de, D: Deserializer<'de>>(&mut self, de: D) -> Result<Row, D::Error> {
        let seed = RowSeed {
            schema: &self.schema,
            builder: &mut self.builder,
        };
        if let Err(e) = seed.deserialize(de) {
            self.builder.reset();
            return Err(e);
        }
        self.finish_row().map_err(de::Error::custom)
    }
}

/// A required field had no value.
struct RequiredMissing<'a>(&'a str);

impl fmt::Display for RequiredMissing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "required field `{}` is missing or null", self.0)
    }
}

struct RowSeed<'a> {
    schema: &'a SchemaRef,
    builder: &'a mut RowBuilder,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Producers usually write fields in schema order: try the next column first.
        let mut hint = 0usize;
        while let Some(column) = map.next_key_seed(KeySeed {
            schema: self.schema,
            hint,
        })? {
            match column {
                Some(i) => {
                    let field = self.schema.field(i);
                    map.next_value_seed(ColumnSeed {
                        builder: self.builder,
                        column: i,
                        dtype: field.dtype,
                        name: &field.name,
                    })?;
                    hint = i + 1;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Maps a JSON key to a column position (`None`: not in the schema).
struct KeySeed<'a> {
    schema: &'a SchemaRef,
    hint: usize,
}

impl KeySeed<'_> {
    fn lookup(&self, key: &str) -> Option<usize> {
        if self.hint < self.schema.len() && self.schema.field(self.hint).name == key {
            return Some(self.hint);
        }
        self.schema.index_of(key)
    }
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Option<usize>, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.lookup(key))
    }
}

/// Writes one JSON value into one column, checking it against the column's type.
struct ColumnSeed<'a> {
    builder: &'a mut RowBuilder,
    column: usize,
    dtype: DataType,
    name: &'a str,
}

impl ColumnSeed<'_> {
    fn mismatch<E: de::Error>(&self, got: fmt::Arguments<'_>) -> E {
        E::custom(format_args!(
            "field `{}`: expected {}, got {}",
            self.name, self.dtype, got
        ))
    }
}

impl<'de> DeserializeSeed<'de> for ColumnSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ColumnSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} for field `{}`", self.dtype, self.name)
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.builder.set_null(self.column);
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        match self.dtype {
            DataType::Bool => {
                self.builder.set_bool(self.column, v);
                Ok(())
            }
            _ => Err(self.mismatch(format_args!("boolean {v}"))),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        match self.dtype {
            DataType::Int => self.builder.set_int(self.column, v),
            DataType::Float => self.builder.set_float(self.column, v as f64),
            DataType::Timestamp => self.builder.set_ts(self.column, v),
            _ => return Err(self.mismatch(format_args!("number {v}"))),
        }
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        match i64::try_from(v) {
            Ok(v) => self.visit_i64(v),
            Err(_) if self.dtype == DataType::Float => {
                self.builder.set_float(self.column, v as f64);
                Ok(())
            }
            Err(_) => Err(self.mismatch(format_args!("{v}, which does not fit in 64 bits"))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        match self.dtype {
            DataType::Float => self.builder.set_float(self.column, v),
            // Producers often write integral values with a fraction (`3.0`): accept those.
            DataType::Int | DataType::Timestamp
                if v.fract() == 0.0 && v.abs() < 9.007_199_254_740_992e15 =>
            {
                if self.dtype == DataType::Int {
                    self.builder.set_int(self.column, v as i64)
                } else {
                    self.builder.set_ts(self.column, v as i64)
                }
            }
            _ => return Err(self.mismatch(format_args!("number {v}"))),
        }
        Ok(())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        match self.dtype {
            DataType::String => self.builder.set_str(self.column, v),
            DataType::Timestamp => match parse_rfc3339(v) {
                Ok(ms) => self.builder.set_ts(self.column, ms),
                Err(e) => return Err(E::custom(format_args!("field `{}`: {e}", self.name))),
            },
            _ => return Err(self.mismatch(format_args!("string {v:?}"))),
        }
        Ok(())
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _seq: A) -> Result<(), A::Error> {
        Err(self.mismatch(format_args!("an array")))
    }

    fn visit_map<A: MapAccess<'de>>(self, _map: A) -> Result<(), A::Error> {
        Err(self.mismatch(format_args!("an object")))
    }
}

/// How timestamps are written by [`encode_row`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimestampFormat {
    /// `2026-01-01T00:00:00.000Z`
    #[default]
    Rfc3339,
    /// Milliseconds since the epoch, as a JSON number.
    Millis,
}

/// The row object of a Debezium change event, its operation and its time (`ts_ms`, or the
/// source's `ts_ms`).
fn unwrap_debezium(line: &[u8]) -> Result<(Vec<u8>, &'static str, Option<i64>), String> {
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| format!("not a JSON change event: {e}"))?;
    let event = value
        .get("payload")
        .filter(|p| p.is_object())
        .unwrap_or(&value);
    let op = match event.get("op").and_then(|o| o.as_str()) {
        Some("c") => "c",
        Some("u") => "u",
        Some("d") => "d",
        Some("r") => "r",
        Some(other) => return Err(format!("Debezium `op` is `{other}`: expected c, u, d or r")),
        None => return Err("a Debezium change event needs `op` (c, u, d or r)".to_string()),
    };
    let side = if op == "d" { "before" } else { "after" };
    let row = event
        .get(side)
        .filter(|r| r.is_object())
        .ok_or_else(|| format!("Debezium `op: {op}` without a `{side}` object"))?;
    let ts = event
        .get("ts_ms")
        .and_then(|t| t.as_i64())
        .or_else(|| event.get("source")?.get("ts_ms")?.as_i64());
    let bytes = serde_json::to_vec(row).map_err(|e| e.to_string())?;
    Ok((bytes, op, ts))
}

/// Appends `row` as one JSON object (no newline) to `out`, with the column names of `names`.
pub fn encode_row(row: &Row, names: &[String], format: TimestampFormat, out: &mut String) {
    out.push('{');
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_str(name, out);
        out.push(':');
        match row.get(i) {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if b { "true" } else { "false" }),
            Value::Int(v) => out.push_str(itoa::Buffer::new().format(v)),
            Value::Float(v) if v.is_finite() => out.push_str(ryu::Buffer::new().format(v)),
            Value::Float(_) => out.push_str("null"),
            Value::Str(s) => write_json_str(&s, out),
            Value::Ts(ms) => match format {
                TimestampFormat::Rfc3339 => {
                    out.push('"');
                    write_rfc3339(ms, out);
                    out.push('"');
                }
                TimestampFormat::Millis => out.push_str(itoa::Buffer::new().format(ms)),
            },
        }
    }
    out.push('}');
}

/// Appends `s` as a quoted, escaped JSON string.
pub fn write_json_str(s: &str, out: &mut String) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            use std::fmt::Write;
            let _ = write!(out, "\\u{:04x}", b);
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn debezium_change_events_decode_into_their_row_operation_and_time() {
        use std::sync::Arc;
        let schema = Arc::new(
            crate::data::Schema::new(vec![
                crate::data::Field::new("id", DataType::String),
                crate::data::Field::new("model", DataType::String),
                crate::data::Field::required(DEBEZIUM_OP, DataType::String),
                crate::data::Field::new(DEBEZIUM_TS, DataType::Timestamp),
            ])
            .unwrap(),
        );
        let mut d = JsonDecoder::new(schema).debezium();
        let row = d
            .decode(br#"{"before":null,"after":{"id":"d1","model":"X"},"op":"c","ts_ms":1000}"#)
            .unwrap();
        assert_eq!(row.get_str(1), Some("X"));
        assert_eq!((row.get_str(2), row.get_i64(3)), (Some("c"), Some(1000)));
        let row = d
            .decode(br#"{"payload":{"before":{"id":"d1","model":"X"},"after":null,"op":"d","source":{"ts_ms":2000}}}"#)
            .unwrap();
        assert_eq!(
            (row.get_str(0), row.get_str(2), row.get_i64(3)),
            (Some("d1"), Some("d"), Some(2000))
        );
        let err = d.decode(br#"{"after":{"id":"d1"},"op":"x"}"#).unwrap_err();
        assert!(err.contains("expected c, u, d or r"), "{err}");
        let err = d.decode(br#"{"before":null,"op":"d"}"#).unwrap_err();
        assert!(err.contains("without a `before` object"), "{err}");
        assert!(d
            .decode(b"not json")
            .unwrap_err()
            .contains("not a JSON change event"));
    }
    use crate::data::schema::{Field, Schema};

    fn schema() -> SchemaRef {
        Arc::new(
            Schema::new(vec![
                Field::new("id", DataType::String),
                Field::new("amount", DataType::Float),
                Field::new("n", DataType::Int),
                Field::new("ok", DataType::Bool),
                Field::required("ts", DataType::Timestamp),
            ])
            .unwrap(),
        )
    }

    #[test]
    fn decodes_in_any_field_order_skipping_unknown_fields() {
        let mut d = JsonDecoder::new(schema());
        let row = d
            .decode(br#" {"ts":"1970-01-01T00:00:01Z","extra":{"deep":[1,2]},"amount":3,"id":"a\"b","ok":true} "#)
            .unwrap();
        assert_eq!(row.get_str(0), Some("a\"b"));
        assert_eq!(row.get(1), Value::Float(3.0));
        assert!(row.is_null(2));
        assert_eq!(row.get(3), Value::Bool(true));
        assert_eq!(row.get(4), Value::Ts(1000));
    }

    #[test]
    fn errors_name_the_field_and_the_problem() {
        let mut d = JsonDecoder::new(schema());
        let cases: &[(&[u8], &str)] = &[
            (
                br#"{"ts":1,"amount":"12.5"}"#,
                "field `amount`: expected float, got string \"12.5\"",
            ),
            (
                br#"{"ts":1,"n":1.5}"#,
                "field `n`: expected int, got number 1.5",
            ),
            (
                br#"{"ts":1,"id":{"a":1}}"#,
                "field `id`: expected string, got an object",
            ),
            (br#"{"amount":1}"#, "required field `ts` is missing or null"),
            (br#"{"ts":"noon"}"#, "`noon` is not an RFC 3339 timestamp"),
            (br#"{"ts":1,"id":"x""#, "EOF"),
            (br#"{"ts":1} trailing"#, "trailing characters"),
            (br#"[1,2]"#, "expected a JSON object"),
            (b"", "EOF"),
        ];
        for (line, expected) in cases {
            let err = d.decode(line).unwrap_err();
            assert!(
                err.contains(expected),
                "{}: {err}",
                String::from_utf8_lossy(line)
            );
        }
        // The decoder is reusable after errors.
        assert!(d.decode(br#"{"ts":5}"#).is_ok());
    }

    #[test]
    fn encodes_with_escapes_and_timestamps() {
        let names: Vec<String> = ["s", "f", "t", "n"].iter().map(|s| s.to_string()).collect();
        let row = Row::from_values(&[
            Value::Str("a\"\n\u{1}é".into()),
            Value::Float(0.1),
            Value::Ts(1000),
            Value::Null,
        ]);
        let mut out = String::new();
        encode_row(&row, &names, TimestampFormat::Rfc3339, &mut out);
        assert_eq!(
            out,
            r#"{"s":"a\"\n\u0001é","f":0.1,"t":"1970-01-01T00:00:01.000Z","n":null}"#
        );
        let back: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back["s"], "a\"\n\u{1}é");
    }
}
