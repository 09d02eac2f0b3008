//! Durable checkpoints: their layout in a [`Store`], the manifest that completes them, and
//! finding the one to restore from.
//!
//! ```text
//! <job>/chk-<epoch>/state/<operator>/w<worker>   where the key groups one worker holds are
//! <job>/shared/<operator>/e<epoch>-w<worker>-<run>  key groups' parts (full or changes),
//!                                                 shared by the checkpoints that use them
//! <job>/chk-<epoch>/sources/<source>/w<worker>   source positions read by one worker
//! <job>/chk-<epoch>/sinks/<sink>                 a file sink's position
//! <job>/chk-<epoch>/sinks/<sink>/w<worker>       a two-phase sink's uncommitted batches
//! <job>/chk-<epoch>/done/<participant>@w<worker> "this participant wrote all it had"
//! <job>/chk-<epoch>/_MANIFEST                    written last: the checkpoint is complete
//! ```
//!
//! Every data file is framed: an 8-byte xxh3 of the payload, then the payload, so a damaged
//! file is an error naming it, never wrong state. The manifest lists every file with its size;
//! a checkpoint without a manifest, or whose files do not match it, is skipped (with a log
//! line) in favour of the one before. Files outside the checkpoint's directory that it uses
//! (state parts in `shared/`) are listed in the manifest too, and kept while any retained
//! checkpoint lists them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::event::Epoch;
use crate::state::CheckpointSchedule;
use crate::store::{Store, StoreError};

mod durable;
mod restore;
pub use durable::DurableBackend;
pub use restore::Restore;

const MANIFEST: &str = "_MANIFEST";
/// The savepoint that ends a stopped run, in its stop directory.
const SAVEPOINT: &str = "_SAVEPOINT";

/// How far after a run's first epoch its final checkpoint lies.
const FINAL_OFFSET: Epoch = 1 << 40;

/// What completes a checkpoint: written after every participant on every worker is done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The job's name.
    pub job: String,
    /// The checkpoint epoch.
    pub epoch: Epoch,
    /// Wall-clock time it completed, ms since the Unix epoch.
    pub completed_ms: u64,
    /// Workers of the run that took it.
    pub workers: usize,
    /// Every file of the checkpoint (relative to its directory) and its size.
    pub files: BTreeMap<String, u64>,
    /// A savepoint's name (kept until deleted, not subject to retention).
    #[serde(default)]
    pub savepoint: Option<String>,
    /// The lineage of runs the checkpoint belongs to (see [`Checkpoints::with_generation`]).
    #[serde(default)]
    pub generation: u64,
    /// Files outside the checkpoint's directory that it uses (relative to the job's
    /// directory: state parts written by this or earlier checkpoints) and their sizes.
    #[serde(default)]
    pub shared: BTreeMap<String, u64>,
}

impl Manifest {
    /// Bytes this checkpoint wrote: its own files and the shared files written for it.
    pub fn written_bytes(&self) -> u64 {
        let own: u64 = self.files.values().sum();
        let shared: u64 = self
            .shared
            .iter()
            .filter(|(f, _)| names::shared_epoch(f) == Some(self.epoch))
            .map(|(_, s)| s)
            .sum();
        own + shared
    }

    /// Bytes a restore from it reads (and more: the markers and the manifest aside).
    pub fn total_bytes(&self) -> u64 {
        self.files.values().sum::<u64>() + self.shared.values().sum::<u64>()
    }
}

/// A participant in checkpoints: an operator, source or sink that writes something at every
/// checkpoint epoch and marks itself done.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Participant {
    /// Unique in the job (`step.x`, `source.y`, `sink.z`).
    pub name: String,
    /// True when it runs on every worker; false for one on worker 0 only.
    pub every_worker: bool,
}

/// The names of participants and of their files in a checkpoint, in one place: whoever
/// writes a file and whoever reads it back agree by construction.
pub mod names {
    /// The participant of keyed step `step`.
    pub fn step(step: &str) -> String {
        format!("step.{step}")
    }

