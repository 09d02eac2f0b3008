//! The compact row: one allocation per record, typed values, O(1) column access.
//!
//! Layout of the bytes, all integers little-endian:
//!
//! ```text
//! [ncols: u16][tag: u8 × ncols][slot: 8 bytes × ncols][string heap]
//! ```
//!
//! A slot holds an int / timestamp (`i64`), a float (`f64` bits), a bool (0/1) or, for a
//! string, `offset: u32 | len: u32 << 32` into the heap. Strings are written to the heap in
//! column order and null slots are zero, so equal rows have equal bytes: rows can be hashed,
//! compared and used as map keys by their bytes.
//!
//! Invariant: every string in a row is valid UTF-8. Rows are built from `&str` (by
//! [`RowBuilder`]) or from bytes that [`Row::from_bytes`] checks, so reading a string back needs
//! no second validation; this is one of the two places weir uses `unsafe` (the other is
//! [`crate::prefetch`]), for that.

use std::borrow::{Borrow, Cow};
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::time::format_rfc3339;

const TAG_NULL: u8 = 0;
const TAG_BOOL: u8 = 1;
const TAG_INT: u8 = 2;
const TAG_FLOAT: u8 = 3;
const TAG_STR: u8 = 4;
const TAG_TS: u8 = 5;

/// One value, borrowed from a row (or owned, when computed by an expression).
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    /// Missing / SQL NULL.
    Null,
    /// Boolean.
    Bool(bool),
    /// Integer.
    Int(i64),
    /// Float.
    Float(f64),
    /// Text.
    Str(Cow<'a, str>),
    /// Milliseconds since the Unix epoch.
    Ts(i64),
}

impl Value<'_> {
    /// True for `Null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Numeric view (ints, floats and timestamps), for comparisons and arithmetic.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(v) | Value::Ts(v) => Some(*v as f64),
            Value::Float(v) => Some(*v),
            _ => None,
        }
    }

    /// Detaches the value from the row it borrows from.
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(b),
            Value::Int(v) => Value::Int(v),
            Value::Float(v) => Value::Float(v),
            Value::Ts(v) => Value::Ts(v),
            Value::Str(s) => Value::Str(Cow::Owned(s.into_owned())),
        }
    }
}

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Ts(v) => f.write_str(&format_rfc3339(*v)),
        }
    }
}

/// A record: a compact, self-describing sequence of typed values.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Row {
    bytes: Box<[u8]>,
}

impl Row {
    /// Builds a row from values (convenient in tests; operators use [`RowBuilder`]).
    pub fn from_values(values: &[Value<'_>]) -> Row {
        let mut builder = RowBuilder::new(values.len());
        for (i, v) in values.iter().enumerate() {
            builder.set(i, v);
        }
        builder.finish()
    }

    /// Wraps bytes produced by [`RowBuilder::write_into`], checking the layout.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Row, String> {
        check_layout(&bytes)?;
        Ok(Row {
            bytes: bytes.into_boxed_slice(),
        })
    }

