//! JSON-lines files: one or several paths or globs, split into byte ranges read in parallel.
//!
//! Splits are fixed-size byte ranges (not one per worker), so the partitions — and with them
//! the watermarks and lateness — are the same whatever the number of workers. A split owns the
//! lines that *start* inside it: it skips the partial line at its start and reads past its end
//! to finish its last line.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use weir_engine::data::{JsonDecoder, SchemaRef};

use super::{Emitter, PartitionReader, ReadStatus};

/// A byte range of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSplit {
    /// The file.
    pub path: PathBuf,
    /// First byte (inclusive).
    pub start: u64,
    /// Last byte (exclusive): lines starting before it belong to this split.
    pub end: u64,
}

/// Expands paths and globs (sorted, deduplicated) and cuts every file into splits of at most
/// `split_size` bytes.
pub fn plan_splits(patterns: &[String], split_size: u64) -> Result<Vec<FileSplit>, String> {
    let split_size = split_size.max(1);
    let mut files: Vec<PathBuf> = Vec::new();
    for pattern in patterns {
        if pattern.contains(['*', '?', '[']) {
            let matches = glob::glob(pattern).map_err(|e| format!("bad glob `{pattern}`: {e}"))?;
            let mut found: Vec<PathBuf> = matches
                .filter_map(Result::ok)
                .filter(|p| p.is_file())
                .collect();
            if found.is_empty() {
                return Err(format!("no file matches `{pattern}`"));
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(PathBuf::from(pattern));
        }
    }
    files.dedup();
    let mut splits = Vec::new();
    for path in files {
        let len = std::fs::metadata(&path)
            .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?
            .len();
        let mut start = 0;
        while start < len {
            let end = (start + split_size).min(len);
            splits.push(FileSplit {
                path: path.clone(),
                start,
                end,
            });
            start = end;
        }
    }
    Ok(splits)
}

/// Reads the JSON lines of one split.
pub struct JsonLinesReader {
    split: FileSplit,
    location: String,
    decoder: JsonDecoder,
    ts_column: usize,
    file: Option<File>,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_offset: u64,
    cursor: usize,
    filled: usize,
    eof: bool,
    skip_partial: bool,
}

const BUFFER: usize = 1 << 20;

impl JsonLinesReader {
    /// Reads Debezium change events (see [`JsonDecoder::debezium`]).
    pub fn debezium(mut self) -> Self {
        self.decoder = self.decoder.debezium();
        self
    }

    /// A reader of `split` decoding into `schema`, with event time in column `ts_column`
    /// (a required int or timestamp column).
    pub fn new(split: FileSplit, schema: SchemaRef, ts_column: usize) -> Self {
        let location = format!("{}[{}..{}]", split.path.display(), split.start, split.end);
        JsonLinesReader {
            location,
            decoder: JsonDecoder::new(schema),
            ts_column,
            file: None,
            buf: Vec::new(),
            buf_offset: 0,
            cursor: 0,
            filled: 0,
            eof: false,
            skip_partial: split.start > 0,
            split,
        }
    }

    fn open(&mut self) -> Result<(), String> {
        let mut file = File::open(&self.split.path).map_err(|e| format!("cannot open: {e}"))?;
        // Start one byte early: if that byte ends a line, the split starts on a line.
        let from = self.split.start.saturating_sub(1);
        file.seek(SeekFrom::Start(from))
            .map_err(|e| format!("cannot seek to {from}: {e}"))?;
        self.buf_offset = from;
        self.buf = vec![0; BUFFER];
        self.file = Some(file);
        Ok(())
    }

    /// Reads more bytes, keeping the unread tail; false at the end of the file.
    fn refill(&mut self) -> Result<bool, String> {
        self.buf.copy_within(self.cursor..self.filled, 0);
        self.buf_offset += self.cursor as u64;
        self.filled -= self.cursor;
        self.cursor = 0;
        if self.filled == self.buf.len() {
            let grown = self.buf.len() * 2;
            self.buf.resize(grown, 0);
        }
        let file = self.file.as_mut().expect("opened");
        let n = file
            .read(&mut self.buf[self.filled..])
            .map_err(|e| format!("read failed: {e}"))?;
        self.filled += n;
        if n == 0 {
            self.eof = true;
        }
        Ok(n > 0)
    }

    fn line(&mut self, start: usize, end: usize, out: &mut Emitter<'_>) {
        let mut line = &self.buf[start..end];
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let offset = self.buf_offset + start as u64;
        let decoded = self.decoder.decode(line);
        let name = &self.decoder.schema().field(self.ts_column).name;
        out.decoded(decoded, self.ts_column, name, offset as i64, line);
    }
}

impl PartitionReader for JsonLinesReader {
    fn location(&self) -> &str {
        &self.location
    }

    fn position(&self) -> Option<Vec<u8>> {
        // The byte offset of the next line, or where the split starts before the first read.
        let next = if self.file.is_some() && !self.skip_partial {
            self.buf_offset + self.cursor as u64
        } else {
            self.split.start
        };
        Some(next.to_le_bytes().to_vec())
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), String> {
        let at = position
            .try_into()
            .map(u64::from_le_bytes)
            .map_err(|_| "a file position is 8 bytes".to_string())?;
        if at < self.split.start || at > self.split.end.max(self.split.start) + (1 << 40) {
            return Err(format!("position {at} is outside the split"));
        }
        if at == self.split.start {
            return Ok(()); // nothing read yet
        }
        // `at` starts a line (a checkpoint is taken between lines).
        let mut file = File::open(&self.split.path).map_err(|e| format!("cannot open: {e}"))?;
        file.seek(SeekFrom::Start(at))
            .map_err(|e| format!("cannot seek to {at}: {e}"))?;
        self.buf_offset = at;
        self.buf = vec![0; BUFFER];
        self.cursor = 0;
        self.filled = 0;
        self.eof = false;
        self.skip_partial = false;
        self.file = Some(file);
        Ok(())
    }

    fn read(&mut self, max: usize, out: &mut Emitter<'_>) -> Result<ReadStatus, String> {
        if self.file.is_none() {
            if self.split.start >= self.split.end {
                return Ok(ReadStatus::Done);
            }
            self.open()?;
        }
        let mut lines = 0;
        loop {
            if self.skip_partial {
                match memchr::memchr(b'\n', &self.buf[self.cursor..self.filled]) {
                    Some(at) => {
                        self.cursor += at + 1;
                        self.skip_partial = false;
                    }
                    None if self.eof => return Ok(ReadStatus::Done),
                    None => {
                        self.cursor = self.filled;
                        self.refill()?;
                        continue;
                    }
                }
            }
            if self.buf_offset + self.cursor as u64 >= self.split.end {
                return Ok(ReadStatus::Done);
            }
            match memchr::memchr(b'\n', &self.buf[self.cursor..self.filled]) {
                Some(at) => {
                    let start = self.cursor;
                    self.cursor += at + 1;
                    self.line(start, start + at, out);
                    lines += 1;
                    if lines >= max {
                        return Ok(ReadStatus::More);
                    }
                }
                None if self.eof => {
                    // A last line without a newline.
                    if self.cursor < self.filled {
                        let (start, end) = (self.cursor, self.filled);
                        self.cursor = self.filled;
                        self.line(start, end, out);
                    }
                    return Ok(ReadStatus::Done);
                }
                None => {
                    self.refill()?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;

    use weir_engine::data::{DataType, Field, Schema};
    use weir_engine::event::Event;
    use weir_engine::watermark::PartitionWatermark;

    use super::super::BadInput;
    use super::*;

    fn read_all(split: FileSplit, schema: SchemaRef) -> (Vec<Event>, Vec<BadInput>) {
        let mut reader = JsonLinesReader::new(split, schema, 1);
        let (mut wm, mut events, mut bad) = (PartitionWatermark::new(0), Vec::new(), Vec::new());
        loop {
            let mut out = Emitter {
                watermark: &mut wm,
                events: &mut events,
                bad: &mut bad,
            };
            if reader.read(3, &mut out).unwrap() == ReadStatus::Done {
                return (events, bad);
            }
        }
    }

    #[test]
    fn every_line_is_read_by_exactly_one_split_whatever_the_split_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        let mut f = File::create(&path).unwrap();
        let mut expected = Vec::new();
        for i in 0..200 {
            // Lines of varying length, CRLF and blank lines mixed in, no final newline.
            let pad = "x".repeat(i % 17);
            write!(f, "{{\"id\":\"{pad}{i}\",\"ts\":{i}}}").unwrap();
            if i % 7 == 0 {
                write!(f, "\r").unwrap();
            }
            if i < 199 {
                writeln!(f).unwrap();
            }
            if i % 11 == 0 && i < 199 {
                writeln!(f, "   ").unwrap();
            }
            expected.push(i as i64);
        }
        drop(f);
        let schema = Arc::new(
            Schema::new(vec![
                Field::new("id", DataType::String),
                Field::required("ts", DataType::Int),
            ])
            .unwrap(),
        );
        for split_size in [1, 2, 5, 64, 333, 100_000] {
            let splits = plan_splits(&[path.display().to_string()], split_size).unwrap();
            let mut seen: Vec<i64> = splits
                .into_iter()
                .flat_map(|s| read_all(s, schema.clone()).0)
                .map(|e| e.ts)
                .collect();
            seen.sort();
            assert_eq!(seen, expected, "split size {split_size}");
        }
    }

    #[test]
    fn bad_lines_carry_their_byte_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(
            &path,
            "{\"id\":\"a\",\"ts\":1}\nnot json\n{\"id\":\"c\",\"ts\":\"x\"}\n{\"ts\":-9223372036854775808}\n",
        )
        .unwrap();
        let schema = Arc::new(
            Schema::new(vec![
                Field::new("id", DataType::String),
                Field::required("ts", DataType::Int),
            ])
            .unwrap(),
        );
        let split = plan_splits(&[path.display().to_string()], 1 << 20)
            .unwrap()
            .remove(0);
        let (events, bad) = read_all(split, schema);
        assert_eq!(events.len(), 1);
        assert_eq!(
            bad.iter().map(|b| b.offset).collect::<Vec<_>>(),
            vec![18, 27, 47]
        );
        assert_eq!(bad[0].raw, b"not json");
        assert!(
            bad[1].error.contains("field `ts`: expected int"),
            "{}",
            bad[1].error
        );
        assert!(
            bad[2].error.contains("outside years 1 to 9999"),
            "{}",
            bad[2].error
        );
    }

    #[test]
    fn missing_files_and_empty_globs_are_named() {
        let err = plan_splits(&["/nonexistent/x.jsonl".into()], 10).unwrap_err();
        assert!(err.contains("/nonexistent/x.jsonl"), "{err}");
        let err = plan_splits(&["/nonexistent/*.jsonl".into()], 10).unwrap_err();
        assert!(
            err.contains("no file matches `/nonexistent/*.jsonl`"),
            "{err}"
        );
    }
}