    /// The participant of source `source`.
    pub fn source(source: &str) -> String {
        format!("source.{source}")
    }

    /// The participant of sink `sink`.
    pub fn sink(sink: &str) -> String {
        format!("sink.{sink}")
    }

    /// The files of `step`'s state (one per worker that held some).
    pub fn state_dir(step: &str) -> String {
        format!("state/{step}/")
    }

    /// The state of `step` held by `worker`: every key group it owns, in one file.
    pub fn state_file(step: &str, worker: usize) -> String {
        format!("{}w{worker:05}", state_dir(step))
    }

    /// The files of source `source` (one per worker that read it).
    pub fn source_dir(source: &str) -> String {
        format!("sources/{source}/")
    }

    /// The positions of source `source` read by `worker`.
    pub fn source_file(source: &str, worker: usize) -> String {
        format!("{}w{worker:05}", source_dir(source))
    }

    /// The position of the sink whose participant is `participant`.
    pub fn sink_file(participant: &str) -> String {
        format!("sinks/{participant}")
    }

    /// Where every shared file of a job is (relative to the job's directory).
    pub const SHARED: &str = "shared";

    /// A shared file of `step`'s state written by `worker` for checkpoint `epoch` in the run
    /// `run` (unique per process: a run that restarts never overwrites a file an earlier
    /// attempt wrote for the same epoch).
    pub fn shared_state_file(step: &str, epoch: super::Epoch, worker: usize, run: u64) -> String {
        format!("{SHARED}/{step}/e{epoch:020}-w{worker:05}-{run:016x}")
    }

    /// The checkpoint epoch a shared file was written for.
    pub fn shared_epoch(path: &str) -> Option<super::Epoch> {
        let name = path.rsplit('/').next()?;
        name.strip_prefix('e')?.split('-').next()?.parse().ok()
    }
}

/// One run's part in a job's checkpoints: what every participant (source, step, sink) needs.
#[derive(Clone, Debug)]
pub struct CheckpointRun {
    /// Where checkpoints go.
    pub checkpoints: Checkpoints,
    /// Which epochs are checkpoint epochs.
    pub schedule: CheckpointSchedule,
    /// The checkpoint the run resumes from.
    pub restore: Option<Restore>,
    /// The run's first epoch: after the restored checkpoint and every other one in the store,
    /// so that a run never writes into the directory of an earlier attempt.
    pub first_epoch: Epoch,
    /// Which checkpoints are known complete, shared by every participant of the process.
    pub completion: Arc<Completion>,
}

/// The newest checkpoint of a run known to be complete. The process that completes
/// checkpoints records them here; other processes look for the manifest in the store, at
/// most every [`Completion::LOOK_EVERY`].
#[derive(Debug, Default)]
pub struct Completion {
    /// One past the newest complete checkpoint epoch (0: none yet).
    newest: AtomicU64,
    last_look: Mutex<Option<Instant>>,
    /// Per two-phase sink instance of the process (participant, worker): every batch up to
    /// this epoch is committed.
    committed: Mutex<std::collections::HashMap<(String, usize), Epoch>>,
}

impl Completion {
    /// How often the store is asked.
    pub const LOOK_EVERY: Duration = Duration::from_millis(50);

    fn known(&self, epoch: Epoch) -> bool {
        self.newest.load(Ordering::Acquire) > epoch
    }

    /// Records that checkpoint `epoch` is complete.
    pub fn completed(&self, epoch: Epoch) {
        self.newest.fetch_max(epoch + 1, Ordering::AcqRel);
    }

    /// Records that sink `participant` on `worker` has committed every batch up to `epoch`
    /// (a sink registers with 0 when it is built).
    pub fn committed_through(&self, participant: &str, worker: usize, epoch: Epoch) {
        let mut committed = self.committed.lock().expect("completion lock");
        let e = committed
            .entry((participant.to_string(), worker))
            .or_default();
        *e = (*e).max(epoch);
    }

