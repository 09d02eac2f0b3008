//! The state contract: stateful operators keep state per key group, snapshot it at checkpoint
//! epochs and restore it — onto any number of workers.
//!
//! An operator implements [`KeyedState`] for its state and drives a [`StateContext`]: restore
//! at construction, snapshot when its input frontier passes a checkpoint epoch. Records of
//! epochs after a pending checkpoint must not reach the state before that checkpoint is taken
//! (operators stash them), so that a snapshot at epoch `e` holds exactly the effect of epochs
//! `≤ e`. Where snapshots go is a [`StateBackend`]: in memory here; durable stores (`file://`,
//! `hdfs://`) implement the same trait.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use crate::event::Epoch;
use crate::keys::{KeyGroup, KeyGroups};

/// A state operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Encoding or decoding a snapshot failed.
    #[error("state of operator `{operator}`, key group {group}: {message}")]
    Codec {
        /// Operator name.
        operator: String,
        /// Key group.
        group: u32,
        /// What went wrong.
        message: String,
    },
    /// The backend could not store or load a snapshot.
    #[error("state backend: {0}")]
    Backend(String),
}

/// Size of an operator's state, for metrics and for tests that state stays bounded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateStats {
    /// Distinct keys held.
    pub keys: usize,
    /// Entries held (windows, sessions, buffered records).
    pub entries: usize,
}

/// What a stateful operator's state implements.
pub trait KeyedState {
    /// Serialises the state of every key group that holds any, in group order.
    fn snapshot_groups(&self) -> Result<Vec<(KeyGroup, Vec<u8>)>, StateError>;
    /// Adds the snapshot of one key group to this worker's state.
    fn restore_group(&mut self, group: KeyGroup, bytes: &[u8]) -> Result<(), StateError>;
    /// Current size.
    fn stats(&self) -> StateStats;
}

/// Where snapshots are stored and restored from.
pub trait StateBackend: Send + Sync + 'static {
    /// Stores the state of the key groups `worker` holds of `operator` as of checkpoint
    /// `epoch` (groups without state are left out).
    fn write(
        &self,
        epoch: Epoch,
        operator: &str,
        worker: usize,
        groups: Vec<(KeyGroup, Vec<u8>)>,
    ) -> Result<(), StateError>;
    /// Notes that `worker` has written all of `operator`'s state for `epoch`.
    fn finished(&self, epoch: Epoch, operator: &str, worker: usize) -> Result<(), StateError>;
    /// The snapshot to restore one key group from, when the run restores.
    fn read(&self, operator: &str, group: KeyGroup) -> Result<Option<Vec<u8>>, StateError>;
}

/// Which epochs are checkpoint epochs. Every worker evaluates the same rule, so they agree
/// without talking.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CheckpointSchedule {
    /// No checkpoints.
    #[default]
    Never,
    /// Epochs `n-1, 2n-1, …`: one checkpoint every `n` epochs.
    Every(u64),
    /// Exactly these epochs (tests, savepoints).
    At(BTreeSet<Epoch>),
}

impl CheckpointSchedule {
    /// The first checkpoint epoch `≥ from`.
    pub fn next_at_or_after(&self, from: Epoch) -> Option<Epoch> {
        match self {
            CheckpointSchedule::Never => None,
            CheckpointSchedule::Every(n) => {
                let n = (*n).max(1);
                Some((from / n) * n + (n - 1))
            }
            CheckpointSchedule::At(set) => set.range(from..).next().copied(),
        }
    }
}

/// An operator's handle on the state machinery, on one worker.
#[derive(Clone)]
pub struct StateContext {
    operator: String,
    backend: Arc<dyn StateBackend>,
    schedule: CheckpointSchedule,
    key_groups: KeyGroups,
    worker: usize,
    peers: usize,
    /// Checkpoint epochs below this have been taken.
    taken_below: Epoch,
    /// The run's final checkpoint, taken once the inputs have ended (durable runs).
    final_checkpoint: Option<Epoch>,
}

impl std::fmt::Debug for StateContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateContext")
            .field("operator", &self.operator)
            .field("schedule", &self.schedule)
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

impl StateContext {
    /// The context of operator `operator` on `worker` of `peers`.
    pub fn new(
        operator: impl Into<String>,
        backend: Arc<dyn StateBackend>,
        schedule: CheckpointSchedule,
        key_groups: KeyGroups,
        worker: usize,
        peers: usize,
    ) -> Self {
        StateContext {
            operator: operator.into(),
            backend,
            schedule,
            key_groups,
            worker,
            peers,
            taken_below: 0,
            final_checkpoint: None,
        }
    }

