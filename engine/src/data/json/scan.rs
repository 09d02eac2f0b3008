//! A schema-driven JSON object scanner: one pass over the line, straight into row slots.
//!
//! The line is checked to be UTF-8 once; strings without escapes are borrowed as they are (no
//! per-string re-validation), known fields are matched by a positional hint first, unknown
//! fields are skipped structurally, and numbers are parsed by `std`'s correctly rounded
//! parser only for the columns that need them. Full JSON syntax is checked: what
//! `serde_json` rejects, this rejects (a differential test holds them to it) — and one thing
//! more: a line that is not UTF-8 anywhere, even inside a field that would be skipped, is
//! malformed (JSON text is UTF-8, RFC 8259).

use std::borrow::Cow;

use super::super::bytes_eq;
use super::super::row::RowBuilder;
use super::super::schema::{DataType, Field, Schema};
use super::super::time::parse_rfc3339;

/// Nesting allowed inside skipped values.
const MAX_DEPTH: usize = 128;

/// The position (from `from`) of the first byte that ends a plain run of string content: `"`,
/// `\\` or a control character. Eight bytes at a time (SWAR), then byte by byte.
#[inline]
fn string_stop(b: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = from;
    while i + 8 <= b.len() {
        let v = u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let quote = v ^ (ONES * b'"' as u64);
        let slash = v ^ (ONES * b'\\' as u64);
        // A byte is flagged when it is zero (the match) or below 0x20 (a control character).
        let hit = (quote.wrapping_sub(ONES) & !quote)
            | (slash.wrapping_sub(ONES) & !slash)
            | (v.wrapping_sub(ONES * 0x20) & !v);
        let hit = hit & HIGH;
        if hit != 0 {
            return Some(i + (hit.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|p| i + p)
}

/// A field name as it appears in JSON followed by `":` (`user_id":`), when its JSON
/// spelling is its bytes (no `"`, `\\` or control characters); matched without parsing.
#[derive(Clone, Debug)]
pub(super) struct KeyPattern(Option<Vec<u8>>);

impl KeyPattern {
    pub(super) fn of(name: &str) -> Self {
        let plain = !name.bytes().any(|c| c == b'"' || c == b'\\' || c < 0x20);
        KeyPattern(plain.then(|| [name.as_bytes(), b"\":"].concat()))
    }
}

pub(super) struct Scan<'a> {
    text: &'a str,
    b: &'a [u8],
    pos: usize,
}

type Result<T> = std::result::Result<T, String>;

impl<'a> Scan<'a> {
    pub(super) fn new(line: &'a [u8]) -> Result<Self> {
        let text = std::str::from_utf8(line).map_err(|e| format!("not valid UTF-8: {e}"))?;
        Ok(Scan {
            text,
            b: line,
            pos: 0,
        })
    }

    fn err(&self, what: impl std::fmt::Display) -> String {
        format!("{what} at column {}", self.pos + 1)
    }

    #[inline(always)]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.pos) {
            self.pos += 1;
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn eof(&self, what: &str) -> String {
        self.err(format!("EOF while parsing {what}"))
    }

    /// Reads a string starting at `"`.
    #[inline(always)]
    fn string(&mut self) -> Result<Cow<'a, str>> {
        debug_assert_eq!(self.peek(), Some(b'"'));
        self.pos += 1;
        let start = self.pos;
        let mut owned: Option<String> = None;
        let mut segment = start;
        loop {
            let Some(end) = string_stop(self.b, self.pos) else {
                self.pos = self.b.len();
                return Err(self.eof("a string"));
            };
            self.pos = end;
            match self.b[end] {
                b'"' => {
                    self.pos = end + 1;
                    return Ok(match owned {
                        None => Cow::Borrowed(&self.text[start..end]),
                        Some(mut s) => {
                            s.push_str(&self.text[segment..end]);
                            Cow::Owned(s)
                        }
                    });
                }
                b'\\' => {
                    let s = owned.get_or_insert_with(String::new);
                    s.push_str(&self.text[segment..end]);
                    self.pos = end + 1;
                    let escaped = self.escape()?;
                    owned.as_mut().expect("set above").push(escaped);
                    segment = self.pos;
                }
                _ => {
                    return Err(self
                        .err("control character (\\u0000-\\u001F) found while parsing a string"))
                }
            }
        }
    }

    /// Skips a string starting at `"` without building it: escapes are checked for syntax
    /// only (a lone surrogate in a field nobody reads is tolerated, as serde_json does).
    fn skip_string(&mut self) -> Result<()> {
        self.pos += 1;
        loop {
            let Some(end) = string_stop(self.b, self.pos) else {
                self.pos = self.b.len();
                return Err(self.eof("a string"));
            };
            self.pos = end + 1;
            match self.b[end] {
                b'"' => return Ok(()),
                b'\\' => match self.peek() {
                    None => return Err(self.eof("a string")),
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.pos += 1,
                    Some(b'u') => {
                        self.pos += 1;
                        self.hex4()?;
                    }
                    Some(_) => return Err(self.err("invalid escape")),
                },
                _ => {
                    self.pos = end;
                    return Err(self
                        .err("control character (\\u0000-\\u001F) found while parsing a string"));
                }
            }
        }
    }

    /// Reads one escape after a backslash.
    fn escape(&mut self) -> Result<char> {
        let Some(c) = self.peek() else {
            return Err(self.eof("a string"));
        };
        self.pos += 1;
        Ok(match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let first = self.hex4()?;
                if (0xD800..0xDC00).contains(&first) {
                    // A high surrogate must be followed by an escaped low surrogate.
                    if self.b.get(self.pos..self.pos + 2) != Some(b"\\u") {
                        return Err(self.err("lone leading surrogate in hex escape"));
                    }
                    self.pos += 2;
                    let second = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&second) {
                        return Err(self.err("invalid unicode code point"));
                    }
                    let code = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                    char::from_u32(code).ok_or_else(|| self.err("invalid unicode code point"))?
                } else if (0xDC00..0xE000).contains(&first) {
                    return Err(self.err("lone trailing surrogate in hex escape"));
                } else {
                    char::from_u32(first).ok_or_else(|| self.err("invalid unicode code point"))?
                }
            }
            _ => {
                self.pos -= 1;
                return Err(self.err("invalid escape"));
            }
        })
    }

    fn hex4(&mut self) -> Result<u32> {
        let Some(digits) = self.b.get(self.pos..self.pos + 4) else {
            self.pos = self.b.len();
            return Err(self.eof("a string"));
        };
        let mut v = 0u32;
        for &d in digits {
            let n = (d as char)
                .to_digit(16)
                .ok_or_else(|| self.err("invalid escape"))?;
            v = v * 16 + n;
        }
        self.pos += 4;
        Ok(v)
    }

    /// Reads a number; returns its text and whether it has a fraction or exponent.
    fn number(&mut self) -> Result<(&'a str, bool)> {
        let start = self.pos;
        let digits = |s: &mut Self| {
            let from = s.pos;
            while s.peek().is_some_and(|c| c.is_ascii_digit()) {
                s.pos += 1;
            }
            s.pos - from
        };
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    return Err(self.err("invalid number: leading zero"));
                }
            }
            Some(b'1'..=b'9') => {
                digits(self);
            }
            None => return Err(self.eof("a value")),
            _ => return Err(self.err("invalid number")),
        }
        let mut float = false;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            float = true;
            if digits(self) == 0 {
                return Err(match self.peek() {
                    None => self.eof("a value"),
                    _ => self.err("invalid number"),
                });
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            float = true;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if digits(self) == 0 {
                return Err(match self.peek() {
                    None => self.eof("a value"),
                    _ => self.err("invalid number"),
                });
            }
        }
        Ok((&self.text[start..self.pos], float))
    }

    fn literal(&mut self, word: &'static str) -> Result<()> {
        match self.b.get(self.pos..self.pos + word.len()) {
            Some(w) if w == word.as_bytes() => {
                self.pos += word.len();
                Ok(())
            }
            _ if self.b.len() - self.pos < word.len()
                && word.as_bytes().starts_with(&self.b[self.pos..]) =>
            {
                self.pos = self.b.len();
                Err(self.eof("a value"))
            }
            _ => Err(self.err("expected value")),
        }
    }

    /// Skips any value (an unknown field).
    fn skip(&mut self, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(self.err("recursion limit exceeded"));
        }
        match self.peek() {
            Some(b'"') => self.skip_string(),
            Some(b'-' | b'0'..=b'9') => self.number().map(drop),
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            Some(open @ (b'{' | b'[')) => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.pos += 1;
                self.ws();
                if self.peek() == Some(close) {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    if open == b'{' {
                        match self.peek() {
                            Some(b'"') => self.skip_string()?,
                            None => return Err(self.eof("an object")),
                            _ => return Err(self.err("key must be a string")),
                        }
                        self.colon()?;
                    }
                    self.ws();
                    self.skip(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(c) if c == close => {
                            self.pos += 1;
                            return Ok(());
                        }
                        None => {
                            return Err(self.eof(if open == b'{' { "an object" } else { "a list" }))
                        }
                        _ => {
                            return Err(self.err(if open == b'{' {
                                "expected `,` or `}`"
                            } else {
                                "expected `,` or `]`"
                            }))
                        }
                    }
                }
            }
            None => Err(self.eof("a value")),
            _ => Err(self.err("expected value")),
        }
    }

    fn colon(&mut self) -> Result<()> {
        self.ws();
        match self.peek() {
            Some(b':') => {
                self.pos += 1;
                Ok(())
            }
            None => Err(self.eof("an object")),
            _ => Err(self.err("expected `:`")),
        }
    }

    /// Reads the value of `field` into column `i`.
    fn column(&mut self, field: &Field, i: usize, out: &mut RowBuilder) -> Result<()> {
        let mismatch = |got: String| {
            format!(
                "field `{}`: expected {}, got {got}",
                field.name, field.dtype
            )
        };
        match self.peek() {
            Some(b'"') => {
                let s = self.string()?;
                match field.dtype {
                    DataType::String => out.set_str(i, &s),
                    DataType::Timestamp => match parse_rfc3339(&s) {
                        Ok(ms) => out.set_ts(i, ms),
                        Err(e) => return Err(format!("field `{}`: {e}", field.name)),
                    },
                    _ => return Err(mismatch(format!("string {s:?}"))),
                }
            }
            Some(b'-' | b'0'..=b'9') => {
                let (text, float) = self.number()?;
                match field.dtype {
                    DataType::Float => match text.parse::<f64>() {
                        // std reads overflowing literals as infinity; JSON has no infinity.
                        Ok(f) if f.is_finite() => out.set_float(i, f),
                        _ => {
                            return Err(
                                self.err(format!("field `{}`: number out of range", field.name))
                            )
                        }
                    },
                    DataType::Int | DataType::Timestamp => {
                        let v = if float {
                            // Integral values written with a fraction (`3.0`) are accepted.
                            match text.parse::<f64>() {
                                Ok(f) if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 => {
                                    f as i64
                                }
                                _ => return Err(mismatch(format!("number {text}"))),
                            }
                        } else {
                            text.parse::<i64>().map_err(|_| {
                                mismatch(format!("{text}, which does not fit in 64 bits"))
                            })?
                        };
                        if field.dtype == DataType::Int {
                            out.set_int(i, v)
                        } else {
                            out.set_ts(i, v)
                        }
                    }
                    _ => return Err(mismatch(format!("number {text}"))),
                }
            }
            Some(c @ (b't' | b'f')) => {
                let v = c == b't';
                self.literal(if v { "true" } else { "false" })?;
                match field.dtype {
                    DataType::Bool => out.set_bool(i, v),
                    _ => return Err(mismatch(format!("boolean {v}"))),
                }
            }
            Some(b'n') => {
                self.literal("null")?;
                out.set_null(i);
            }
            Some(b'{') => {
                self.skip(0)?;
                return Err(mismatch("an object".into()));
            }
            Some(b'[') => {
                self.skip(0)?;
                return Err(mismatch("an array".into()));
            }
            None => return Err(self.eof("a value")),
            _ => return Err(self.err("expected value")),
        }
        Ok(())
    }

    /// Producers usually write fields in schema order: when the key at `"` is exactly field
    /// `hint`'s name, consume it (and the colon right after it, when there is no space)
    /// without parsing a string. Returns the column, and whether the colon was consumed.
    #[inline]
    fn expected_key(&mut self, keys: &[KeyPattern], hint: usize) -> Option<(usize, bool)> {
        let pattern = keys.get(hint)?.0.as_deref()?;
        let at = self.pos + 1;
        let rest = self.b.get(at..)?;
        if rest.len() >= pattern.len() && bytes_eq(&rest[..pattern.len()], pattern) {
            self.pos = at + pattern.len();
            return Some((hint, true));
        }
        // `"name"` followed by whitespace before the colon.
        let name = &pattern[..pattern.len() - 2];
        if rest.len() > name.len()
            && bytes_eq(&rest[..name.len()], name)
            && rest[name.len()] == b'"'
        {
            self.pos = at + name.len() + 1;
            return Some((hint, false));
        }
        None
    }

    /// Reads one JSON object into `out`, matching keys to `schema`'s columns.
    pub(super) fn object(
        &mut self,
        schema: &Schema,
        keys: &[KeyPattern],
        out: &mut RowBuilder,
    ) -> Result<()> {
        self.ws();
        match self.peek() {
            Some(b'{') => self.pos += 1,
            None => return Err(self.eof("a value")),
            Some(b'[') => return Err(self.err("expected a JSON object, got an array")),
            Some(_) => {
                // Tell a value that is not an object from text that is not JSON at all.
                let before = self.pos;
                return Err(match self.skip(0) {
                    Ok(()) => {
                        self.pos = before;
                        self.err("expected a JSON object")
                    }
                    Err(e) => e,
                });
            }
        }
        let fields = schema.fields();
        let mut hint = 0usize;
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
        } else {
            loop {
                self.ws();
                let (column, colon) = match self.peek() {
                    Some(b'"') => match self.expected_key(keys, hint) {
                        Some((i, colon)) => (Some(i), colon),
                        None => {
                            let key = self.string()?;
                            (schema.index_of(&key), false)
                        }
                    },
                    None => return Err(self.eof("an object")),
                    _ => return Err(self.err("key must be a string")),
                };
                if !colon {
                    self.colon()?;
                }
                self.ws();
                match column {
                    Some(i) => {
                        self.column(&fields[i], i, out)?;
                        hint = i + 1;
                    }
                    None => self.skip(0)?,
                }
                self.ws();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b'}') => {
                        self.pos += 1;
                        break;
                    }
                    None => return Err(self.eof("an object")),
                    _ => return Err(self.err("expected `,` or `}`")),
                }
            }
        }
        self.ws();
        if self.pos < self.b.len() {
            return Err(self.err("trailing characters"));
        }
        Ok(())
    }
}
