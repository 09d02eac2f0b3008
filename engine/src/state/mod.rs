//! The state contract: stateful operators keep state per key group, snapshot it at checkpoint
//! epochs and restore it — onto any number of workers.
//!
//! An operator implements [`KeyedState`] for its state and drives a [`StateContext`]: restore
//! at construction, snapshot when its input frontier passes a checkpoint epoch. Records of
//! epochs after a pending checkpoint must not reach the state before that checkpoint is taken
//! (operators stash them), so that a snapshot at epoch `e` holds exactly the effect of epochs
//! `≤ e`. Where snapshots go is a [`StateBackend`]: in memory ([`MemoryBackend`]); durable
//! stores (`file://`, `hdfs://`, `s3://`) implement the same trait.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::event::Epoch;
use crate::keys::{KeyGroup, KeyGroups};

mod memory;
pub use memory::MemoryBackend;

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

/// One key group's part of a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum GroupPart {
    /// The group's whole state.
    Full(Vec<u8>),
    /// What changed since the group's previous part (written by the same worker in the same
    /// run): changes common to every group, then the group's own.
    Delta {
        /// Changes that apply to every key group (windows closed by the watermark, say).
        common: Vec<u8>,
        /// Changes of this group only.
        own: Vec<u8>,
    },
}

impl GroupPart {
    /// Bytes it holds.
    pub fn len(&self) -> usize {
        match self {
            GroupPart::Full(bytes) => bytes.len(),
            GroupPart::Delta { common, own } => common.len() + own.len(),
        }
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What changed in a state since it last handed over its changes.
#[derive(Debug, Default)]
pub struct Changes {
    /// Changes that apply to every key group.
    pub common: Vec<u8>,
    /// Changes of single key groups (groups without any left out).
    pub groups: Vec<(KeyGroup, Vec<u8>)>,
}

/// What a stateful operator's state implements.
///
/// Every state can snapshot key groups in full. A state that also records its changes
/// ([`KeyedState::record_changes`]) is checkpointed incrementally: most checkpoints write only
/// what changed, and each key group is written in full again every
/// [`StateContext::FULL_EVERY`] checkpoints, so that a restore applies a bounded chain.
pub trait KeyedState {
    /// Serialises the state of every key group for which `include` holds and that holds any,
    /// in group order.
    fn snapshot_groups(
        &self,
        include: &dyn Fn(KeyGroup) -> bool,
    ) -> Result<Vec<(KeyGroup, Vec<u8>)>, StateError>;
    /// Adds the snapshot of one key group to this worker's state.
    fn restore_group(&mut self, group: KeyGroup, bytes: &[u8]) -> Result<(), StateError>;
    /// Current size.
    fn stats(&self) -> StateStats;
    /// Starts recording changes (before anything is restored); false when this state cannot
    /// (it is then snapshotted in full at every checkpoint). Restoring records nothing.
    fn record_changes(&mut self) -> bool {
        false
    }
    /// The changes recorded since the previous call (or since recording started); they are
    /// forgotten.
    fn take_changes(&mut self) -> Result<Changes, StateError> {
        Ok(Changes::default())
    }
    /// Applies one group's changes, as [`KeyedState::take_changes`] handed them over, on top
    /// of what was restored for the group before.
    fn apply_changes(
        &mut self,
        group: KeyGroup,
        common: &[u8],
        own: &[u8],
    ) -> Result<(), StateError> {
        let _ = (common, own);
        Err(StateError::Backend(format!(
            "key group {} holds changes, but this state does not record any",
            group.0
        )))
    }
    /// Every key group is restored: settles what the applied changes left (windows closed
    /// after a group's last change, say).
    fn finish_restore(&mut self) {}
}

/// `include` asked once per key group: a snapshot filtering on it visits every entry.
pub fn include_once<'a>(
    key_groups: KeyGroups,
    include: &'a dyn Fn(KeyGroup) -> bool,
) -> impl FnMut(KeyGroup) -> bool + 'a {
    let mut answers: Vec<Option<bool>> = vec![None; key_groups.count() as usize];
    move |g| *answers[g.0 as usize].get_or_insert_with(|| include(g))
}

