//! Snapshots kept in memory: the [`StateBackend`] of tests and of runs without a durable
//! store.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use super::{extend_chains, GroupPart, StateBackend, StateError};
use crate::event::Epoch;
use crate::keys::KeyGroup;

type SnapshotKey = (String, KeyGroup);
/// A key group's parts, oldest first.
type Chain = Vec<GroupPart>;

/// Snapshots kept in memory: for tests and for runs without a durable store.
#[derive(Default)]
pub struct MemoryBackend {
    /// What a restore from each checkpoint reads, per operator and key group.
    pub(super) snapshots: Mutex<BTreeMap<Epoch, BTreeMap<SnapshotKey, Chain>>>,
    /// Each worker's chains as of its last write, per operator.
    chains: Mutex<BTreeMap<(String, usize), BTreeMap<u32, Chain>>>,
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

    /// Total bytes a restore from `epoch` reads.
    pub fn size_of(&self, epoch: Epoch) -> usize {
        let snapshots = self.snapshots.lock().expect("lock");
        snapshots.get(&epoch).map_or(0, |m| {
            m.values()
                .flat_map(|chain| chain.iter().map(GroupPart::len))
                .sum()
        })
    }
}

impl StateBackend for MemoryBackend {
    fn write(
        &self,
        epoch: Epoch,
        operator: &str,
        worker: usize,
        parts: Vec<(KeyGroup, GroupPart)>,
    ) -> Result<(), StateError> {
        let mut all = self.chains.lock().expect("lock");
        let chains = all.entry((operator.to_string(), worker)).or_default();
        let parts = parts
            .into_iter()
            .map(|(g, p)| (g, matches!(p, GroupPart::Full(_)), p))
            .collect();
        extend_chains(chains, parts);
        let mut snapshots = self.snapshots.lock().expect("lock");
        let snapshot = snapshots.entry(epoch).or_default();
        for (group, chain) in chains.iter() {
            snapshot.insert((operator.to_string(), KeyGroup(*group)), chain.clone());
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

    fn continue_chains(&self, operator: &str, worker: usize, groups: &[KeyGroup]) -> bool {
        let Some(epoch) = *self.restore_from.lock().expect("lock") else {
            return false;
        };
        let snapshots = self.snapshots.lock().expect("lock");
        let Some(snapshot) = snapshots.get(&epoch) else {
            return false;
        };
        let chains: BTreeMap<u32, Chain> = groups
            .iter()
            .filter_map(|g| Some((g.0, snapshot.get(&(operator.to_string(), *g))?.clone())))
            .collect();
        let mut all = self.chains.lock().expect("lock");
        all.insert((operator.to_string(), worker), chains);
        true
    }

    fn read(&self, operator: &str, group: KeyGroup) -> Result<Vec<GroupPart>, StateError> {
        let Some(epoch) = *self.restore_from.lock().expect("lock") else {
            return Ok(Vec::new());
        };
        let snapshots = self.snapshots.lock().expect("lock");
        let Some(snapshot) = snapshots.get(&epoch) else {
            return Err(StateError::Backend(format!(
                "no checkpoint at epoch {epoch}"
            )));
        };
        Ok(snapshot
            .get(&(operator.to_string(), group))
            .cloned()
            .unwrap_or_default())
    }
}