    /// The encoded bytes (stable: equal rows have equal bytes).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        u16::from_le_bytes([self.bytes[0], self.bytes[1]]) as usize
    }

    /// True for a row without columns.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The columns of several rows side by side, after `ts` timestamp columns: a join's
    /// output. A part given as `(None, width)` contributes `width` nulls. Copies each part's
    /// header and heap in bulk (string offsets shifted), instead of column by column.
    pub fn concat(ts: &[i64], parts: &[(Option<&Row>, usize)]) -> Row {
        let n = ts.len() + parts.iter().map(|(_, w)| w).sum::<usize>();
        fn heap(r: &Row) -> &[u8] {
            &r.bytes[2 + 9 * r.len()..]
        }
        let heap_len: usize = parts
            .iter()
            .filter_map(|(r, _)| r.map(|r| heap(r).len()))
            .sum();
        let mut out = Vec::with_capacity(2 + 9 * n + heap_len);
        out.extend_from_slice(&(n as u16).to_le_bytes());
        out.resize(2 + ts.len(), TAG_TS);
        for (row, width) in parts {
            match row {
                Some(r) => {
                    assert_eq!(
                        r.len(),
                        *width,
                        "a part of a concatenated row has its width"
                    );
                    out.extend_from_slice(&r.bytes[2..2 + width]);
                }
                None => out.resize(out.len() + width, TAG_NULL),
            }
        }
        for t in ts {
            out.extend_from_slice(&(*t as u64).to_le_bytes());
        }
        let mut offset = 0u64;
        for (row, width) in parts {
            match row {
                Some(r) => {
                    let m = r.len();
                    let at = out.len();
                    out.extend_from_slice(&r.bytes[2 + m..2 + 9 * m]);
                    if offset > 0 {
                        // Shift this part's string offsets past the heaps before it.
                        let tags = &r.bytes[2..2 + m];
                        for (i, _) in tags.iter().enumerate().filter(|(_, t)| **t == TAG_STR) {
                            let slot = &mut out[at + 8 * i..at + 8 * i + 8];
                            let shifted =
                                u64::from_le_bytes((&*slot).try_into().expect("8 bytes")) + offset;
                            slot.copy_from_slice(&shifted.to_le_bytes());
                        }
                    }
                    offset += heap(r).len() as u64;
                }
                None => out.resize(out.len() + 8 * width, 0),
            }
        }
        for (row, _) in parts {
            if let Some(r) = row {
                out.extend_from_slice(heap(r));
            }
        }
        Row {
            bytes: out.into_boxed_slice(),
        }
    }

    #[inline]
    fn tag(&self, i: usize) -> u8 {
        self.bytes[2 + i]
    }

    #[inline]
    fn slot(&self, i: usize) -> u64 {
        let at = 2 + self.len() + 8 * i;
        u64::from_le_bytes(self.bytes[at..at + 8].try_into().expect("8-byte slot"))
    }

    #[inline]
    fn str_bytes(&self, i: usize) -> &[u8] {
        let slot = self.slot(i);
        let heap = 2 + 9 * self.len();
        let start = heap + (slot & 0xffff_ffff) as usize;
        let len = (slot >> 32) as usize;
        &self.bytes[start..start + len]
    }

    #[inline]
    #[allow(unsafe_code)]
    fn str_at(&self, i: usize) -> &str {
        let bytes = self.str_bytes(i);
        debug_assert!(std::str::from_utf8(bytes).is_ok());
        // SAFETY: the module invariant — strings in a row are UTF-8: `RowBuilder` writes only
        // `&str` bytes and `Row::from_bytes` validates every string of foreign bytes.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    /// The value of column `i`.
    #[inline]
    pub fn get(&self, i: usize) -> Value<'_> {
        match self.tag(i) {
            TAG_BOOL => Value::Bool(self.slot(i) != 0),
            TAG_INT => Value::Int(self.slot(i) as i64),
            TAG_FLOAT => Value::Float(f64::from_bits(self.slot(i))),
            TAG_STR => Value::Str(Cow::Borrowed(self.str_at(i))),
            TAG_TS => Value::Ts(self.slot(i) as i64),
            _ => Value::Null,
        }
    }

    /// True when column `i` is null.
    #[inline]
    pub fn is_null(&self, i: usize) -> bool {
        self.tag(i) == TAG_NULL
    }

    /// Column `i` as an integer (ints and timestamps).
    #[inline]
    pub fn get_i64(&self, i: usize) -> Option<i64> {
        match self.tag(i) {
            TAG_INT | TAG_TS => Some(self.slot(i) as i64),
            _ => None,
        }
    }

    /// Column `i` as a float (floats, and ints widened).
    #[inline]
    pub fn get_f64(&self, i: usize) -> Option<f64> {
        match self.tag(i) {
            TAG_FLOAT => Some(f64::from_bits(self.slot(i))),
            TAG_INT | TAG_TS => Some(self.slot(i) as i64 as f64),
            _ => None,
        }
    }

    /// Column `i` as text.
    #[inline]
    pub fn get_str(&self, i: usize) -> Option<&str> {
        (self.tag(i) == TAG_STR).then(|| self.str_at(i))
    }

    /// All values, in column order.
    pub fn iter(&self) -> impl Iterator<Item = Value<'_>> + '_ {
        (0..self.len()).map(move |i| self.get(i))
    }

    /// Appends the encoding of the one-column row holding column `i` of this row (what a
    /// [`RowBuilder`] would produce for it, without one).
    #[inline]
    pub fn write_column_as_row(&self, i: usize, out: &mut Vec<u8>) {
        let tag = self.tag(i);
        out.extend_from_slice(&1u16.to_le_bytes());
        out.push(tag);
        if tag == TAG_STR {
            let s = self.str_bytes(i);
            out.extend_from_slice(&((s.len() as u64) << 32).to_le_bytes());
            out.extend_from_slice(s);
        } else {
            out.extend_from_slice(&self.slot(i).to_le_bytes());
        }
    }

    /// A 64-bit key that orders rows like [`cmp_values`](Self::cmp_values) where it differs
    /// (the first column's type, then up to 7 bytes of its value); equal keys need the full
    /// comparison. Sorting by it first turns most comparisons into one integer compare.
    pub fn sort_prefix(&self) -> u64 {
        if self.is_empty() {
            return 0;
        }
        let tag = self.tag(0);
        let value = match tag {
            TAG_STR => {
                let s = self.str_bytes(0);
                let mut b = [0u8; 8];
                let n = s.len().min(7);
                b[..n].copy_from_slice(&s[..n]);
                u64::from_be_bytes(b) >> 8
            }
            TAG_INT | TAG_TS => (self.slot(0) ^ (1 << 63)) >> 8,
            TAG_FLOAT => {
                let bits = self.slot(0);
                (if bits >> 63 == 1 {
                    !bits
                } else {
                    bits | (1 << 63)
                }) >> 8
            }
            _ => 0,
        };
        ((order_class(tag) as u64) << 56) | value
    }

    /// Compares by values, column by column: numbers numerically, strings lexicographically,
    /// nulls first. (`Ord` on `Row` compares encoded bytes: fast and total, but not readable.)
    pub fn cmp_values(&self, other: &Row) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        for i in 0..self.len().min(other.len()) {
            let ord = match (self.tag(i), other.tag(i)) {
                // UTF-8 byte order is code point order.
                (TAG_STR, TAG_STR) => self.str_bytes(i).cmp(other.str_bytes(i)),
                (TAG_FLOAT, TAG_FLOAT) => {
                    f64::from_bits(self.slot(i)).total_cmp(&f64::from_bits(other.slot(i)))
                }
                (TAG_INT | TAG_TS, TAG_INT | TAG_TS) => {
                    (self.slot(i) as i64).cmp(&(other.slot(i) as i64))
                }
                (TAG_BOOL, TAG_BOOL) => self.slot(i).cmp(&other.slot(i)),
                (a, b) => order_class(a).cmp(&order_class(b)),
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        self.len().cmp(&other.len())
    }

    /// Bytes this row occupies (heap allocation plus the handle).
    pub fn size_bytes(&self) -> usize {
        self.bytes.len() + std::mem::size_of::<Row>()
    }
}