/// Where snapshots are stored and restored from.
pub trait StateBackend: Send + Sync + 'static {
    /// Stores the parts of the key groups `worker` holds of `operator` as of checkpoint
    /// `epoch`: a group's [`GroupPart::Delta`] applies on top of the part this worker wrote
    /// for it at its previous checkpoint; groups without state are left out.
    fn write(
        &self,
        epoch: Epoch,
        operator: &str,
        worker: usize,
        parts: Vec<(KeyGroup, GroupPart)>,
    ) -> Result<(), StateError>;
    /// Notes that `worker` has written all of `operator`'s state for `epoch`.
    fn finished(&self, epoch: Epoch, operator: &str, worker: usize) -> Result<(), StateError>;
    /// What to restore one key group from, when the run restores: its last full snapshot, then
    /// the deltas written after it, oldest first (empty: no state).
    fn read(&self, operator: &str, group: KeyGroup) -> Result<Vec<GroupPart>, StateError>;
    /// After a restore: lets `worker`'s next checkpoint of `operator` write changes on top of
    /// the restored chains of `groups` (the groups it owns now). False when there is nothing to
    /// continue — the next checkpoint is then full.
    fn continue_chains(&self, operator: &str, worker: usize, groups: &[KeyGroup]) -> bool {
        let _ = (operator, worker, groups);
        false
    }
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
    /// Whether the state records its changes (checkpoints are incremental).
    incremental: bool,
    /// Checkpoints taken by this context.
    taken: u64,
    /// Key groups written at the previous checkpoint, with the length of their chains.
    chains: BTreeMap<u32, u64>,
    /// The next checkpoint writes every group in full (the first one, and after a failure).
    full_next: bool,
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
            incremental: false,
            taken: 0,
            chains: BTreeMap::new(),
            full_next: true,
        }
    }

    /// How often (in checkpoints) each key group is written in full when checkpoints are
    /// incremental: a restore applies at most this many parts per group, and each checkpoint
    /// rewrites about `1 / FULL_EVERY` of the state besides what changed (and any group whose
    /// chain reached this length).
    pub const FULL_EVERY: u64 = 16;

    /// The operator's name (keys its snapshots).
    pub fn operator(&self) -> &str {
        &self.operator
    }

    /// Restores the key groups this worker owns and starts recording changes when the state
    /// can — on top of the restored chains, so that even the first checkpoint after a restore
    /// is incremental; returns how many groups had state.
    pub fn restore(&mut self, state: &mut impl KeyedState) -> Result<usize, StateError> {
        // Recording starts first: what a restore leaves (records waiting for the watermark)
        // is what the next changes are relative to.
        self.incremental = state.record_changes();
        let mut chains = BTreeMap::new();
        for group in self.key_groups.groups_of_worker(self.worker, self.peers) {
            let group = KeyGroup(group);
            let parts = self.backend.read(&self.operator, group)?;
            for part in &parts {
                match part {
                    GroupPart::Full(bytes) => state.restore_group(group, bytes)?,
                    GroupPart::Delta { common, own } => state.apply_changes(group, common, own)?,
                }
            }
            if !parts.is_empty() {
                chains.insert(group.0, parts.len() as u64);
            }
        }
        state.finish_restore();
        let restored = chains.len();
        let groups: Vec<KeyGroup> = chains.keys().map(|g| KeyGroup(*g)).collect();
        if self.incremental
            && !groups.is_empty()
            && self
                .backend
                .continue_chains(&self.operator, self.worker, &groups)
        {
            self.chains = chains;
            self.full_next = false;
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

    /// Snapshots `state` as of checkpoint `epoch` (the pending one, now complete): in full,
    /// or — when the state records changes — what changed, with a rotating share of the key
    /// groups in full. On error the checkpoint is not marked finished, the next one is
    /// pending all the same and writes every group in full.
    pub fn snapshot(
        &mut self,
        epoch: Epoch,
        state: &mut impl KeyedState,
    ) -> Result<(), StateError> {
        self.taken_below = epoch + 1;
        self.taken += 1;
        let parts = self.parts(state);
        let written = parts.and_then(|parts| {
            let chains = parts
                .iter()
                .map(|(g, part)| match part {
                    GroupPart::Full(_) => (g.0, 1),
                    GroupPart::Delta { .. } => (g.0, self.chains.get(&g.0).map_or(1, |n| n + 1)),
                })
                .collect();
            self.backend
                .write(epoch, &self.operator, self.worker, parts)?;
            Ok(chains)
        });
        match written {
            Ok(chains) => {
                self.chains = chains;
                self.full_next = false;
                self.backend.finished(epoch, &self.operator, self.worker)
            }
            Err(e) => {
                self.full_next = true;
                Err(e)
            }
        }
    }

    /// What this checkpoint writes for `state`.
    fn parts(&self, state: &mut impl KeyedState) -> Result<Vec<(KeyGroup, GroupPart)>, StateError> {
        if !self.incremental {
            let full = state.snapshot_groups(&|_| true)?;
            return Ok(full
                .into_iter()
                .map(|(g, b)| (g, GroupPart::Full(b)))
                .collect());
        }
        let changes = state.take_changes()?;
        let (full_next, taken, chains) = (self.full_next, self.taken, &self.chains);
        let in_full = move |g: KeyGroup| {
            full_next
                || (u64::from(g.0) + taken) % Self::FULL_EVERY == 0
                || chains.get(&g.0).is_some_and(|n| *n >= Self::FULL_EVERY)
        };
        let mut parts: BTreeMap<KeyGroup, GroupPart> = state
            .snapshot_groups(&in_full)?
            .into_iter()
            .map(|(g, b)| (g, GroupPart::Full(b)))
            .collect();
        let mut own: BTreeMap<KeyGroup, Vec<u8>> = changes.groups.into_iter().collect();
        let changed: Vec<KeyGroup> = own.keys().copied().collect();
        let delta_groups = self.chains.keys().map(|g| KeyGroup(*g)).chain(changed);
        for group in delta_groups.filter(|g| !in_full(*g)) {
            parts.entry(group).or_insert_with(|| GroupPart::Delta {
                common: changes.common.clone(),
                own: own.remove(&group).unwrap_or_default(),
            });
        }
        Ok(parts.into_iter().collect())
    }
}

/// Encodes a snapshot value with bincode, naming the operator and group on failure.
pub fn encode_state<T: serde::Serialize>(
    operator: &str,
    group: KeyGroup,
    value: &T,
) -> Result<Vec<u8>, StateError> {
    // One pass into a growing buffer: `bincode::serialize` walks the value twice (sizing it
    // first), and walking large state is what a checkpoint costs.
    let mut out = Vec::with_capacity(4096);
    bincode::serialize_into(&mut out, value).map_err(|e| StateError::Codec {
        operator: operator.to_string(),
        group: group.0,
        message: e.to_string(),
    })?;
    Ok(out)
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

/// Extends a worker's `chains` with the `parts` of its next checkpoint: a full part starts a
/// group's chain afresh, a delta extends it, a group without a part has no state any more.
pub fn extend_chains<T>(chains: &mut BTreeMap<u32, Vec<T>>, parts: Vec<(KeyGroup, bool, T)>) {
    let mut next = BTreeMap::new();
    for (group, full, part) in parts {
        let mut chain = match chains.remove(&group.0) {
            Some(chain) if !full => chain,
            _ => Vec::new(),
        };
        chain.push(part);
        next.insert(group.0, chain);
    }
    *chains = next;
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

    /// A value per key group; records which groups changed once asked to.
    #[derive(Default)]
    struct Counter {
        values: BTreeMap<KeyGroup, u64>,
        changed: Option<BTreeSet<KeyGroup>>,
        incremental: bool,
    }

    impl Counter {
        fn of(values: BTreeMap<KeyGroup, u64>, incremental: bool) -> Self {
            Counter {
                values,
                changed: None,
                incremental,
            }
        }

        fn set(&mut self, group: u32, value: Option<u64>) {
            match value {
                Some(v) => self.values.insert(KeyGroup(group), v),
                None => self.values.remove(&KeyGroup(group)),
            };
            if let Some(changed) = &mut self.changed {
                changed.insert(KeyGroup(group));
            }
        }
    }

    impl KeyedState for Counter {
        fn snapshot_groups(
            &self,
            include: &dyn Fn(KeyGroup) -> bool,
        ) -> Result<Vec<(KeyGroup, Vec<u8>)>, StateError> {
            self.values
                .iter()
                .filter(|(g, _)| include(**g))
                .map(|(g, v)| Ok((*g, encode_state("c", *g, v)?)))
                .collect()
        }
        fn restore_group(&mut self, group: KeyGroup, bytes: &[u8]) -> Result<(), StateError> {
            self.values.insert(group, decode_state("c", group, bytes)?);
            Ok(())
        }
        fn stats(&self) -> StateStats {
            StateStats {
                keys: self.values.len(),
                entries: self.values.len(),
            }
        }
        fn record_changes(&mut self) -> bool {
            if self.incremental {
                self.changed = Some(BTreeSet::new());
            }
            self.incremental
        }
        fn take_changes(&mut self) -> Result<Changes, StateError> {
            let changed = std::mem::take(self.changed.as_mut().expect("recording"));
            let groups = changed
                .into_iter()
                .map(|g| Ok((g, encode_state("c", g, &self.values.get(&g))?)))
                .collect::<Result<_, StateError>>()?;
            Ok(Changes {
                common: Vec::new(),
                groups,
            })
        }
        fn apply_changes(
            &mut self,
            group: KeyGroup,
            _common: &[u8],
            own: &[u8],
        ) -> Result<(), StateError> {
            if !own.is_empty() {
                match decode_state::<Option<u64>>("c", group, own)? {
                    Some(v) => self.values.insert(group, v),
                    None => self.values.remove(&group),
                };
            }
            Ok(())
        }
    }

    /// The union of what `workers` workers restore from `backend`'s checkpoint `epoch`
    /// (each checking it only got groups it owns).
    fn restore_all(
        backend: &Arc<MemoryBackend>,
        groups: KeyGroups,
        epoch: Epoch,
        workers: usize,
    ) -> BTreeMap<KeyGroup, u64> {
        backend.restore_from(epoch);
        let mut merged = BTreeMap::new();
        for worker in 0..workers {
            let mut ctx = StateContext::new(
                "c",
                backend.clone(),
                Default::default(),
                groups,
                worker,
                workers,
            );
            let mut part = Counter::default();
            ctx.restore(&mut part).unwrap();
            for g in part.values.keys() {
                assert_eq!(groups.worker_of(*g, workers), worker);
            }
            merged.extend(part.values);
        }
        merged
    }

    #[test]
    fn restores_each_group_on_the_worker_that_owns_it_now() {
        let backend = MemoryBackend::new();
        let groups = KeyGroups::new(8);
        let mut state = Counter::of(
            (0..8).map(|g| (KeyGroup(g), g as u64 * 10)).collect(),
            false,
        );
        let mut ctx = StateContext::new(
            "c",
            backend.clone(),
            CheckpointSchedule::At([4].into()),
            groups,
            0,
            1,
        );
        assert_eq!(ctx.restore(&mut state).unwrap(), 0);
        assert_eq!(ctx.pending_checkpoint(), Some(4));
        ctx.snapshot(4, &mut state).unwrap();
        assert_eq!(ctx.pending_checkpoint(), None);
        assert_eq!(restore_all(&backend, groups, 4, 3), state.values);
    }

    #[test]
    fn incremental_checkpoints_write_changes_and_restore_the_same_state() {
        let backend = MemoryBackend::new();
        let groups = KeyGroups::new(16);
        let mut state = Counter::of(BTreeMap::new(), true);
        let mut ctx = StateContext::new(
            "c",
            backend.clone(),
            CheckpointSchedule::Every(1),
            groups,
            0,
            1,
        );
        ctx.restore(&mut state).unwrap();
        for g in 0..16 {
            state.set(g, Some(1000 + u64::from(g)));
        }
        let mut expected = BTreeMap::new();
        for epoch in 0..40u64 {
            // A few groups change; one empties, then comes back.
            state.set((epoch * 7 % 16) as u32, Some(epoch));
            state.set(3, (epoch % 5 != 0).then_some(epoch));
            ctx.snapshot(epoch, &mut state).unwrap();
            expected.insert(epoch, state.values.clone());
        }
        for (epoch, values) in &expected {
            for workers in [1, 2, 3] {
                assert_eq!(
                    &restore_all(&backend, groups, *epoch, workers),
                    values,
                    "{epoch}"
                );
            }
        }
        // After the first checkpoint, most groups were written as (empty) deltas, and no
        // group's chain is longer than FULL_EVERY.
        backend.restore_from(39);
        let mut full = 0;
        for g in 0..16 {
            let chain = backend.read("c", KeyGroup(g)).unwrap();
            assert!(!chain.is_empty() && chain.len() as u64 <= StateContext::FULL_EVERY);
            assert!(
                matches!(chain[0], GroupPart::Full(_)),
                "group {g}: {chain:?}"
            );
            full += chain
                .iter()
                .filter(|p| matches!(p, GroupPart::Full(_)))
                .count();
        }
        assert_eq!(full, 16, "one full part per group");
        assert!(backend.size_of(39) < 16 * 8 * 10, "{}", backend.size_of(39));
    }

    #[test]
    fn a_restored_run_continues_the_chains_at_another_worker_count() {
        let backend = MemoryBackend::new();
        let groups = KeyGroups::new(16);
        let context = |worker, peers| {
            let schedule = CheckpointSchedule::Every(1);
            StateContext::new("c", backend.clone(), schedule, groups, worker, peers)
        };
        // One worker, ten checkpoints.
        let mut ctx = context(0, 1);
        let mut state = Counter::of(BTreeMap::new(), true);
        ctx.restore(&mut state).unwrap();
        for epoch in 0..10u64 {
            state.set((epoch % 16) as u32, Some(epoch));
            state.set(((epoch * 5) % 16) as u32, Some(100 + epoch));
            ctx.snapshot(epoch, &mut state).unwrap();
        }
        let mut expected = state.values.clone();
        // Restored at three workers, which go on from there.
        backend.restore_from(9);
        let mut run: Vec<(StateContext, Counter)> = (0..3)
            .map(|w| {
                let mut ctx = context(w, 3);
                let mut state = Counter::of(BTreeMap::new(), true);
                ctx.restore(&mut state).unwrap();
                (ctx, state)
            })
            .collect();
        for epoch in 10..14u64 {
            let group = ((epoch * 3) % 16) as u32;
            expected.insert(KeyGroup(group), epoch);
            let owner = groups.worker_of(KeyGroup(group), 3);
            run[owner].1.set(group, Some(epoch));
            for (ctx, state) in &mut run {
                ctx.snapshot(epoch, state).unwrap();
            }
        }
        // The first checkpoint after the restore wrote changes only (besides its rotation).
        let chains = backend.snapshots.lock().unwrap();
        let at_10 = &chains[&10];
        let continued = at_10.values().filter(|c| c.len() > 1).count();
        assert!(
            continued >= 12,
            "{continued} of 16 groups continued their chains"
        );
        drop(chains);
        assert_eq!(restore_all(&backend, groups, 13, 2), expected);
    }

    #[test]
    fn damaged_snapshots_are_errors_that_name_the_operator() {
        let err = decode_state::<Vec<String>>("win", KeyGroup(3), &[255, 255]).unwrap_err();
        assert!(err.to_string().contains("`win`, key group 3"), "{err}");
    }
}