    /// The operator's name (keys its snapshots).
    pub fn operator(&self) -> &str {
        &self.operator
    }

    /// Restores the key groups this worker owns; returns how many had state.
    pub fn restore(&self, state: &mut impl KeyedState) -> Result<usize, StateError> {
        let mut restored = 0;
        for group in self.key_groups.groups_of_worker(self.worker, self.peers) {
            if let Some(bytes) = self.backend.read(&self.operator, KeyGroup(group))? {
                state.restore_group(KeyGroup(group), &bytes)?;
                restored += 1;
            }
        }
        Ok(restored)
    }

    /// The next checkpoint epoch not yet taken: records of later epochs must wait for it.
    pub fn pending_checkpoint(&self) -> Option<Epoch> {
        self.schedule.next_at_or_after(self.taken_below)
    }

    /// A context whose checkpoints start at `epoch` (a run restored from checkpoint
    /// `epoch - 1`).
    pub fn starting_at(mut self, epoch: Epoch) -> Self {
        self.taken_below = epoch;
        self
    }

    /// A context that also snapshots at `epoch` once its inputs have ended (the run's final
    /// checkpoint).
    pub fn with_final_checkpoint(mut self, epoch: Epoch) -> Self {
        self.final_checkpoint = Some(epoch);
        self
    }

    /// The final checkpoint, once: the caller snapshots at it when its inputs have ended.
    pub fn take_final_checkpoint(&mut self) -> Option<Epoch> {
        self.final_checkpoint.take()
    }

    /// Snapshots `state` as of checkpoint `epoch` (the pending one, now complete). On error
    /// the checkpoint is not marked finished, and the next one is pending all the same.
    pub fn snapshot(&mut self, epoch: Epoch, state: &impl KeyedState) -> Result<(), StateError> {
        self.taken_below = epoch + 1;
        let groups = state.snapshot_groups()?;
        self.backend
            .write(epoch, &self.operator, self.worker, groups)?;
        self.backend.finished(epoch, &self.operator, self.worker)
    }
}

/// Encodes a snapshot value with bincode, naming the operator and group on failure.
pub fn encode_state<T: serde::Serialize>(
    operator: &str,
    group: KeyGroup,
    value: &T,
) -> Result<Vec<u8>, StateError> {
    bincode::serialize(value).map_err(|e| StateError::Codec {
        operator: operator.to_string(),
        group: group.0,
        message: e.to_string(),
    })
}

/// Decodes a snapshot value written by [`encode_state`].
pub fn decode_state<T: serde::de::DeserializeOwned>(
    operator: &str,
    group: KeyGroup,
    bytes: &[u8],
) -> Result<T, StateError> {
    bincode::deserialize(bytes).map_err(|e| StateError::Codec {
        operator: operator.to_string(),
        group: group.0,
        message: format!("snapshot is damaged or from an incompatible version: {e}"),
    })
}

type SnapshotKey = (String, KeyGroup);

/// Snapshots kept in memory: for tests and for runs without a durable store.
#[derive(Default)]
pub struct MemoryBackend {
    snapshots: Mutex<BTreeMap<Epoch, BTreeMap<SnapshotKey, Vec<u8>>>>,
    finished: Mutex<BTreeMap<(Epoch, String), BTreeSet<usize>>>,
    restore_from: Mutex<Option<Epoch>>,
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Arc<Self> {
        Arc::new(MemoryBackend::default())
    }

    /// Makes later [`read`](StateBackend::read)s return the snapshot of `epoch`.
    pub fn restore_from(&self, epoch: Epoch) {
        *self.restore_from.lock().expect("lock") = Some(epoch);
    }

    /// The checkpoint epochs with stored state, ascending.
    pub fn epochs(&self) -> Vec<Epoch> {
        self.snapshots
            .lock()
            .expect("lock")
            .keys()
            .copied()
            .collect()
    }