impl From<&Row> for Row {
    fn from(row: &Row) -> Row {
        row.clone()
    }
}

impl Borrow<[u8]> for Row {
    fn borrow(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, v) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{v}")?;
        }
        f.write_str("]")
    }
}

impl Serialize for Row {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.bytes)
    }
}

impl<'de> Deserialize<'de> for Row {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Row, D::Error> {
        struct RowVisitor;
        impl<'de> serde::de::Visitor<'de> for RowVisitor {
            type Value = Row;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("encoded row bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Row, E> {
                Row::from_bytes(v.to_vec()).map_err(E::custom)
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Row, E> {
                Row::from_bytes(v).map_err(E::custom)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Row, A::Error> {
                let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(64));
                while let Some(b) = seq.next_element::<u8>()? {
                    bytes.push(b);
                }
                Row::from_bytes(bytes).map_err(serde::de::Error::custom)
            }
        }
        deserializer.deserialize_bytes(RowVisitor)
    }
}

/// Values of different types order by type; ints and timestamps compare with each other.
fn order_class(tag: u8) -> u8 {
    if tag == TAG_TS {
        TAG_INT
    } else {
        tag
    }
}

fn check_layout(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 2 {
        return Err(format!("row of {} bytes has no header", bytes.len()));
    }
    let n = u16::from_le_bytes([bytes[0], bytes[1]]) as usize;
    let heap = 2 + 9 * n;
    if bytes.len() < heap {
        return Err(format!(
            "row of {} columns needs {heap} bytes, has {}",
            n,
            bytes.len()
        ));
    }
    for i in 0..n {
        let tag = bytes[2 + i];
        if tag > TAG_TS {
            return Err(format!("column {i} has unknown type tag {tag}"));
        }
        if tag == TAG_STR {
            let at = 2 + n + 8 * i;
            let slot = u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
            let start = heap + (slot & 0xffff_ffff) as usize;
            let end = start + (slot >> 32) as usize;
            if end > bytes.len() {
                return Err(format!(
                    "string in column {i} ends at {end}, past the row's end"
                ));
            }
            if std::str::from_utf8(&bytes[start..end]).is_err() {
                return Err(format!("string in column {i} is not valid UTF-8"));
            }
        }
    }
    Ok(())
}

/// Builds rows column by column, in any order, reusing its buffers between rows.
#[derive(Debug, Clone)]
pub struct RowBuilder {
    tags: Vec<u8>,
    slots: Vec<u64>,
    /// For string columns, `(start, len)` into `scratch`.
    spans: Vec<(u32, u32)>,
    scratch: Vec<u8>,
    /// One past the last string column set.
    next_string: usize,
    /// Strings were set once each, in column order: `scratch` is already the row's heap.
    in_order: bool,
}

impl RowBuilder {
    /// A builder for rows of `columns` columns, all null until set.
    pub fn new(columns: usize) -> Self {
        RowBuilder {
            tags: vec![TAG_NULL; columns],
            slots: vec![0; columns],
            spans: vec![(0, 0); columns],
            scratch: Vec::with_capacity(256),
            next_string: 0,
            in_order: true,
        }
    }

