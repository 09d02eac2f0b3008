//! Operator state in durable checkpoints: the [`StateBackend`] of a run with `checkpoint:`.
//!
//! Each checkpoint, a worker writes the parts of its key groups of one operator (full
//! snapshots and changes) into one shared file, `shared/<operator>/e<epoch>-w<worker>-<run>`,
//! and into the checkpoint's directory an index, `state/<operator>/w<worker>`: for each key
//! group, the shared files holding its chain — its last full part, then the changes written
//! after it. A checkpoint whose state barely changed thus writes little, and unchanged parts
//! are shared with the checkpoints before it. A restore at another worker count reads an
//! operator's files once per process and hands each key group's chain to the worker that owns
//! it now.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{names, Checkpoints, Restore};
use crate::event::Epoch;
use crate::keys::KeyGroup;
use crate::state::{extend_chains, GroupPart, StateBackend, StateError};

/// The index of one worker's state of one operator in a checkpoint.
#[derive(Serialize, Deserialize)]
struct StateIndex {
    /// Layout version (files of another one are refused by name).
    version: u32,
    /// Per key group, the shared files holding its parts, oldest first.
    chains: BTreeMap<u32, Vec<String>>,
}

const INDEX_VERSION: u32 = 2;

/// Encodes the parts of one shared file: per part its group, its kind (0 full, 1 delta) and
/// its byte strings, each with its length. Returns the file as chunks — headers between the
/// parts' own buffers, which are moved, not copied (serde would even go byte by byte).
fn encode_parts(parts: Vec<(KeyGroup, GroupPart)>) -> Vec<Vec<u8>> {
    let mut chunks = Vec::with_capacity(parts.len() * 3 + 1);
    let mut header = (parts.len() as u64).to_le_bytes().to_vec();
    for (group, part) in parts {
        header.extend_from_slice(&group.0.to_le_bytes());
        let strings = match part {
            GroupPart::Full(b) => {
                header.push(0);
                vec![b]
            }
            GroupPart::Delta { common, own } => {
                header.push(1);
                vec![common, own]
            }
        };
        for b in strings {
            header.extend_from_slice(&(b.len() as u64).to_le_bytes());
            if b.len() < 4096 {
                header.extend_from_slice(&b);
            } else {
                chunks.push(std::mem::take(&mut header));
                chunks.push(b);
            }
        }
    }
    chunks.push(header);
    chunks.retain(|c| !c.is_empty());
    chunks
}

/// Decodes what [`encode_parts`] wrote.
fn decode_parts(mut input: &[u8]) -> Option<BTreeMap<u32, GroupPart>> {
    fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = input.split_at_checked(n)?;
        *input = rest;
        Some(head)
    }
    fn len(input: &mut &[u8]) -> Option<usize> {
        let n = u64::from_le_bytes(take(input, 8)?.try_into().ok()?);
        usize::try_from(n).ok()
    }
    fn bytes(input: &mut &[u8]) -> Option<Vec<u8>> {
        let n = len(input)?;
        take(input, n).map(<[u8]>::to_vec)
    }
    let count = len(&mut input)?;
    let mut parts = BTreeMap::new();
    for _ in 0..count {
        let group = u32::from_le_bytes(take(&mut input, 4)?.try_into().ok()?);
        let part = match take(&mut input, 1)?[0] {
            0 => GroupPart::Full(bytes(&mut input)?),
            1 => GroupPart::Delta {
                common: bytes(&mut input)?,
                own: bytes(&mut input)?,
            },
            _ => return None,
        };
        parts.insert(group, part);
    }
    input.is_empty().then_some(parts)
}

/// One worker's chains of one operator, as of its last write.
#[derive(Default)]
struct Written {
    chains: BTreeMap<u32, Vec<String>>,
    /// The shared files the chains use, with their sizes.
    sizes: BTreeMap<String, u64>,
}

/// Operator state in durable checkpoints (see the module's documentation).
pub struct DurableBackend {
    checkpoints: Checkpoints,
    restore: Option<Restore>,
    /// Names this process's shared files apart from those of any other attempt.
    run: u64,
    /// Per operator and worker: what its last checkpoint wrote.
    written: Mutex<BTreeMap<(String, usize), Written>>,
    /// Restored key groups not yet taken, by operator (loaded on first read).
    restored: Mutex<BTreeMap<String, Restored>>,
}

