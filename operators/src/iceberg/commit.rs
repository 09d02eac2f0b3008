//! The committer: one Iceberg snapshot per completed checkpoint, appending the data files every
//! worker wrote for it. It runs on worker 0 and is a two-phase sink whose items are data-file
//! descriptions: prepared (recorded in the checkpoint) when its input passes the checkpoint,
//! committed once the checkpoint is complete.
//!
//! Every snapshot's summary carries `weir.job-id`, `weir.sink`, `weir.generation` (the run's
//! lineage) and `weir.checkpoint-id`. Before committing batch `c` the committer walks the
//! ancestry of the table's current snapshot to the newest snapshot of its own lineage; if that
//! one's checkpoint id is `c` or later the batch is already in the table and is skipped. So a
//! recovery commits what the crash left uncommitted and never commits twice, and a commit
//! whose outcome is unknown (an error after the catalog took it) is checked the same way.

use std::collections::HashMap;

use iceberg::spec::deserialize_data_file_from_json;
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::util::snapshot::ancestors_of;
use weir_engine::event::Epoch;

use super::table::{call, TableHandle};
use crate::sink::TwoPhase;

/// Summary keys of weir's snapshots.
pub mod summary {
    /// The job's name.
    pub const JOB: &str = "weir.job-id";
    /// The sink's name.
    pub const SINK: &str = "weir.sink";
    /// The lineage of runs (a fresh start begins a new one).
    pub const GENERATION: &str = "weir.generation";
    /// The checkpoint whose batch the snapshot appends.
    pub const CHECKPOINT: &str = "weir.checkpoint-id";
}

/// Commits data files to the table, once per checkpoint.
pub struct IcebergCommitter {
    handle: TableHandle,
    job: String,
    sink: String,
    generation: u64,
}

impl IcebergCommitter {
    /// The committer of sink `sink` of `job`, in lineage `generation`.
    pub fn new(handle: TableHandle, job: &str, sink: &str, generation: u64) -> Self {
        IcebergCommitter {
            handle,
            job: job.to_string(),
            sink: sink.to_string(),
            generation,
        }
    }

    /// The newest checkpoint of this lineage in the table's current ancestry.
    pub fn last_committed(&self, table: &Table) -> Option<Epoch> {
        let metadata = table.metadata_ref();
        let current = metadata.current_snapshot_id()?;
        let generation = self.generation.to_string();
        let found = ancestors_of(&metadata, current).find_map(|snapshot| {
            let p = &snapshot.summary().additional_properties;
            let ours = p.get(summary::JOB) == Some(&self.job)
                && p.get(summary::SINK) == Some(&self.sink)
                && p.get(summary::GENERATION) == Some(&generation);
            ours.then(|| p.get(summary::CHECKPOINT)?.parse().ok())
                .flatten()
        });
        found
    }

    /// A run restored from checkpoint `restored` into a table that already holds a later
    /// checkpoint of the same lineage (an older checkpoint or savepoint was restored, not the
    /// newest): what was committed after `restored` will be appended again. Says so, once,
    /// at start; the run goes on (the user asked for it).
    pub fn warn_if_restored_behind(&self, restored: Epoch) {
        let Ok(table) = self.handle.load() else {
            return;
        };
        if let Some(last) = self.last_committed(&table).filter(|&c| c > restored) {
            tracing::warn!(
                "sink `{}`: table {} already holds checkpoint {last} of this job, later than the \
                 restored checkpoint {restored}: what was committed after {restored} will be \
                 appended again (restore `latest` to continue without repeating, or replay into \
                 a shadow sink)",
                self.sink,
                self.handle.ident
            );
        }
    }

    /// Appends batch `id` unless it is in the table already; true when it was appended now.
    fn commit_files(&self, id: Epoch, files: &[String]) -> Result<bool, String> {
        let table = self.handle.load()?;
        if self.last_committed(&table).is_some_and(|c| c >= id) {
            return Ok(false);
        }
        let metadata = table.metadata();
        let schema = metadata.current_schema();
        let spec = metadata.default_partition_spec();
        let partition_type = spec.partition_type(schema).map_err(|e| e.to_string())?;
        let data_files = files
            .iter()
            .map(|json| {
                deserialize_data_file_from_json(json, spec.spec_id(), &partition_type, schema)
                    .map_err(|e| format!("checkpoint {id}: a data file cannot be read back: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let properties = HashMap::from([
            (summary::JOB.to_string(), self.job.clone()),
            (summary::SINK.to_string(), self.sink.clone()),
            (summary::GENERATION.to_string(), self.generation.to_string()),
            (summary::CHECKPOINT.to_string(), id.to_string()),
        ]);
        let tx = Transaction::new(&table);
        let tx = tx
            .fast_append()
            .set_snapshot_properties(properties)
            .add_data_files(data_files)
            .apply(tx)
            .map_err(|e| e.to_string())?;
        let what = format!("commit checkpoint {id} to table {}", self.handle.ident);
        weir_engine::crash::point("iceberg.before_commit");
        let committed = call(self.handle.timeout, &what, tx.commit(&*self.handle.catalog));
        weir_engine::crash::point("iceberg.after_commit");
        match committed {
            Ok(_) => Ok(true),
            Err(e) => {
                // The catalog may have taken it before the error: look before failing.
                let table = self.handle.load()?;
                if self.last_committed(&table).is_some_and(|c| c >= id) {
                    Ok(true)
                } else {
                    Err(e)
                }
            }
        }
    }
}

impl TwoPhase for IcebergCommitter {
    type Record = String;

    fn event_time(_: &String) -> Option<i64> {
        None
    }
    type Item = String;
    type Prepared = Vec<String>;

    fn item(&mut self, file: String) -> Result<String, String> {
        Ok(file)
    }

    fn prepare(&mut self, _id: Epoch, files: Vec<String>) -> Result<Vec<String>, String> {
        Ok(files)
    }

    fn commit(&mut self, id: Epoch, files: &Vec<String>) -> Result<(), String> {
        self.commit_files(id, files).map(|_| ())
    }

    fn recover(&mut self, owner: usize, batches: Vec<(Epoch, Vec<String>)>) -> Result<(), String> {
        let (mut skipped, mut committed) = (0, 0);
        for (id, files) in batches {
            match self.commit_files(id, &files)? {
                true => committed += 1,
                false => skipped += 1,
            }
        }
        if skipped + committed > 0 {
            tracing::info!(
                "sink `{}`: recovered worker {owner}: {skipped} batches already committed, \
                 {committed} committed now (table {})",
                self.sink,
                self.handle.ident
            );
        }
        Ok(())
    }
}
