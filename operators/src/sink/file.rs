//! The JSON-lines file sink: epochs appended in sorted order, merged into one order at the end.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{Line, LineWriter};

/// Writes lines to a file as epochs complete; when the run ends, merges the sorted epochs so
/// the whole file is ordered by `(event time, line)`.
///
/// Lines are visible in the file while the job runs. The event time of each line is kept in a
/// sidecar file (`.<name>.weir-ts`, 8 bytes a line) for the final merge, then removed.
pub struct SortedJsonFile {
    path: PathBuf,
    ts_path: PathBuf,
    out: BufWriter<File>,
    ts_out: BufWriter<File>,
    /// `(byte offset, line index)` where each sorted run starts.
    runs: Vec<(u64, u64)>,
    bytes: u64,
    lines: u64,
    last: Option<Line>,
    /// Merged by a run that completed: nothing more may be written.
    sealed: bool,
    /// Leave the merged marker when finished (files that take part in checkpoints).
    mark: bool,
}

/// The event times of the lines, 8 bytes each: `.<name>.weir-ts`.
fn sidecar(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.weir-ts"))
}

/// The marker a checkpointed merge leaves: `.<name>.weir-merged`. Written once the merged file
/// is complete and durable (before it replaces the original), it tells a restored run that the
/// file is final.
fn merged_marker(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.weir-merged"))
}

