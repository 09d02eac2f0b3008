//! The JSON scanner against the serde_json reference path, on random valid objects and on
//! random damage to them: both must accept and reject the same lines, and agree on values.

use std::sync::Arc;

use weir_engine::data::{DataType, Field, JsonDecoder, Schema};

/// xorshift64*: enough randomness for test inputs, no dependency.
struct Rand(u64);
impl Rand {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

fn schema() -> Arc<Schema> {
    Arc::new(
        Schema::new(vec![
            Field::new("s", DataType::String),
            Field::new("i", DataType::Int),
            Field::new("f", DataType::Float),
            Field::new("b", DataType::Bool),
            Field::required("ts", DataType::Timestamp),
        ])
        .unwrap(),
    )
}

fn value(r: &mut Rand, depth: u32) -> String {
    match r.below(if depth > 2 { 6 } else { 8 }) {
        0 => r
            .pick(&[
                "\"plain\"",
                "\"esc\\\"aped\\\\\"",
                "\"\\u00e9\\n\\t\"",
                "\"\\ud83d\\ude00 smile\"",
                "\"\"",
                "\"héllo ✓\"",
                "\"\\/\"",
            ])
            .to_string(),
        1 => r
            .pick(&[
                "0",
                "-0",
                "42",
                "-17",
                "9007199254740993",
                "9223372036854775807",
                "-9223372036854775808",
                "18446744073709551616",
            ])
            .to_string(),
        2 => r
            .pick(&[
                "1.5",
                "-0.0",
                "3.0",
                "1e3",
                "2.5E-3",
                "1.7976931348623157e308",
                "0.30000000000000004",
                "123456.789e-2",
                "1e999",
                "-2e400",
            ])
            .to_string(),
        3 => r.pick(&["true", "false"]).to_string(),
        4 => "null".to_string(),
        5 => r
            .pick(&[
                "\"2026-01-01T00:00:00Z\"",
                "\"2026-01-01 12:30:00.5+02:00\"",
                "\"1970-01-01\"",
                "\"noon\"",
            ])
            .to_string(),
        6 => format!(
            "[{}]",
            (0..r.below(3))
                .map(|_| value(r, depth + 1))
                .collect::<Vec<_>>()
                .join(",")
        ),
        _ => format!(
            "{{{}}}",
            (0..r.below(3))
                .map(|k| format!("\"n{k}\": {}", value(r, depth + 1)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A value that fits column `key` most of the time.
fn typed(r: &mut Rand, key: &str) -> String {
    if r.below(5) == 0 {
        return value(r, 0);
    }
    match key {
        "s" | "\\u0073" => r
            .pick(&[
                "\"plain\"",
                "\"esc\\\"aped\\\\\"",
                "\"\\u00e9\\n\"",
                "\"\\ud83d\\ude00\"",
                "\"\"",
                "null",
            ])
            .to_string(),
        "i" => r
            .pick(&[
                "0",
                "-0",
                "42",
                "-17",
                "9007199254740993",
                "3.0",
                "1e2",
                "-9223372036854775808",
                "null",
            ])
            .to_string(),
        "f" => r
            .pick(&[
                "1.5",
                "-0.0",
                "1e3",
                "2.5E-3",
                "0.1",
                "7",
                "0.30000000000000004",
                "1.7976931348623157e308",
                "123456789012345678901234567890",
            ])
            .to_string(),
        "b" => r.pick(&["true", "false", "null"]).to_string(),
        "ts" => r
            .pick(&[
                "\"2026-01-01T00:00:00Z\"",
                "\"2026-03-04 05:06:07.891-03:30\"",
                "1767225600000",
                "0",
                "-86400000",
                "1.7e12",
            ])
            .to_string(),
        _ => value(r, 0),
    }
}

fn object(r: &mut Rand) -> String {
    let keys = ["s", "i", "f", "b", "other", "\\u0073", "deep"];
    let ws = ["", " ", "\t", "\n ", "\r\n"];
    let mut parts = Vec::new();
    let mut fields: Vec<&str> = (0..r.below(6)).map(|_| r.pick(&keys)).collect();
    if r.below(10) < 8 {
        let at = r.below(fields.len() as u64 + 1) as usize;
        fields.insert(at, "ts");
    }
    for key in fields {
        parts.push(format!(
            "{}\"{key}\"{}:{}{}",
            r.pick(&ws),
            r.pick(&ws),
            r.pick(&ws),
            typed(r, key)
        ));
    }
    format!("{}{{{}}}{}", r.pick(&ws), parts.join(","), r.pick(&ws))
}

fn damage(r: &mut Rand, line: &str) -> Vec<u8> {
    let mut b = line.as_bytes().to_vec();
    for _ in 0..=r.below(2) {
        if b.is_empty() {
            break;
        }
        let at = r.below(b.len() as u64) as usize;
        match r.below(4) {
            0 => {
                b.remove(at);
            }
            1 => {
                let noise = b"{}[]\",:\\ 0e-.tx\x01\xff";
                b.insert(at, noise[r.below(noise.len() as u64) as usize])
            }
            2 => {
                let noise = b"{}[]\",:\\ 0e-.tnu";
                b[at] = noise[r.below(noise.len() as u64) as usize]
            }
            _ => b.truncate(at),
        }
    }
    b
}

#[test]
fn the_scanner_and_serde_json_agree_on_every_line() {
    let mut r = Rand(0x5eed_1234_abcd_0001);
    let mut fast = JsonDecoder::new(schema());
    let mut reference = JsonDecoder::new(schema());
    let (mut accepted, mut rejected) = (0, 0);
    for _ in 0..60_000 {
        let line = object(&mut r);
        let lines = [line.as_bytes().to_vec(), damage(&mut r, &line)];
        for bytes in lines {
            let a = fast.decode(&bytes);
            let b = reference.decode_serde(&bytes);
            match (&a, &b) {
                (Ok(x), Ok(y)) => {
                    assert_eq!(
                        x,
                        y,
                        "values differ for {}",
                        String::from_utf8_lossy(&bytes)
                    );
                    accepted += 1;
                }
                (Err(_), Err(_)) => rejected += 1,
                // JSON text is UTF-8 (RFC 8259): the scanner rejects any line that is not,
                // where serde_json only checks the strings it keeps.
                (Err(e), Ok(_))
                    if e.starts_with("not valid UTF-8") && std::str::from_utf8(&bytes).is_err() =>
                {
                    rejected += 1
                }
                _ => panic!(
                    "disagree on {:?}:\n scanner: {a:?}\n serde:   {b:?}",
                    String::from_utf8_lossy(&bytes)
                ),
            }
        }
    }
    assert!(
        accepted > 10_000 && rejected > 10_000,
        "accepted {accepted}, rejected {rejected}"
    );
}