    /// The workers that finished `operator`'s snapshot for `epoch`.
    pub fn finished_workers(&self, epoch: Epoch, operator: &str) -> BTreeSet<usize> {
        let finished = self.finished.lock().expect("lock");
        finished
            .get(&(epoch, operator.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// Total bytes stored for `epoch`.
    pub fn size_of(&self, epoch: Epoch) -> usize {
        let snapshots = self.snapshots.lock().expect("lock");
        snapshots
            .get(&epoch)
            .map_or(0, |m| m.values().map(Vec::len).sum())
    }
}

impl StateBackend for MemoryBackend {
    fn write(
        &self,
        epoch: Epoch,
        operator: &str,
        _worker: usize,
        groups: Vec<(KeyGroup, Vec<u8>)>,
    ) -> Result<(), StateError> {
        let mut snapshots = self.snapshots.lock().expect("lock");
        let snapshot = snapshots.entry(epoch).or_default();
        for (group, bytes) in groups {
            snapshot.insert((operator.to_string(), group), bytes);
        }
        Ok(())
    }

    fn finished(&self, epoch: Epoch, operator: &str, worker: usize) -> Result<(), StateError> {
        let mut finished = self.finished.lock().expect("lock");
        finished
            .entry((epoch, operator.to_string()))
            .or_default()
            .insert(worker);
        // An operator with no state on any worker still marks the checkpoint as present.
        self.snapshots
            .lock()
            .expect("lock")
            .entry(epoch)
            .or_default();
        Ok(())
    }

    fn read(&self, operator: &str, group: KeyGroup) -> Result<Option<Vec<u8>>, StateError> {
        let Some(epoch) = *self.restore_from.lock().expect("lock") else {
            return Ok(None);
        };
        let snapshots = self.snapshots.lock().expect("lock");
        let Some(snapshot) = snapshots.get(&epoch) else {
            return Err(StateError::Backend(format!(
                "no checkpoint at epoch {epoch}"
            )));
        };
        Ok(snapshot.get(&(operator.to_string(), group)).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_find_the_next_checkpoint() {
        let every = CheckpointSchedule::Every(10);
        assert_eq!(every.next_at_or_after(0), Some(9));
        assert_eq!(every.next_at_or_after(9), Some(9));
        assert_eq!(every.next_at_or_after(10), Some(19));
        let at = CheckpointSchedule::At([3, 7].into_iter().collect());
        assert_eq!(at.next_at_or_after(4), Some(7));
        assert_eq!(at.next_at_or_after(8), None);
        assert_eq!(CheckpointSchedule::Never.next_at_or_after(0), None);
    }

    struct Counter(BTreeMap<KeyGroup, u64>);
    impl KeyedState for Counter {
        fn snapshot_groups(&self) -> Result<Vec<(KeyGroup, Vec<u8>)>, StateError> {
            self.0
                .iter()
                .map(|(g, v)| Ok((*g, encode_state("c", *g, v)?)))
                .collect()
        }
        fn restore_group(&mut self, group: KeyGroup, bytes: &[u8]) -> Result<(), StateError> {
            self.0.insert(group, decode_state("c", group, bytes)?);
            Ok(())
        }
        fn stats(&self) -> StateStats {
            StateStats {
                keys: self.0.len(),
                entries: self.0.len(),
            }
        }
    }

    #[test]
    fn restores_each_group_on_the_worker_that_owns_it_now() {
        let backend = MemoryBackend::new();
        let groups = KeyGroups::new(8);
        let state = Counter((0..8).map(|g| (KeyGroup(g), g as u64 * 10)).collect());
        let mut ctx = StateContext::new(
            "c",
            backend.clone(),
            CheckpointSchedule::At([4].into()),
            groups,
            0,
            1,
        );
        assert_eq!(ctx.pending_checkpoint(), Some(4));
        ctx.snapshot(4, &state).unwrap();
        assert_eq!(ctx.pending_checkpoint(), None);
        backend.restore_from(4);
        let mut merged = BTreeMap::new();
        for worker in 0..3 {
            let ctx =
                StateContext::new("c", backend.clone(), Default::default(), groups, worker, 3);
            let mut part = Counter(BTreeMap::new());
            ctx.restore(&mut part).unwrap();
            for g in part.0.keys() {
                assert_eq!(groups.worker_of(*g, 3), worker);
            }
            merged.extend(part.0);
        }
        assert_eq!(merged, state.0);
    }

    #[test]
    fn damaged_snapshots_are_errors_that_name_the_operator() {
        let err = decode_state::<Vec<String>>("win", KeyGroup(3), &[255, 255]).unwrap_err();
        assert!(err.to_string().contains("`win`, key group 3"), "{err}");
    }
}