impl SortedJsonFile {
    /// Creates (truncates) `path`, creating its directory if needed.
    pub fn create(path: &Path) -> Result<Self, String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create directory {}: {e}", dir.display()))?;
        }
        let open =
            |p: &Path| File::create(p).map_err(|e| format!("cannot create {}: {e}", p.display()));
        let file = Self::create_at(path, open(path)?, open(&sidecar(path))?);
        // A fresh file: a marker of an earlier run's merge no longer applies.
        let _ = fs::remove_file(merged_marker(path));
        Ok(file)
    }

    /// Resumes `path` as it stood at a checkpoint ([`LineWriter::position`]): what was
    /// written after it (by a run that then died) is cut off.
    ///
    /// A file the final checkpoint's run already merged (its marker is there) is final: it is
    /// kept as it is (a merge cut short by a crash is finished first), and the restored run may
    /// not add to it.
    pub fn resume(path: &Path, position: &[u8]) -> Result<Self, String> {
        let marker = merged_marker(path);
        if marker.exists() {
            return Self::sealed(path);
        }
        let no_times = fs::metadata(sidecar(path)).map_or(true, |m| m.len() == 0);
        if !path.exists() && no_times {
            // Moved away (the final output of a completed run, see `write_epoch`; a sealed
            // file leaves an empty sidecar), or never there: a new file, with what the
            // restored run writes after its checkpoint.
            tracing::warn!(
                "{} is not there: the restored run writes a new one, holding only what it \
                 writes after the checkpoint it restored",
                path.display()
            );
            return Self::create(path).map(Self::checkpointed);
        }
        let Position {
            runs,
            bytes,
            lines,
            last,
        } = bincode::deserialize(position).map_err(|e| {
            format!(
                "the checkpointed position of {} is damaged: {e}",
                path.display()
            )
        })?;
        let ts_path = sidecar(path);
        let open = |p: &Path, len: u64| -> Result<File, String> {
            let file = fs::OpenOptions::new()
                .write(true)
                .open(p)
                .map_err(|e| format!("cannot resume {}: {e}", p.display()))?;
            let have = file
                .metadata()
                .map_err(|e| format!("{}: {e}", p.display()))?
                .len();
            if have < len {
                return Err(format!(
                    "cannot resume {}: it has {have} bytes, the checkpoint wrote {len}",
                    p.display()
                ));
            }
            file.set_len(len)
                .map_err(|e| format!("cannot truncate {}: {e}", p.display()))?;
            let mut file = file;
            file.seek(SeekFrom::End(0))
                .map_err(|e| format!("{}: {e}", p.display()))?;
            Ok(file)
        };
        Ok(SortedJsonFile {
            out: BufWriter::with_capacity(1 << 20, open(path, bytes)?),
            ts_out: BufWriter::with_capacity(1 << 16, open(&ts_path, lines * 8)?),
            path: path.to_path_buf(),
            ts_path,
            runs,
            bytes,
            lines,
            last,
            sealed: false,
            mark: true,
        })
    }

    /// The final file of a completed run (see [`SortedJsonFile::resume`]).
    fn sealed(path: &Path) -> Result<Self, String> {
        let tmp = path.with_extension("weir-merge");
        if tmp.exists() {
            fs::rename(&tmp, path)
                .map_err(|e| format!("cannot finish merging {}: {e}", path.display()))?;
        }
        let ts_path = sidecar(path);
        let _ = fs::remove_file(&ts_path);
        let open = |p: &Path| {
            fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(p)
                .map_err(|e| format!("cannot resume {}: {e}", p.display()))
        };
        let mut file = Self::create_at(path, open(path)?, open(&ts_path)?);
        file.sealed = true;
        Ok(file)
    }

    fn create_at(path: &Path, out: File, ts_out: File) -> Self {
        SortedJsonFile {
            out: BufWriter::with_capacity(1 << 20, out),
            ts_out: BufWriter::with_capacity(1 << 16, ts_out),
            path: path.to_path_buf(),
            ts_path: sidecar(path),
            runs: vec![(0, 0)],
            bytes: 0,
            lines: 0,
            last: None,
            sealed: false,
            mark: false,
        }
    }

    /// Leaves the merged marker when finished, for a run restored from its final
    /// checkpoint: for files that take part in checkpoints.
    pub fn checkpointed(mut self) -> Self {
        self.mark = true;
        self
    }

    /// Marks the file final (durably).
    fn write_marker(&self) -> Result<(), String> {
        let marker = merged_marker(&self.path);
        File::create(&marker)
            .and_then(|f| f.sync_all())
            .map_err(|e| format!("cannot write {}: {e}", marker.display()))
    }

    fn io(&self, e: std::io::Error) -> String {
        format!("cannot write {}: {e}", self.path.display())
    }

    /// k-way merge of the sorted runs into a new file that replaces the old one.
    fn merge_runs(&mut self) -> Result<(), String> {
        let io = |p: &Path, e: std::io::Error| format!("while merging {}: {e}", p.display());
        let mut ts_all = Vec::with_capacity(self.lines as usize * 8);
        File::open(&self.ts_path)
            .and_then(|mut f| f.read_to_end(&mut ts_all))
            .map_err(|e| io(&self.ts_path, e))?;
        let ts_of = |line: u64| {
            i64::from_le_bytes(
                ts_all[line as usize * 8..line as usize * 8 + 8]
                    .try_into()
                    .expect("8 bytes"),
            )
        };
        struct Run {
            reader: std::io::Take<BufReader<File>>,
            next_line: u64,
            end_line: u64,
        }
        let mut runs = Vec::with_capacity(self.runs.len());
        for (i, &(offset, first)) in self.runs.iter().enumerate() {
            let (end_offset, end_line) = self
                .runs
                .get(i + 1)
                .copied()
                .unwrap_or((self.bytes, self.lines));
            let mut file = File::open(&self.path).map_err(|e| io(&self.path, e))?;
            file.seek(SeekFrom::Start(offset))
                .map_err(|e| io(&self.path, e))?;
            let reader = BufReader::with_capacity(1 << 16, file).take(end_offset - offset);
            runs.push(Run {
                reader,
                next_line: first,
                end_line,
            });
        }
        let tmp = self.path.with_extension("weir-merge");
        let mut out =
            BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(|e| io(&tmp, e))?);
        let mut heap = BinaryHeap::new();
        let read = |run: &mut Run,
                    k: usize,
                    heap: &mut BinaryHeap<Reverse<(i64, String, usize)>>|
         -> Result<(), String> {
            if run.next_line == run.end_line {
                return Ok(());
            }
            let mut line = String::new();
            run.reader
                .read_line(&mut line)
                .map_err(|e| io(&self.path, e))?;
            line.pop();
            heap.push(Reverse((ts_of(run.next_line), line, k)));
            run.next_line += 1;
            Ok(())
        };
        for (k, run) in runs.iter_mut().enumerate() {
            read(run, k, &mut heap)?;
        }
        while let Some(Reverse((_, line, k))) = heap.pop() {
            out.write_all(line.as_bytes())
                .and_then(|()| out.write_all(b"\n"))
                .map_err(|e| io(&tmp, e))?;
            read(&mut runs[k], k, &mut heap)?;
        }
        out.flush().map_err(|e| io(&tmp, e))?;
        out.get_ref().sync_data().map_err(|e| io(&tmp, e))?;
        if self.mark {
            // From here on the merge is as good as done: a restore finishes it.
            self.write_marker()?;
        }
        fs::rename(&tmp, &self.path).map_err(|e| io(&self.path, e))
    }
}

/// What a checkpoint keeps of a [`SortedJsonFile`].
#[derive(serde::Serialize, serde::Deserialize)]
struct Position {
    runs: Vec<(u64, u64)>,
    bytes: u64,
    lines: u64,
    last: Option<Line>,
}

impl LineWriter for SortedJsonFile {
    fn position(&mut self) -> Result<Vec<u8>, String> {
        // Durable before the checkpoint can complete.
        self.out.flush().map_err(|e| self.io(e))?;
        self.ts_out.flush().map_err(|e| self.io(e))?;
        self.out.get_ref().sync_data().map_err(|e| self.io(e))?;
        self.ts_out.get_ref().sync_data().map_err(|e| self.io(e))?;
        let position = Position {
            runs: self.runs.clone(),
            bytes: self.bytes,
            lines: self.lines,
            last: self.last.clone(),
        };
        Ok(bincode::serialize(&position).expect("positions serialise"))
    }