    #[inline]
    fn push_string(&mut self, i: usize, bytes: &[u8]) {
        if i < self.next_string {
            self.in_order = false;
        }
        self.next_string = i + 1;
        self.tags[i] = TAG_STR;
        let start = self.scratch.len() as u32;
        self.scratch.extend_from_slice(bytes);
        self.spans[i] = (start, bytes.len() as u32);
    }

    /// Marks column `i` as about to hold a non-string: a string set before is left behind in
    /// `scratch`, so it no longer is the heap as it stands.
    #[inline]
    fn replacing(&mut self, i: usize) {
        if self.tags[i] == TAG_STR {
            self.in_order = false;
        }
    }

    /// Number of columns of the rows built.
    pub fn columns(&self) -> usize {
        self.tags.len()
    }

    /// Sets column `i` to null.
    pub fn set_null(&mut self, i: usize) {
        self.replacing(i);
        self.tags[i] = TAG_NULL;
        self.slots[i] = 0;
    }
    /// Sets column `i` to a bool.
    pub fn set_bool(&mut self, i: usize, v: bool) {
        self.replacing(i);
        self.tags[i] = TAG_BOOL;
        self.slots[i] = v as u64;
    }
    /// Sets column `i` to an integer.
    pub fn set_int(&mut self, i: usize, v: i64) {
        self.replacing(i);
        self.tags[i] = TAG_INT;
        self.slots[i] = v as u64;
    }
    /// Sets column `i` to a float.
    pub fn set_float(&mut self, i: usize, v: f64) {
        self.replacing(i);
        self.tags[i] = TAG_FLOAT;
        self.slots[i] = v.to_bits();
    }
    /// Sets column `i` to a timestamp (ms since the epoch).
    pub fn set_ts(&mut self, i: usize, v: i64) {
        self.replacing(i);
        self.tags[i] = TAG_TS;
        self.slots[i] = v as u64;
    }
    /// Sets column `i` to text.
    pub fn set_str(&mut self, i: usize, v: &str) {
        self.push_string(i, v.as_bytes());
    }
    /// Sets column `i` to any value.
    pub fn set(&mut self, i: usize, v: &Value<'_>) {
        match v {
            Value::Null => self.set_null(i),
            Value::Bool(b) => self.set_bool(i, *b),
            Value::Int(x) => self.set_int(i, *x),
            Value::Float(x) => self.set_float(i, *x),
            Value::Ts(x) => self.set_ts(i, *x),
            Value::Str(s) => self.set_str(i, s),
        }
    }
    /// Copies column `from` of `row` into column `i`, without decoding it.
    pub fn copy_from(&mut self, i: usize, row: &Row, from: usize) {
        match row.tag(from) {
            TAG_STR => self.push_string(i, row.str_bytes(from)),
            tag => {
                self.replacing(i);
                self.tags[i] = tag;
                self.slots[i] = row.slot(from);
            }
        }
    }