/// One operator's state in the checkpoint restored.
struct Restored {
    /// Parts not yet taken, per key group.
    parts: BTreeMap<u32, Vec<GroupPart>>,
    /// The shared files of every key group's chain.
    chains: BTreeMap<u32, Vec<String>>,
}

impl DurableBackend {
    /// State written to `checkpoints`, restored from `restore` when given.
    pub fn new(checkpoints: Checkpoints, restore: Option<Restore>) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        DurableBackend {
            checkpoints,
            restore,
            run: nanos ^ (u64::from(std::process::id()) << 40),
            written: Mutex::new(BTreeMap::new()),
            restored: Mutex::new(BTreeMap::new()),
        }
    }

    /// Loads every key group's chain of `operator` from the checkpoint restored.
    fn load(restore: &Restore, operator: &str) -> Result<Restored, String> {
        let mut chains: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for file in restore.files_under(&names::state_dir(operator)) {
            let bytes = restore.read(&file)?.unwrap_or_default();
            let index: StateIndex = bincode::deserialize(&bytes)
                .ok()
                .filter(|i: &StateIndex| i.version == INDEX_VERSION)
                .ok_or_else(|| {
                    format!("{file} is damaged or was written by an incompatible version of weir")
                })?;
            chains.extend(index.chains);
        }
        let files: BTreeSet<&String> = chains.values().flatten().collect();
        let mut parts: BTreeMap<&String, BTreeMap<u32, GroupPart>> = BTreeMap::new();
        for file in files {
            let bytes = restore.read_shared(file)?;
            let held = decode_parts(&bytes).ok_or_else(|| {
                format!("{file} is damaged or was written by an incompatible version of weir")
            })?;
            parts.insert(file, held);
        }
        let mut out = BTreeMap::new();
        for (group, files) in &chains {
            let chain = files
                .iter()
                .map(|f| {
                    parts
                        .get_mut(f)
                        .and_then(|held| held.remove(group))
                        .ok_or_else(|| format!("{f} lacks key group {group} of `{operator}`"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            out.insert(*group, chain);
        }
        Ok(Restored { parts: out, chains })
    }
}

fn backend(e: impl std::fmt::Display) -> StateError {
    StateError::Backend(e.to_string())
}

impl StateBackend for DurableBackend {
    fn write(
        &self,
        epoch: Epoch,
        operator: &str,
        worker: usize,
        parts: Vec<(KeyGroup, GroupPart)>,
    ) -> Result<(), StateError> {
        let mut all = self.written.lock().expect("written state lock");
        let written = all.entry((operator.to_string(), worker)).or_default();
        let mut chains = written.chains.clone();
        let mut sizes = written.sizes.clone();
        if !parts.is_empty() {
            let file = names::shared_state_file(operator, epoch, worker, self.run);
            let kinds: Vec<(KeyGroup, bool)> = parts
                .iter()
                .map(|(g, p)| (*g, matches!(p, GroupPart::Full(_))))
                .collect();
            let size = self
                .checkpoints
                .write_shared(&file, encode_parts(parts))
                .map_err(backend)?;
            sizes.insert(file.clone(), size);
            extend_chains(
                &mut chains,
                kinds
                    .into_iter()
                    .map(|(g, full)| (g, full, file.clone()))
                    .collect(),
            );
        } else {
            chains.clear();
        }
        let used: BTreeSet<&String> = chains.values().flatten().collect();
        sizes.retain(|f, _| used.contains(f));
        let index = StateIndex {
            version: INDEX_VERSION,
            chains,
        };
        let bytes = bincode::serialize(&index).map_err(backend)?;
        self.checkpoints
            .write(epoch, &names::state_file(operator, worker), &bytes)
            .map_err(backend)?;
        *written = Written {
            chains: index.chains,
            sizes,
        };
        Ok(())
    }

    fn finished(&self, epoch: Epoch, operator: &str, worker: usize) -> Result<(), StateError> {
        let all = self.written.lock().expect("written state lock");
        let empty = BTreeMap::new();
        let shared = all
            .get(&(operator.to_string(), worker))
            .map_or(&empty, |w| &w.sizes);
        self.checkpoints
            .done_with(epoch, &names::step(operator), worker, shared)
            .map_err(backend)
    }

    fn read(&self, operator: &str, group: KeyGroup) -> Result<Vec<GroupPart>, StateError> {
        let Some(restore) = &self.restore else {
            return Ok(Vec::new());
        };
        let mut restored = self.restored.lock().expect("restored state lock");
        if !restored.contains_key(operator) {
            let loaded = Self::load(restore, operator).map_err(backend)?;
            restored.insert(operator.to_string(), loaded);
        }
        Ok(restored
            .get_mut(operator)
            .and_then(|r| r.parts.remove(&group.0))
            .unwrap_or_default())
    }

    fn continue_chains(&self, operator: &str, worker: usize, groups: &[KeyGroup]) -> bool {
        // Parts of another job's checkpoint live in that job's directory: not continued.
        let Some(restore) = self
            .restore
            .as_ref()
            .filter(|r| r.job() == self.checkpoints.job)
        else {
            return false;
        };
        let chains: BTreeMap<u32, Vec<String>> = {
            let restored = self.restored.lock().expect("restored state lock");
            let Some(r) = restored.get(operator) else {
                return false;
            };
            groups
                .iter()
                .filter_map(|g| Some((g.0, r.chains.get(&g.0)?.clone())))
                .collect()
        };
        let shared = &restore.manifest.shared;
        let sizes = chains
            .values()
            .flatten()
            .filter_map(|f| Some((f.clone(), *shared.get(f)?)))
            .collect();
        let mut all = self.written.lock().expect("written state lock");
        all.insert((operator.to_string(), worker), Written { chains, sizes });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Participant;
    use crate::store::Store;

    fn full(b: &[u8]) -> GroupPart {
        GroupPart::Full(b.to_vec())
    }

    fn delta(b: &[u8]) -> GroupPart {
        GroupPart::Delta {
            common: Vec::new(),
            own: b.to_vec(),
        }
    }

    /// Worker 0 writes `parts` for checkpoint `epoch`; completes it when `complete`.
    fn take(
        c: &Checkpoints,
        b: &DurableBackend,
        epoch: Epoch,
        parts: Vec<(u32, GroupPart)>,
        complete: bool,
    ) {
        let parts = parts.into_iter().map(|(g, p)| (KeyGroup(g), p)).collect();
        b.write(epoch, "w", 0, parts).unwrap();
        b.finished(epoch, "w", 0).unwrap();
        if complete {
            let participants = [Participant {
                name: names::step("w"),
                every_worker: true,
            }];
            c.complete(epoch, &participants, 1, 1).unwrap();
            c.wait_for_retention();
        }
    }

    fn shared_files(c: &Checkpoints) -> Vec<Epoch> {
        let files = c.store().list(&format!("job/{}", names::SHARED)).unwrap();
        files
            .iter()
            .filter_map(|(p, _)| names::shared_epoch(p))
            .collect()
    }

    fn restored(c: &Checkpoints, group: u32) -> Vec<GroupPart> {
        let latest = c.latest().unwrap().unwrap();
        DurableBackend::new(c.clone(), Some(latest))
            .read("w", KeyGroup(group))
            .unwrap()
    }

    #[test]
    fn chains_share_parts_across_checkpoints_and_retention_keeps_what_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("file://{}", dir.path().display())).unwrap();
        let c = Checkpoints::new(store, "job");
        let b = DurableBackend::new(c.clone(), None);
        take(
            &c,
            &b,
            9,
            vec![(0, full(b"a")), (1, full(b"b")), (2, full(b"c"))],
            true,
        );
        // Group 1 in full again, 0 changed, 2 gone.
        take(&c, &b, 19, vec![(0, delta(b"a+")), (1, full(b"B"))], true);
        // Only one checkpoint is retained, yet epoch 9's file stays: 19 uses it.
        assert_eq!(c.epochs().unwrap(), vec![19]);
        assert_eq!(shared_files(&c), vec![9, 19]);
        assert_eq!(restored(&c, 0), vec![full(b"a"), delta(b"a+")]);
        assert_eq!(restored(&c, 1), vec![full(b"B")]);
        assert_eq!(restored(&c, 2), vec![]);
        let m = c.manifest(19).unwrap().unwrap();
        assert!(m.total_bytes() > m.written_bytes(), "{m:?}");
        // Checkpoint 29 is taken but fails to complete (another worker, say); 39 builds on
        // it, and completes: 29's parts are used and kept, 9's are not.
        take(&c, &b, 29, vec![(0, delta(b"x")), (1, full(b"B2"))], false);
        take(&c, &b, 39, vec![(0, full(b"A")), (1, delta(b"y"))], true);
        assert_eq!(shared_files(&c), vec![29, 39]);
        assert_eq!(restored(&c, 1), vec![full(b"B2"), delta(b"y")]);
        assert_eq!(restored(&c, 0), vec![full(b"A")]);
    }

    #[test]
    fn a_restored_run_writes_changes_on_top_of_the_restored_parts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("file://{}", dir.path().display())).unwrap();
        let c = Checkpoints::new(store, "job");
        let b = DurableBackend::new(c.clone(), None);
        take(&c, &b, 9, vec![(0, full(b"a")), (1, full(b"b"))], true);
        // A new run restores 9, takes group 0 (and 1) on worker 0, and goes on.
        let latest = c.latest().unwrap().unwrap();
        let run = DurableBackend::new(c.clone(), Some(latest));
        assert_eq!(run.read("w", KeyGroup(0)).unwrap(), vec![full(b"a")]);
        assert_eq!(run.read("w", KeyGroup(1)).unwrap(), vec![full(b"b")]);
        assert!(run.continue_chains("w", 0, &[KeyGroup(0), KeyGroup(1)]));
        take(&c, &run, 19, vec![(0, delta(b"a+")), (1, delta(b""))], true);
        assert_eq!(c.epochs().unwrap(), vec![19]);
        assert_eq!(shared_files(&c), vec![9, 19], "9's parts are used by 19");
        assert_eq!(restored(&c, 0), vec![full(b"a"), delta(b"a+")]);
        assert_eq!(restored(&c, 1), vec![full(b"b"), delta(b"")]);
        // Without a restore there is nothing to continue.
        assert!(!DurableBackend::new(c.clone(), None).continue_chains("w", 0, &[KeyGroup(0)]));
    }

    #[test]
    fn a_damaged_shared_part_skips_the_checkpoints_that_use_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("file://{}", dir.path().display())).unwrap();
        let c = Checkpoints::new(store, "job");
        let b = DurableBackend::new(c.clone(), None);
        let participants = [Participant {
            name: names::step("w"),
            every_worker: true,
        }];
        for (epoch, part) in [(9, full(b"one")), (19, delta(b"two"))] {
            b.write(epoch, "w", 0, vec![(KeyGroup(0), part)]).unwrap();
            b.finished(epoch, "w", 0).unwrap();
            c.complete(epoch, &participants, 1, 3).unwrap();
            c.wait_for_retention();
        }
        let listed = c.store().list(&format!("job/{}", names::SHARED)).unwrap();
        let newest = &listed.last().unwrap().0;
        let path = dir.path().join(newest);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert_eq!(c.latest().unwrap().unwrap().epoch(), 9);
        // Same size, other bytes: reading it says which file is damaged.
        let mut bytes = bytes;
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let latest = c.latest().unwrap().unwrap();
        assert_eq!(latest.epoch(), 19);
        let err = DurableBackend::new(c.clone(), Some(latest))
            .read("w", KeyGroup(0))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("damaged") && err.contains("shared/w/e"),
            "{err}"
        );
    }

    #[test]
    fn part_files_round_trip_and_refuse_damage() {
        let parts = vec![
            (KeyGroup(3), full(b"state")),
            (KeyGroup(5), full(&[7; 5000])),
            (
                KeyGroup(7),
                GroupPart::Delta {
                    common: b"c".to_vec(),
                    own: Vec::new(),
                },
            ),
        ];
        let bytes = encode_parts(parts.clone()).concat();
        let back = decode_parts(&bytes).unwrap();
        let expected: Vec<(u32, GroupPart)> = parts.into_iter().map(|(g, p)| (g.0, p)).collect();
        assert_eq!(back.into_iter().collect::<Vec<_>>(), expected);
        assert!(decode_parts(&bytes[..bytes.len() - 1]).is_none());
        assert!(decode_parts(&[bytes.as_slice(), b"x"].concat()).is_none());
    }
}
