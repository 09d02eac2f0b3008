//! The reading side of checkpoints: checking one against its manifest, finding the newest
//! intact one, and reading its files back for a restore.

use std::collections::BTreeMap;

use super::{dir, names, unframe, Checkpoints, Manifest, MANIFEST};
use crate::event::Epoch;
use crate::store::StoreError;

impl Checkpoints {
    /// The manifest of checkpoint `epoch`, if it has one (it is then complete).
    pub fn manifest(&self, epoch: Epoch) -> Result<Option<Manifest>, String> {
        let Some(bytes) = self
            .store
            .get(&self.path(epoch, MANIFEST))
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("its manifest is damaged: {e}"))
    }

    /// The files present in checkpoint `epoch`'s directory, relative to it, with their sizes.
    pub(super) fn files(&self, epoch: Epoch) -> Result<BTreeMap<String, u64>, StoreError> {
        let prefix = format!("{}/{}", self.job, dir(epoch));
        Ok(self
            .store
            .list(&prefix)?
            .into_iter()
            .map(|(p, s)| {
                let relative = p.strip_prefix(&prefix).unwrap_or(&p);
                (relative.trim_start_matches('/').to_string(), s)
            })
            .collect())
    }

    /// Checks checkpoint `epoch` against its manifest.
    fn verify(&self, epoch: Epoch) -> Result<Manifest, String> {
        let manifest = self
            .manifest(epoch)?
            .ok_or("it has no manifest (incomplete)")?;
        let present = self.files(epoch).map_err(|e| e.to_string())?;
        check_sizes(&manifest.files, &present)?;
        if !manifest.shared.is_empty() {
            let prefix = format!("{}/", self.job);
            let shared: BTreeMap<String, u64> = self
                .store
                .list(&format!("{}/{}", self.job, names::SHARED))
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|(p, s)| (p.strip_prefix(&prefix).unwrap_or(&p).to_string(), s))
                .collect();
            check_sizes(&manifest.shared, &shared)?;
        }
        Ok(manifest)
    }

    /// The newest complete, intact checkpoint; damaged or partial ones are skipped with a log
    /// line naming what is wrong.
    pub fn latest(&self) -> Result<Option<Restore>, StoreError> {
        for epoch in self.epochs()?.into_iter().rev() {
            match self.verify(epoch) {
                Ok(manifest) => {
                    return Ok(Some(Restore {
                        checkpoints: self.clone(),
                        manifest,
                    }))
                }
                Err(why) => tracing::warn!(
                    "checkpoint {} of job `{}` in {} skipped: {why}",
                    dir(epoch),
                    self.job,
                    self.store.url()
                ),
            }
        }
        Ok(None)
    }

    /// Checkpoint `epoch`, if complete and intact.
    pub fn at(&self, epoch: Epoch) -> Result<Restore, String> {
        let manifest = self.verify(epoch).map_err(|why| {
            format!(
                "checkpoint {} of job `{}` cannot be restored: {why}",
                dir(epoch),
                self.job
            )
        })?;
        Ok(Restore {
            checkpoints: self.clone(),
            manifest,
        })
    }
}

/// Checks that every file `expected` names is `present` with its size.
fn check_sizes(
    expected: &BTreeMap<String, u64>,
    present: &BTreeMap<String, u64>,
) -> Result<(), String> {
    for (file, size) in expected {
        match present.get(file) {
            None => return Err(format!("file {file} is missing")),
            Some(s) if s != size => {
                return Err(format!(
                    "file {file} has {s} bytes, the manifest says {size}"
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// A complete checkpoint to restore from.
#[derive(Clone, Debug)]
pub struct Restore {
    checkpoints: Checkpoints,
    /// Its manifest.
    pub manifest: Manifest,
}

impl Restore {
    /// The checkpoint epoch.
    pub fn epoch(&self) -> Epoch {
        self.manifest.epoch
    }

    /// A file of the checkpoint, checked against its checksum; `None` when it has none.
    pub fn read(&self, file: &str) -> Result<Option<Vec<u8>>, String> {
        if !self.manifest.files.contains_key(file) {
            return Ok(None);
        }
        let path = self.checkpoints.path(self.epoch(), file);
        let bytes = self
            .checkpoints
            .store
            .get(&path)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{path} disappeared from {}", self.checkpoints.store.url()))?;
        unframe(bytes).map(Some).ok_or_else(|| {
            format!(
                "{path} in {} is damaged (checksum mismatch)",
                self.checkpoints.store.url()
            )
        })
    }

    /// The job that took it.
    pub fn job(&self) -> &str {
        &self.checkpoints.job
    }

    /// The checkpoint without its sinks' files: for a run of another job (a replay into shadow
    /// sinks) that takes over the state and source positions, while its sinks start afresh.
    pub fn without_sinks(mut self) -> Self {
        self.manifest.files.retain(|f, _| !f.starts_with("sinks/"));
        self
    }

    /// A shared file the checkpoint uses (`path` relative to the job's directory), checked
    /// against its checksum.
    pub fn read_shared(&self, path: &str) -> Result<Vec<u8>, String> {
        if !self.manifest.shared.contains_key(path) {
            return Err(format!(
                "checkpoint {} does not use {path}",
                dir(self.epoch())
            ));
        }
        let full = format!("{}/{path}", self.checkpoints.job);
        let store = &self.checkpoints.store;
        let bytes = store
            .get(&full)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{full} disappeared from {}", store.url()))?;
        unframe(bytes)
            .ok_or_else(|| format!("{full} in {} is damaged (checksum mismatch)", store.url()))
    }

    /// The files of the checkpoint under `prefix`.
    pub fn files_under(&self, prefix: &str) -> Vec<String> {
        self.manifest
            .files
            .range(prefix.to_string()..)
            .take_while(|(f, _)| f.starts_with(prefix))
            .map(|(f, _)| f.clone())
            .collect()
    }
}