    /// True when column `i` has not been set (or was set to null).
    pub fn is_null(&self, i: usize) -> bool {
        self.tags[i] == TAG_NULL
    }

    fn encoded_len(&self) -> usize {
        let heap: usize = (0..self.tags.len())
            .filter(|&i| self.tags[i] == TAG_STR)
            .map(|i| self.spans[i].1 as usize)
            .sum();
        2 + 9 * self.tags.len() + heap
    }

    /// Appends the encoded row to `out` and resets the builder (all columns null).
    pub fn write_into(&mut self, out: &mut Vec<u8>) {
        let n = self.tags.len();
        let header = 2 + 9 * n;
        let at = out.len();
        out.reserve(self.encoded_len());
        out.resize(at + header, 0);
        let head = &mut out[at..at + header];
        head[..2].copy_from_slice(&(n as u16).to_le_bytes());
        head[2..2 + n].copy_from_slice(&self.tags);
        for (chunk, slot) in head[2 + n..].chunks_exact_mut(8).zip(self.slot_words(0)) {
            chunk.copy_from_slice(&slot.to_le_bytes());
        }
        self.write_heap(out);
        self.reset();
    }

    /// Each column's slot as encoded, with string offsets counted from `heap_start` (the
    /// strings written before this builder's in the row's heap).
    fn slot_words(&self, heap_start: u64) -> impl Iterator<Item = u64> + '_ {
        let mut offset = heap_start;
        (0..self.tags.len()).map(move |i| {
            if self.tags[i] == TAG_STR {
                let len = self.spans[i].1 as u64;
                let slot = offset | (len << 32);
                offset += len;
                slot
            } else {
                self.slots[i]
            }
        })
    }

    /// Appends the strings set, in column order.
    fn write_heap(&self, out: &mut Vec<u8>) {
        if self.in_order {
            out.extend_from_slice(&self.scratch);
        } else {
            for i in 0..self.tags.len() {
                if self.tags[i] == TAG_STR {
                    let (start, len) = self.spans[i];
                    out.extend_from_slice(&self.scratch[start as usize..(start + len) as usize]);
                }
            }
        }
    }

    /// Finishes a row of `prefix`'s columns followed by this builder's, and resets the
    /// builder: `prefix` is copied in bulk (its header, slots and heap), not column by column.
    pub fn finish_after(&mut self, prefix: &Row) -> Row {
        let (m, n) = (prefix.len(), self.tags.len());
        let prefix_heap = &prefix.bytes[2 + 9 * m..];
        let own_heap = self.encoded_len() - (2 + 9 * n);
        let mut out = Vec::with_capacity(2 + 9 * (m + n) + prefix_heap.len() + own_heap);
        out.extend_from_slice(&((m + n) as u16).to_le_bytes());
        out.extend_from_slice(&prefix.bytes[2..2 + m]);
        out.extend_from_slice(&self.tags);
        out.extend_from_slice(&prefix.bytes[2 + m..2 + 9 * m]);
        // This builder's strings follow the prefix's heap.
        for slot in self.slot_words(prefix_heap.len() as u64) {
            out.extend_from_slice(&slot.to_le_bytes());
        }
        out.extend_from_slice(prefix_heap);
        self.write_heap(&mut out);
        self.reset();
        Row {
            bytes: out.into_boxed_slice(),
        }
    }