    /// Whether every two-phase sink of this process has committed every batch up to `epoch`.
    pub fn all_committed_through(&self, epoch: Epoch) -> bool {
        let committed = self.committed.lock().expect("completion lock");
        committed.values().all(|e| *e >= epoch)
    }
}

impl CheckpointRun {
    /// The first checkpoint epoch at or after `epoch`.
    pub fn next_at_or_after(&self, epoch: Epoch) -> Option<Epoch> {
        self.schedule.next_at_or_after(epoch)
    }

    /// The run's final checkpoint: every participant writes what it leaves behind once its
    /// input has ended, and the run completes it when everything is done. Far after any epoch
    /// the run reaches by ticking (2^40 ticks), so it sorts after them.
    pub fn final_checkpoint(&self) -> Epoch {
        self.first_epoch + FINAL_OFFSET
    }

    /// Whether `epoch` is a checkpoint epoch.
    pub fn is_checkpoint(&self, epoch: Epoch) -> bool {
        self.next_at_or_after(epoch) == Some(epoch)
    }

    /// The run's first checkpoint epoch.
    pub fn first_checkpoint(&self) -> Option<Epoch> {
        self.next_at_or_after(self.first_epoch)
    }

    /// The run's stop directory: sources record where they stopped reading, and the savepoint
    /// that ends the run is announced (unique per run: named by its first epoch).
    fn stop_dir(&self) -> String {
        format!("stop-{:020}", self.first_epoch)
    }

    /// Deletes the stop directories of earlier runs (their stops are over: a run that
    /// completes a checkpoint has replaced them); returns how many went.
    pub fn clear_earlier_stops(&self) -> Result<usize, StoreError> {
        let mut cleared = 0;
        for dir in self.checkpoints.store.list_dirs(&self.checkpoints.job)? {
            let earlier = dir
                .strip_prefix("stop-")
                .and_then(|e| e.parse::<Epoch>().ok())
                .is_some_and(|e| e < self.first_epoch);
            if earlier {
                let path = format!("{}/{dir}", self.checkpoints.job);
                self.checkpoints.store.delete_all(&path)?;
                cleared += 1;
            }
        }
        Ok(cleared)
    }

    /// Records that `participant` on `worker` stopped reading after `epoch` (a stop with
    /// savepoint).
    pub fn stopped(
        &self,
        participant: &str,
        worker: usize,
        epoch: Epoch,
    ) -> Result<(), StoreError> {
        let path = format!("{}/{participant}@w{worker}", self.stop_dir());
        self.checkpoints
            .put_job_file(&path, epoch.to_string().into_bytes())
    }

    /// Every recorded stop: participant, worker, the epoch after which it stopped.
    pub fn stops(&self) -> Result<Vec<(String, usize, Epoch)>, StoreError> {
        let mut stops = Vec::new();
        for (file, bytes) in self.checkpoints.job_files(&self.stop_dir())? {
            let Some((participant, worker)) = file.rsplit_once("@w") else {
                continue;
            };
            let epoch = String::from_utf8_lossy(&bytes).trim().parse().ok();
            if let (Ok(w), Some(e)) = (worker.parse(), epoch) {
                stops.push((participant.to_string(), w, e));
            }
        }
        Ok(stops)
    }

    /// Announces the complete savepoint that ends the run.
    pub fn announce_savepoint(&self, epoch: Epoch) -> Result<(), StoreError> {
        let path = format!("{}/{SAVEPOINT}", self.stop_dir());
        self.checkpoints
            .put_job_file(&path, epoch.to_string().into_bytes())
    }

    /// The announced savepoint that ends the run, if any yet.
    pub fn announced_savepoint(&self) -> Result<Option<Epoch>, StoreError> {
        let path = format!("{}/{SAVEPOINT}", self.stop_dir());
        Ok(self
            .checkpoints
            .get_job_file(&path)?
            .and_then(|b| String::from_utf8_lossy(&b).trim().parse().ok()))
    }

