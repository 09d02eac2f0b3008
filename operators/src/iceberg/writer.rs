//! Data files: every worker turns its rows into Parquet data files of the table, one set per
//! checkpoint (per flush without checkpoints), and sends their descriptions on. Files written
//! and never committed (a crash before the checkpoint completed) are orphans, never read.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use iceberg::arrow::RecordBatchPartitionSplitter;
use iceberg::spec::{serialize_data_file_to_json, DataFile, DataFileFormat};
use iceberg::table::Table;
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::partitioning::fanout_writer::FanoutWriter;
use iceberg::writer::partitioning::PartitioningWriter;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::StreamVec;
use weir_engine::checkpoint::CheckpointRun;
use weir_engine::data::{Row, Schema};
use weir_engine::event::{Epoch, Event};
use weir_engine::failure::Failures;
use weir_engine::stats::JobStats;

use super::table::{call, BatchBuilder, TableHandle};

/// The largest data file written (a bigger batch rolls over to more files).
const TARGET_FILE_SIZE: usize = 128 << 20;
/// Without checkpoints, how long rows wait before they are written and committed.
const FLUSH_EVERY: Duration = Duration::from_secs(5);

/// Writes rows of one worker as data files of the table.
pub struct DataFiles {
    table: Table,
    batches: BatchBuilder,
    splitter: Option<RecordBatchPartitionSplitter>,
    /// Unique per writer and run: names never repeat, a second writer never overwrites a file.
    prefix: String,
}

impl DataFiles {
    /// A writer for `worker`, fed rows of `schema`.
    pub fn new(
        handle: &TableHandle,
        schema: &Schema,
        job: &str,
        sink: &str,
        worker: usize,
    ) -> Result<DataFiles, String> {
        let table = handle.load()?;
        let batches = BatchBuilder::new(&table, schema)?;
        let metadata = table.metadata();
        let spec = metadata.default_partition_spec();
        let splitter = if spec.is_unpartitioned() {
            None
        } else {
            Some(
                RecordBatchPartitionSplitter::try_new_with_computed_values(
                    metadata.current_schema().clone(),
                    spec.clone(),
                )
                .map_err(|e| format!("partition spec: {e}"))?,
            )
        };
        let clean = |s: &str| {
            s.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect::<String>()
        };
        Ok(DataFiles {
            table,
            batches,
            splitter,
            prefix: format!(
                "weir-{}-{}-w{worker}-{}",
                clean(job),
                clean(sink),
                uuid::Uuid::new_v4().simple()
            ),
        })
    }

    /// Writes `rows` (batch `id`) and describes the data files as JSON.
    pub fn write(&mut self, id: Epoch, rows: &[Row]) -> Result<Vec<String>, String> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let batch = self.batches.build(rows)?;
        let metadata = self.table.metadata();
        let schema = metadata.current_schema().clone();
        let location = DefaultLocationGenerator::new(metadata).map_err(|e| e.to_string())?;
        let names = DefaultFileNameGenerator::new(
            format!("{}-b{id}", self.prefix),
            None,
            DataFileFormat::Parquet,
        );
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        let parquet = ParquetWriterBuilder::new(properties, schema.clone());
        let rolling = RollingFileWriterBuilder::new(
            parquet,
            TARGET_FILE_SIZE,
            self.table.file_io().clone(),
            location,
            names,
        );
        let builder = DataFileWriterBuilder::new(rolling);
        let splitter = &self.splitter;
        let files: Vec<DataFile> = call(Duration::from_secs(300), "write data files", async {
            match splitter {
                None => {
                    let mut writer = builder.build(None).await?;
                    writer.write(batch).await?;
                    writer.close().await
                }
                Some(splitter) => {
                    let mut writer = FanoutWriter::new(builder);
                    for (key, part) in splitter.split(&batch)? {
                        writer.write(key, part).await?;
                    }
                    writer.close().await
                }
            }
        })?;
        let spec = metadata.default_partition_spec();
        let partition_type = spec.partition_type(&schema).map_err(|e| e.to_string())?;
        files
            .into_iter()
            .map(|f| {
                serialize_data_file_to_json(f, &partition_type, metadata.format_version())
                    .map_err(|e| e.to_string())
            })
            .collect()
    }
}