    /// Finishes the row and resets the builder.
    pub fn finish(&mut self) -> Row {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.write_into(&mut out);
        Row {
            bytes: out.into_boxed_slice(),
        }
    }

    /// Forgets every value set so far.
    pub fn reset(&mut self) {
        self.tags.fill(TAG_NULL);
        self.slots.fill(0);
        self.scratch.clear();
        self.next_string = 0;
        self.in_order = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_finished_after_a_prefix_equal_rows_built_column_by_column() {
        let prefix = Row::from_values(&[
            Value::Str("d01".into()),
            Value::Int(7),
            Value::Null,
            Value::Str("é".into()),
        ]);
        let tails: [&[Value<'_>]; 3] = [
            &[Value::Float(1.5), Value::Str("max".into()), Value::Int(3)],
            &[],
            &[Value::Str("a".into()), Value::Str("bc".into())],
        ];
        let mut builder = RowBuilder::new(0);
        for tail in tails {
            if builder.columns() != tail.len() {
                builder = RowBuilder::new(tail.len());
            }
            // Out of column order: the heap is still written in column order.
            for (i, v) in tail.iter().enumerate().rev() {
                builder.set(i, v);
            }
            let row = builder.finish_after(&prefix);
            let mut all: Vec<Value<'_>> = prefix.iter().collect();
            all.extend(tail.iter().cloned());
            assert_eq!(row, Row::from_values(&all));
        }
        assert_eq!(
            RowBuilder::new(0).finish_after(&Row::from_values(&[])),
            Row::from_values(&[])
        );
    }

    #[test]
    fn concatenated_rows_equal_rows_built_column_by_column() {
        let left = Row::from_values(&[
            Value::Str("d01".into()),
            Value::Int(7),
            Value::Str("é!".into()),
        ]);
        let right = Row::from_values(&[Value::Float(1.5), Value::Str("x".into()), Value::Null]);
        let joined = Row::concat(&[10, 20], &[(Some(&left), 3), (Some(&right), 3)]);
        let mut expected = vec![Value::Ts(10), Value::Ts(20)];
        expected.extend((0..3).map(|i| left.get(i)));
        expected.extend((0..3).map(|i| right.get(i)));
        assert_eq!(joined, Row::from_values(&expected));
        let outer = Row::concat(&[], &[(Some(&left), 3), (None, 2)]);
        let mut expected: Vec<Value> = (0..3).map(|i| left.get(i)).collect();
        expected.extend([Value::Null, Value::Null]);
        assert_eq!(outer, Row::from_values(&expected));
        assert!(Row::from_bytes(outer.as_bytes().to_vec()).is_ok());
    }

    #[test]
    fn round_trips_every_type() {
        let values = vec![
            Value::Null,
            Value::Bool(true),
            Value::Int(-42),
            Value::Float(1.5),
            Value::Str("héllo".into()),
            Value::Ts(1_700_000_000_123),
            Value::Str("".into()),
        ];
        let row = Row::from_values(&values);
        assert_eq!(row.len(), values.len());
        assert_eq!(row.iter().collect::<Vec<_>>(), values);
        assert_eq!(row.get_f64(2), Some(-42.0));
        assert_eq!(row.get_str(4), Some("héllo"));
        assert!(row.is_null(0));
    }

    #[test]
    fn equal_content_gives_equal_bytes_whatever_the_set_order() {
        let mut a = RowBuilder::new(3);
        a.set_str(2, "z");
        a.set_str(0, "x");
        a.set_str(0, "overwritten-x");
        a.set_int(1, 7);
        let mut b = RowBuilder::new(3);
        b.set_str(0, "overwritten-x");
        b.set_int(1, 7);
        b.set_str(2, "z");
        assert_eq!(a.finish(), b.finish());
    }

    #[test]
    fn one_column_rows_can_be_cut_from_a_row_directly() {
        let row = Row::from_values(&[
            Value::Int(3),
            Value::Str("héllo".into()),
            Value::Null,
            Value::Float(2.5),
        ]);
        for i in 0..row.len() {
            let mut direct = Vec::new();
            row.write_column_as_row(i, &mut direct);
            let mut b = RowBuilder::new(1);
            b.copy_from(0, &row, i);
            assert_eq!(direct, b.finish().as_bytes(), "column {i}");
        }
    }

    #[test]
    fn sort_prefix_agrees_with_value_order() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let words = [
            "", "a", "ab", "ab\u{0}", "abcdefg", "abcdefgh", "abcdefgi", "b", "é", "zz",
        ];
        let mut rows = Vec::new();
        for _ in 0..2000 {
            let first = match next() % 5 {
                0 => Value::Str(words[(next() % words.len() as u64) as usize].into()),
                1 => Value::Int(
                    (next() % 7) as i64 - 3 + if next() % 2 == 0 { i64::MIN / 2 } else { 0 },
                ),
                2 => Value::Float(((next() % 9) as f64 - 4.0) / 2.0),
                3 => Value::Null,
                _ => Value::Ts((next() % 5) as i64 * 1000),
            };
            rows.push(Row::from_values(&[first, Value::Int((next() % 3) as i64)]));
        }
        for a in &rows {
            for b in rows.iter().take(200) {
                let (pa, pb) = (a.sort_prefix(), b.sort_prefix());
                if pa != pb {
                    assert_eq!(pa.cmp(&pb), a.cmp_values(b), "{a:?} vs {b:?}");
                }
            }
        }
    }

    #[test]
    fn strings_set_in_order_or_not_give_the_same_row() {
        let mut a = RowBuilder::new(4);
        a.set_str(0, "x");
        a.set_int(1, 1);
        a.set_str(2, "yy");
        a.set_str(3, "zzz");
        let mut b = RowBuilder::new(4);
        b.set_str(3, "zzz");
        b.set_str(2, "yy");
        b.set_str(0, "x");
        b.set_int(1, 1);
        let mut c = RowBuilder::new(4);
        c.set_str(0, "x");
        c.set_str(1, "gone");
        c.set_int(1, 1);
        c.set_str(2, "yy");
        c.set_str(3, "zzz");
        let (a, b, c) = (a.finish(), b.finish(), c.finish());
        assert_eq!(a, b);
        assert_eq!(a, c);
    }

    #[test]
    fn value_order_is_readable_order() {
        let row = |s: &str, n: i64| Row::from_values(&[Value::Str(s.into()), Value::Int(n)]);
        let mut rows = [
            row("k5", 1),
            row("k10", 3),
            row("k0", 2),
            row("", 9),
            row("k0", -1),
        ];
        rows.sort_by(Row::cmp_values);
        let keys: Vec<_> = rows
            .iter()
            .map(|r| (r.get_str(0).unwrap().to_string(), r.get_i64(1).unwrap()))
            .collect();
        let expected = [("", 9), ("k0", -1), ("k0", 2), ("k10", 3), ("k5", 1)];
        assert_eq!(keys, expected.map(|(s, n)| (s.to_string(), n)));
    }

    #[test]
    fn builder_resets_after_finish() {
        let mut b = RowBuilder::new(2);
        b.set_str(0, "a");
        let _ = b.finish();
        let row = b.finish();
        assert!(row.is_null(0) && row.is_null(1));
    }

    #[test]
    fn serde_round_trip_and_damage_detection() {
        let row = Row::from_values(&[Value::Str("abc".into()), Value::Int(1)]);
        let bytes = bincode::serialize(&row).unwrap();
        let back: Row = bincode::deserialize(&bytes).unwrap();
        assert_eq!(back, row);
        let mut damaged = row.as_bytes().to_vec();
        damaged.truncate(damaged.len() - 2);
        assert!(Row::from_bytes(damaged).is_err());
        let mut not_utf8 = row.as_bytes().to_vec();
        let last = not_utf8.len() - 1;
        not_utf8[last] = 0xff;
        let err = Row::from_bytes(not_utf8).unwrap_err();
        assert!(err.contains("not valid UTF-8"), "{err}");
    }
}