    /// Whether checkpoint `epoch`, or a later one, is complete: everything written for it
    /// (and carried into the later one) is safe to commit to the outside world. Never blocks
    /// for long: the store is asked at most every [`Completion::LOOK_EVERY`].
    pub fn is_complete(&self, epoch: Epoch) -> bool {
        if self.completion.known(epoch) {
            return true;
        }
        {
            let mut last = self.completion.last_look.lock().expect("completion lock");
            if last.is_some_and(|t| t.elapsed() < Completion::LOOK_EVERY) {
                return false;
            }
            *last = Some(Instant::now());
        }
        if let Ok(Some(newest)) = self.checkpoints.newest_manifest_from(epoch) {
            self.completion.completed(newest);
        }
        self.completion.known(epoch)
    }
}

/// A job's checkpoints in a store.
#[derive(Clone, Debug)]
pub struct Checkpoints {
    store: Store,
    job: String,
    generation: u64,
    /// A background retention is running.
    retaining: Arc<std::sync::atomic::AtomicBool>,
}

fn dir(epoch: Epoch) -> String {
    format!("chk-{epoch:020}")
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn unframe(bytes: Vec<u8>) -> Option<Vec<u8>> {
    if bytes.len() < 8 {
        return None;
    }
    let sum = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    let mut bytes = bytes;
    (xxhash_rust::xxh3::xxh3_64(&bytes[8..]) == sum).then(|| {
        bytes.drain(..8);
        bytes
    })
}

impl Checkpoints {
    /// The checkpoints of `job` in `store`.
    pub fn new(store: Store, job: &str) -> Self {
        Checkpoints {
            store,
            job: job.to_string(),
            generation: 0,
            retaining: Default::default(),
        }
    }

    /// Checkpoints of lineage `generation`: a run that starts afresh begins a new lineage (its
    /// start time, ms); a restored run continues the lineage of its checkpoint. Sinks version
    /// their writes by it, so that a fresh run's output replaces an older run's.
    pub fn with_generation(mut self, generation: u64) -> Self {
        self.generation = generation;
        self
    }

    /// The lineage.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The store they live in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn path(&self, epoch: Epoch, file: &str) -> String {
        format!("{}/{}/{file}", self.job, dir(epoch))
    }

    /// Writes a file of the job outside any checkpoint (stop markers).
    fn put_job_file(&self, path: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.store.put(&format!("{}/{path}", self.job), bytes)
    }

    /// A file of the job outside any checkpoint.
    fn get_job_file(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.get(&format!("{}/{path}", self.job))
    }

    /// The files of the job under `dir` (outside any checkpoint): name under `dir`, content.
    fn job_files(&self, dir: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let prefix = format!("{}/{dir}/", self.job);
        let mut out = Vec::new();
        for (path, _) in self.store.list(&format!("{}/{dir}", self.job))? {
            let Some(name) = path.strip_prefix(&prefix) else {
                continue;
            };
            if let Some(bytes) = self.store.get(&path)? {
                out.push((name.to_string(), bytes));
            }
        }
        Ok(out)
    }

    /// Writes one framed file of checkpoint `epoch`.
    pub fn write(&self, epoch: Epoch, file: &str, payload: &[u8]) -> Result<(), StoreError> {
        self.store.put(&self.path(epoch, file), frame(payload))
    }

    /// Marks `participant` done on `worker` for checkpoint `epoch`.
    pub fn done(&self, epoch: Epoch, participant: &str, worker: usize) -> Result<(), StoreError> {
        self.done_with(epoch, participant, worker, &BTreeMap::new())
    }

    /// Marks `participant` done on `worker` for checkpoint `epoch`, which uses the `shared`
    /// files (relative to the job's directory, with their sizes): the manifest lists them.
    pub fn done_with(
        &self,
        epoch: Epoch,
        participant: &str,
        worker: usize,
        shared: &BTreeMap<String, u64>,
    ) -> Result<(), StoreError> {
        let marker = if shared.is_empty() {
            Vec::new()
        } else {
            serde_json::to_vec(shared).expect("a map of names serialises")
        };
        self.store.put(
            &self.path(epoch, &format!("done/{participant}@w{worker}")),
            marker,
        )
    }

    /// Writes a framed file shared by checkpoints (`path` relative to the job's directory);
    /// returns its size.
    /// The payload comes in chunks, written one after the other (never copied into one).
    pub fn write_shared(&self, path: &str, payload: Vec<Vec<u8>>) -> Result<u64, StoreError> {
        let mut sum = xxhash_rust::xxh3::Xxh3::new();
        for chunk in &payload {
            sum.update(chunk);
        }
        let mut chunks = vec![sum.digest().to_le_bytes().to_vec()];
        chunks.extend(payload);
        let size = chunks.iter().map(|c| c.len() as u64).sum();
        self.store
            .put_chunks(&format!("{}/{path}", self.job), chunks)?;
        Ok(size)
    }

    /// The shared files a checkpoint's done markers name.
    fn shared_of(
        &self,
        epoch: Epoch,
        files: &BTreeMap<String, u64>,
    ) -> Result<BTreeMap<String, u64>, String> {
        let mut shared = BTreeMap::new();
        for (marker, size) in files.range("done/".to_string()..) {
            if !marker.starts_with("done/") {
                break;
            }
            if *size == 0 {
                continue;
            }
            let bytes = self
                .store
                .get(&self.path(epoch, marker))
                .map_err(|e| e.to_string())?
                .unwrap_or_default();
            let named: BTreeMap<String, u64> = serde_json::from_slice(&bytes)
                .map_err(|e| format!("{marker} of checkpoint {epoch} is damaged: {e}"))?;
            shared.extend(named);
        }
        Ok(shared)
    }

    /// Copies `file` of checkpoint `from` into checkpoint `to` and marks `participant` done
    /// there on `worker`: for a source whose input ended, whose final positions hold for every
    /// later checkpoint.
    pub fn carry(
        &self,
        from: Epoch,
        to: Epoch,
        file: &str,
        participant: &str,
        worker: usize,
    ) -> Result<(), StoreError> {
        if let Some(bytes) = self.store.get(&self.path(from, file))? {
            self.store.put(&self.path(to, file), bytes)?;
        }
        self.done(to, participant, worker)
    }

    /// Whether `participant` on `worker` is done with checkpoint `epoch`.
    pub fn is_done(&self, epoch: Epoch, participant: &str, worker: usize) -> bool {
        self.store
            .get(&self.path(epoch, &format!("done/{participant}@w{worker}")))
            .is_ok_and(|o| o.is_some())
    }

    /// Completes checkpoint `epoch` once every participant is done on every worker it runs
    /// on: writes the manifest, then drops old checkpoints beyond the newest `retain`
    /// complete ones. `Err` says what is missing (the checkpoint failed).
    pub fn complete(
        &self,
        epoch: Epoch,
        participants: &[Participant],
        workers: usize,
        retain: usize,
    ) -> Result<Manifest, String> {
        self.complete_as(epoch, participants, workers, retain, None)
    }

    /// [`Checkpoints::complete`], naming the checkpoint a savepoint (kept by retention).
    pub fn complete_as(
        &self,
        epoch: Epoch,
        participants: &[Participant],
        workers: usize,
        retain: usize,
        savepoint: Option<String>,
    ) -> Result<Manifest, String> {
        let prefix = format!("{}/{}", self.job, dir(epoch));
        let files = self.files(epoch).map_err(|e| e.to_string())?;
        let mut missing = Vec::new();
        for p in participants {
            let on = if p.every_worker { workers } else { 1 };
            for w in 0..on {
                let marker = format!("done/{}@w{w}", p.name);
                if !files.contains_key(&marker) {
                    missing.push(format!("{}@w{w}", p.name));
                }
            }
        }
        if !missing.is_empty() {
            return Err(format!(
                "checkpoint {epoch} of job `{}` is incomplete: nothing from {}",
                self.job,
                missing.join(", ")
            ));
        }
        let shared = self.shared_of(epoch, &files)?;
        let manifest = Manifest {
            job: self.job.clone(),
            epoch,
            completed_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            workers,
            files,
            savepoint,
            generation: self.generation,
            shared,
        };
        let bytes = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
        let written = self
            .store
            .put_new(&format!("{prefix}/{MANIFEST}"), bytes)
            .map_err(|e| e.to_string())?;
        if !written {
            return Err(format!(
                "checkpoint {epoch} of job `{}` already has a manifest",
                self.job
            ));
        }
        self.retain_in_background(retain, epoch);
        Ok(manifest)
    }

    /// Epochs of the checkpoint directories present (complete or not), ascending.
    pub fn epochs(&self) -> Result<Vec<Epoch>, StoreError> {
        Ok(self
            .store
            .list_dirs(&self.job)?
            .iter()
            .filter_map(|d| d.strip_prefix("chk-")?.parse().ok())
            .collect())
    }

    /// Runs [`Checkpoints::retain`] on a thread of its own (one at a time; a completion that
    /// finds one running leaves the work to the next), so that deleting old checkpoints never
    /// holds up the worker that completes them.
    fn retain_in_background(&self, retain: usize, current: Epoch) {
        if self.retaining.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        let spawned = std::thread::Builder::new()
            .name("weir-retention".into())
            .spawn(move || {
                if let Err(e) = this.retain(retain, current) {
                    tracing::warn!("old checkpoints of job `{}` not removed: {e}", this.job);
                }
                this.retaining.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            self.retaining.store(false, Ordering::Release);
        }
    }

    /// Waits until no background retention is running (tests, and the end of a run).
    pub fn wait_for_retention(&self) {
        while self.retaining.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Applies retention now, after any background one (the end of a run).
    pub fn retain_now(&self, retain: usize, current: Epoch) {
        self.wait_for_retention();
        if let Err(e) = self.retain(retain, current) {
            tracing::warn!("old checkpoints of job `{}` not removed: {e}", self.job);
        }
    }

    /// Keeps the newest `retain` complete checkpoints (and anything newer than `current`);
    /// deletes the rest, complete or abandoned. Savepoints are kept. Then deletes the shared
    /// files of checkpoints up to `current` that no kept checkpoint uses (newer ones may
    /// belong to a checkpoint being taken).
    fn retain(&self, retain: usize, current: Epoch) -> Result<(), StoreError> {
        let mut complete = 0;
        let mut used = std::collections::BTreeSet::new();
        for epoch in self.epochs()?.into_iter().rev() {
            let manifest = self.manifest(epoch).ok().flatten();
            let keep = epoch > current
                || manifest.as_ref().is_some_and(|m| m.savepoint.is_some())
                || (manifest.is_some() && complete < retain.max(1))
                // newer than every complete one: maybe still being written
                || (manifest.is_none() && complete == 0);
            if !keep {
                self.store
                    .delete_all(&format!("{}/{}", self.job, dir(epoch)))?;
                continue;
            }
            if let Some(m) = manifest {
                complete += usize::from(epoch <= current && m.savepoint.is_none());
                used.extend(m.shared.into_keys());
            }
        }
        let prefix = format!("{}/", self.job);
        for (path, _) in self
            .store
            .list(&format!("{}/{}", self.job, names::SHARED))?
        {
            let relative = path.strip_prefix(&prefix).unwrap_or(&path);
            let old = names::shared_epoch(relative).is_some_and(|e| e <= current);
            if old && !used.contains(relative) {
                self.store.delete(&path)?;
            }
        }
        Ok(())
    }

    /// The newest checkpoint at or after `epoch` that has a manifest.
    fn newest_manifest_from(&self, epoch: Epoch) -> Result<Option<Epoch>, StoreError> {
        for e in self.epochs()?.into_iter().rev() {
            if e < epoch {
                break;
            }
            if self.store.get(&self.path(e, MANIFEST))?.is_some() {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn participants() -> Vec<Participant> {
        vec![
            Participant {
                name: "step.w".into(),
                every_worker: true,
            },
            Participant {
                name: "sink.out".into(),
                every_worker: false,
            },
        ]
    }

    fn take(c: &Checkpoints, epoch: Epoch, value: &str) -> Result<Manifest, String> {
        c.write(epoch, "state/w/00001", value.as_bytes()).unwrap();
        for w in 0..2 {
            c.done(epoch, "step.w", w).unwrap();
        }
        c.done(epoch, "sink.out", 0).unwrap();
        let completed = c.complete(epoch, &participants(), 2, 2);
        c.wait_for_retention();
        completed
    }

    #[test]
    fn a_checkpoint_completes_only_when_every_participant_is_done() {
        let c = Checkpoints::new(Store::open("memory://").unwrap(), "job");
        c.write(9, "state/w/00001", b"x").unwrap();
        c.done(9, "step.w", 0).unwrap();
        let e = c.complete(9, &participants(), 2, 3).unwrap_err();
        assert!(e.contains("step.w@w1") && e.contains("sink.out@w0"), "{e}");
        assert!(c.latest().unwrap().is_none());
        c.done(9, "step.w", 1).unwrap();
        c.done(9, "sink.out", 0).unwrap();
        let m = c.complete(9, &participants(), 2, 3).unwrap();
        assert_eq!(m.epoch, 9);
        let r = c.latest().unwrap().unwrap();
        assert_eq!(r.read("state/w/00001").unwrap().unwrap(), b"x");
        assert_eq!(r.read("state/w/00002").unwrap(), None);
    }

    #[test]
    fn old_checkpoints_are_dropped_beyond_the_retained_count() {
        let c = Checkpoints::new(Store::open("memory://").unwrap(), "job");
        for e in [9, 19, 29, 39] {
            take(&c, e, "s").unwrap();
        }
        assert_eq!(c.epochs().unwrap(), vec![29, 39]);
    }

    #[test]
    fn damaged_and_partial_checkpoints_are_skipped_for_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("file://{}", dir.path().display())).unwrap();
        let c = Checkpoints::new(store.clone(), "job");
        take(&c, 9, "first").unwrap();
        take(&c, 19, "second").unwrap();
        // A later checkpoint without a manifest (the process died while taking it).
        c.write(29, "state/w/00001", b"partial").unwrap();
        assert_eq!(c.latest().unwrap().unwrap().epoch(), 19);
        // The newest complete one truncated: the one before is used.
        let file = dir
            .path()
            .join("job")
            .join(dir_name(19))
            .join("state/w/00001");
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..bytes.len() - 2]).unwrap();
        let r = c.latest().unwrap().unwrap();
        assert_eq!(r.epoch(), 9);
        assert_eq!(r.read("state/w/00001").unwrap().unwrap(), b"first");
        // Same size, different bytes: reading it says which file is damaged.
        let file = dir
            .path()
            .join("job")
            .join(dir_name(9))
            .join("state/w/00001");
        let mut bytes = std::fs::read(&file).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        let e = r.read("state/w/00001").unwrap_err();
        assert!(e.contains("damaged") && e.contains("state/w/00001"), "{e}");
        // A manifest that is not JSON.
        store
            .put(&format!("job/{}/_MANIFEST", dir_name(9)), b"{".to_vec())
            .unwrap();
        assert!(c.latest().unwrap().is_none());
    }

    fn dir_name(epoch: Epoch) -> String {
        dir(epoch)
    }
}
