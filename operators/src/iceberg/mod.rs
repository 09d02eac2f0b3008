//! The Iceberg sink (cargo feature `iceberg`): rows appended to an Iceberg table, exactly once
//! with checkpoints.
//!
//! The shape is Flink's: every worker **writes** its rows as Parquet data files of the table
//! when its input passes a checkpoint ([`writer`]); the files' descriptions go to worker 0,
//! whose **committer** records them in the checkpoint and, once the checkpoint is complete,
//! appends them all in one snapshot ([`commit`]). Recovery walks the snapshot ancestry, so a
//! checkpoint's files are committed once whatever the crash. Without checkpoints rows are
//! committed every few seconds and at the end (at least once).
//!
//! Tables are created from the stream's schema when missing (strings, 64-bit ints, doubles,
//! booleans, timestamps with time zone in microseconds), with an optional partition spec
//! (`day(window_end)`, `bucket(16, user_id)`, …). Catalogs: the SQL catalog on a SQLite file
//! (`sqlite:///abs/catalog.db`, the embedded default; PyIceberg's `SqlCatalog` reads it when
//! it uses the same catalog name) and the REST catalog (`http(s)://…`). Metadata and data files
//! go through weir's [`Store`](weir_engine::store::Store) ([`storage`]): `file://` and
//! `hdfs://` warehouses alike.

pub mod commit;
pub mod storage;
pub mod table;
pub mod writer;

use std::sync::Arc;

use timely::dataflow::operators::Exchange;
use timely::dataflow::StreamVec;
use weir_engine::checkpoint::CheckpointRun;
use weir_engine::event::{Epoch, Event};
use weir_engine::failure::Failures;
use weir_engine::stats::JobStats;

pub use commit::IcebergCommitter;
pub use table::{TableConfig, TableHandle};
pub use writer::DataFiles;

use crate::sink::{two_phase_sink, Done};

/// An Iceberg sink's settings.
#[derive(Clone, Debug)]
pub struct IcebergSinkConfig {
    /// The sink's name (in errors, checkpoints and snapshot summaries).
    pub name: String,
    /// The job's name (`weir.job-id` of every snapshot).
    pub job: String,
    /// The table and its catalog.
    pub table: TableConfig,
}

/// Appends `stream` to the sink's table. `participant` is the committer's name in
/// checkpoints; `generation` the run's lineage. Connects (and creates the table) now, so a
/// catalog that is not there fails the build with a clear error.
pub fn iceberg_sink<'scope>(
    stream: StreamVec<'scope, Epoch, Event>,
    config: &IcebergSinkConfig,
    participant: &str,
    checkpoints: Option<CheckpointRun>,
    generation: u64,
    stats: Arc<JobStats>,
    failures: Failures,
) -> Result<Done<'scope>, String> {
    let worker = stream.scope().index();
    let err = |e: String| format!("sink `{}`: {e}", config.name);
    let handle = TableHandle::open(&config.table).map_err(err)?;
    let files = DataFiles::new(
        &handle,
        &config.table.schema,
        (&config.job, &config.name, worker),
        checkpoints.is_some(),
    )
    .map_err(err)?;
    let stats_for_commits = stats.clone();
    let described = writer::write_data_files(
        stream,
        &config.name,
        files,
        checkpoints.clone(),
        stats,
        failures.clone(),
    );
    let committer = IcebergCommitter::new(handle, &config.job, &config.name, generation);
    if let Some(restored) = checkpoints.as_ref().and_then(|c| c.restore.as_ref()) {
        if worker == 0 {
            committer.warn_if_restored_behind(restored.epoch());
        }
    }
    Ok(two_phase_sink(
        described.exchange(|_| 0),
        participant,
        committer,
        checkpoints,
        stats_for_commits,
        failures,
    ))
}