    fn write_epoch(&mut self, lines: &[Line]) -> Result<(), String> {
        let Some(first) = lines.first() else {
            return Ok(());
        };
        if self.sealed {
            return Err(format!(
                "{} is the final output of a run that completed; the restored run has more \
                 to write: move the file away (and its marker {}), and the restored run \
                 writes a new one holding what it writes after its checkpoint",
                self.path.display(),
                merged_marker(&self.path).display()
            ));
        }
        if self.last.as_ref().is_some_and(|last| last > first) {
            self.runs.push((self.bytes, self.lines));
        }
        for (ts, line) in lines {
            self.out
                .write_all(line.as_bytes())
                .map_err(|e| self.io(e))?;
            self.out.write_all(b"\n").map_err(|e| self.io(e))?;
            self.ts_out
                .write_all(&ts.to_le_bytes())
                .map_err(|e| self.io(e))?;
            self.bytes += line.len() as u64 + 1;
        }
        self.lines += lines.len() as u64;
        self.last = lines.last().cloned();
        // Complete epochs are visible to readers of the file.
        self.out.flush().map_err(|e| self.io(e))
    }

    fn finish(&mut self) -> Result<(), String> {
        if self.sealed {
            let _ = fs::remove_file(&self.ts_path);
            return Ok(());
        }
        self.out.flush().map_err(|e| self.io(e))?;
        self.ts_out.flush().map_err(|e| self.io(e))?;
        if self.runs.len() > 1 {
            self.merge_runs()?;
        } else if self.mark {
            self.out.get_ref().sync_data().map_err(|e| self.io(e))?;
            self.write_marker()?;
        }
        fs::remove_file(&self.ts_path)
            .map_err(|e| format!("cannot remove {}: {e}", self.ts_path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unordered_epochs_are_merged_into_one_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.jsonl");
        let mut sink = SortedJsonFile::create(&path).unwrap();
        let epoch = |v: &[(i64, &str)]| {
            v.iter()
                .map(|(t, s)| (*t, s.to_string()))
                .collect::<Vec<_>>()
        };
        sink.write_epoch(&epoch(&[(5, "e"), (9, "i")])).unwrap();
        sink.write_epoch(&epoch(&[(1, "a"), (7, "g")])).unwrap();
        sink.write_epoch(&epoch(&[])).unwrap();
        sink.write_epoch(&epoch(&[(7, "f"), (10, "j")])).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "e\ni\na\ng\nf\nj\n",
            "visible while running"
        );
        sink.finish().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "a\ne\nf\ng\ni\nj\n");
        let left: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            vec!["out.jsonl"],
            "no sidecar or temporary file remains"
        );
    }

    #[test]
    fn a_resumed_file_drops_what_came_after_its_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let lines = |v: &[(i64, &str)]| {
            v.iter()
                .map(|(t, s)| (*t, s.to_string()))
                .collect::<Vec<_>>()
        };
        let mut sink = SortedJsonFile::create(&path).unwrap();
        sink.write_epoch(&lines(&[(5, "e")])).unwrap();
        let position = sink.position().unwrap();
        sink.write_epoch(&lines(&[(1, "lost")])).unwrap();
        drop(sink); // the process died
        let mut sink = SortedJsonFile::resume(&path, &position).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "e\n");
        sink.write_epoch(&lines(&[(1, "a"), (9, "i")])).unwrap();
        sink.finish().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "a\ne\ni\n");
    }

    #[test]
    fn a_completed_file_moved_away_is_written_anew_by_a_restored_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let mut sink = SortedJsonFile::create(&path).unwrap().checkpointed();
        sink.write_epoch(&[(5, "e".to_string())]).unwrap();
        let position = sink.position().unwrap();
        sink.write_epoch(&[(7, "g".to_string())]).unwrap();
        sink.finish().unwrap();
        // Restored over the completed file: it is final.
        let mut sealed = SortedJsonFile::resume(&path, &position).unwrap();
        let err = sealed.write_epoch(&[(7, "g".to_string())]).unwrap_err();
        assert!(err.contains("move the file away"), "{err}");
        drop(sealed);
        fs::rename(&path, dir.path().join("first.jsonl")).unwrap();
        fs::remove_file(merged_marker(&path)).unwrap();
        let mut sink = SortedJsonFile::resume(&path, &position).unwrap();
        sink.write_epoch(&[(7, "g".to_string())]).unwrap();
        sink.finish().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "g\n");
    }

    #[test]
    fn a_file_whose_sidecar_remains_cannot_be_resumed_without_its_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let mut sink = SortedJsonFile::create(&path).unwrap();
        sink.write_epoch(&[(5, "e".to_string())]).unwrap();
        let position = sink.position().unwrap();
        drop(sink); // the process died, and the file went
        fs::remove_file(&path).unwrap();
        let err = SortedJsonFile::resume(&path, &position).err().unwrap();
        assert!(
            err.contains("cannot resume") && err.contains("out.jsonl"),
            "{err}"
        );
    }

    #[test]
    fn an_unwritable_path_is_a_clear_error() {
        let err = SortedJsonFile::create(Path::new("/proc/weir/out.jsonl"))
            .err()
            .unwrap();
        assert!(err.contains("/proc/weir"), "{err}");
    }
}
