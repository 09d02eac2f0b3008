//! The data model: schemas, compact rows, timestamps and the JSON codec.

pub mod json;
pub mod row;
pub mod schema;
pub mod time;

pub use json::{encode_row, JsonDecoder, TimestampFormat, DEBEZIUM_OP, DEBEZIUM_TS};
pub use row::{Row, RowBuilder, Value};
pub use schema::{DataType, Field, Schema, SchemaRef};

/// Equality of short byte strings (keys, field names) without a `memcmp` call: eight bytes at
/// a time, inline. For the 10–30 byte strings on the hot path the call costs more than the
/// comparison.
#[inline(always)]
pub fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i + 8 <= a.len() {
        let x = u64::from_ne_bytes(a[i..i + 8].try_into().expect("8 bytes"));
        let y = u64::from_ne_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if x != y {
            return false;
        }
        i += 8;
    }
    a[i..] == b[i..]
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_eq_is_slice_equality() {
        let words: [&[u8]; 7] = [
            b"",
            b"a",
            b"abcdefgh",
            b"abcdefghi",
            b"abcdefgh1",
            b"abcdefghijklmnopq",
            b"abcdefghijklmnopr",
        ];
        for a in words {
            for b in words {
                assert_eq!(super::bytes_eq(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }
}