/// Writes `stream` as data files on every worker: when the input passes a checkpoint epoch
/// `c`, the rows up to `c` become data files, described at time `c` on the returned stream
/// (which the committer reads). Without checkpoints, rows are flushed every few seconds.
pub fn write_data_files<'scope>(
    stream: StreamVec<'scope, Epoch, Event>,
    name: &str,
    mut files: DataFiles,
    checkpoints: Option<CheckpointRun>,
    stats: std::sync::Arc<JobStats>,
    failures: Failures,
) -> StreamVec<'scope, Epoch, String> {
    let scope = stream.scope();
    let mut builder = OperatorBuilder::new(format!("{name}.write"), scope);
    let activator = scope.activator_for(builder.operator_info().address.clone());
    let mut input = builder.new_input(stream, Pipeline);
    let (output, described) = builder.new_output();
    let mut output: OutputBuilder<_, CapacityContainerBuilder<Vec<String>>> =
        OutputBuilder::from(output);
    let name = name.to_string();
    let stats = stats.sink(&name, scope.index());

    builder.build_reschedule(move |mut initial| {
        let mut cap = initial.pop();
        // Rows by batch id (the checkpoint that closes them; the epoch without checkpoints).
        let mut open: BTreeMap<Epoch, Vec<Row>> = BTreeMap::new();
        let mut next_checkpoint = checkpoints.as_ref().and_then(|c| c.first_checkpoint());
        let mut last_flush = Instant::now();
        move |frontiers| {
            let Some(held) = cap.as_mut() else {
                input.for_each_stamp(|_, _| {});
                return false;
            };
            input.for_each_stamp(|stamp, data| {
                let Some(&epoch) = stamp.least() else { return };
                let id = match &checkpoints {
                    Some(c) => c.next_at_or_after(epoch).unwrap_or(epoch),
                    None => epoch,
                };
                let rows = open.entry(id).or_default();
                for batch in data {
                    stats.written(epoch, batch.iter().map(|e| e.ts));
                    rows.extend(batch.drain(..).map(|e| e.row));
                }
            });
            let frontier = frontiers[0].frontier().first().copied();
            let mut output = output.activate();
            let mut emit = |at: Epoch, rows: Vec<Row>| -> Result<(), String> {
                let described = files.write(at, &rows)?;
                if !described.is_empty() {
                    output
                        .session(&held.delayed(&at.max(*held.time())))
                        .give_iterator(described.into_iter());
                }
                Ok(())
            };
            let result = (|| -> Result<(), String> {
                match &checkpoints {
                    Some(run) => {
                        while let Some(c) =
                            next_checkpoint.filter(|c| frontier.is_some_and(|f| f > *c))
                        {
                            emit(c, take_up_to(&mut open, c))?;
                            next_checkpoint = run.next_at_or_after(c + 1);
                        }
                    }
                    None => {
                        let passed = frontier.map_or(Epoch::MAX, |f| f.saturating_sub(1));
                        let due = frontier.is_none() || last_flush.elapsed() >= FLUSH_EVERY;
                        if due && open.keys().next().is_some_and(|e| *e <= passed) {
                            let at = *open.keys().next().expect("checked");
                            emit(at, take_up_to(&mut open, passed))?;
                            last_flush = Instant::now();
                        } else if !open.is_empty() && frontier.is_some() {
                            activator
                                .activate_after(FLUSH_EVERY.saturating_sub(last_flush.elapsed()));
                        }
                    }
                }
                if frontier.is_none() && !open.is_empty() {
                    // The input has ended: the rest goes with the final checkpoint.
                    let at = *held.time();
                    emit(at, take_up_to(&mut open, Epoch::MAX - 1))?;
                }
                Ok(())
            })();
            drop(output);
            if let Err(e) = result {
                failures.report(format!("sink `{name}`: {e}"));
                cap = None;
                return false;
            }
            let hold = match (&checkpoints, frontier) {
                (_, None) => None,
                (Some(_), Some(f)) => Some(next_checkpoint.unwrap_or(f).max(f)),
                (None, Some(f)) => Some(open.keys().next().copied().unwrap_or(f).min(f)),
            };
            match hold {
                Some(h) if *held.time() < h => held.downgrade(&h),
                Some(_) => {}
                None => cap = None,
            }
            cap.is_some()
        }
    });
    described
}

/// Removes and concatenates the rows of every batch up to `id`.
fn take_up_to(open: &mut BTreeMap<Epoch, Vec<Row>>, id: Epoch) -> Vec<Row> {
    let rest = open.split_off(&id.saturating_add(1));
    let mut rows = Vec::new();
    for (_, mut v) in std::mem::replace(open, rest) {
        rows.append(&mut v);
    }
    rows
}
