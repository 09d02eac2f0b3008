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
/// With checkpoints, rows are written to the checkpoint's open data files in chunks of this
/// many: a long checkpoint interval holds Parquet row groups, not rows.
const CHUNK_ROWS: usize = 8192;

type Rolling = RollingFileWriterBuilder<
    ParquetWriterBuilder,
    DefaultLocationGenerator,
    DefaultFileNameGenerator,
>;
type FileBuilder =
    DataFileWriterBuilder<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;

/// The data files a batch is being written to.
enum OpenFiles {
    Plain(Box<<FileBuilder as IcebergWriterBuilder>::R>),
    Partitioned(Box<FanoutWriter<FileBuilder>>),
}

/// A batch of rows not yet described: rows waiting for a chunk, and the files the earlier
/// chunks went to.
#[derive(Default)]
struct OpenBatch {
    rows: Vec<Row>,
    files: Option<OpenFiles>,
}

/// Writes rows of one worker as data files of the table.
pub struct DataFiles {
    table: Table,
    batches: BatchBuilder,
    splitter: Option<RecordBatchPartitionSplitter>,
    /// Names from a prefix unique per writer and run, numbered (clones share the count): names
    /// never repeat, a second writer never overwrites a file.
    rolling: Rolling,
    /// Whether rows are written as they come (in chunks) or when their batch closes.
    streaming: bool,
    open: BTreeMap<Epoch, OpenBatch>,
}

impl DataFiles {
    /// A writer for `worker`, fed rows of `schema`; `streaming` writes rows as they come
    /// instead of when their batch closes.
    pub fn new(
        handle: &TableHandle,
        schema: &Schema,
        (job, sink, worker): (&str, &str, usize),
        streaming: bool,
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
        let prefix = format!(
            "weir-{}-{}-w{worker}-{}",
            clean(job),
            clean(sink),
            uuid::Uuid::new_v4().simple()
        );
        let location = DefaultLocationGenerator::new(metadata).map_err(|e| e.to_string())?;
        let names = DefaultFileNameGenerator::new(prefix, None, DataFileFormat::Parquet);
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        let parquet = ParquetWriterBuilder::new(properties, metadata.current_schema().clone());
        let rolling = RollingFileWriterBuilder::new(
            parquet,
            TARGET_FILE_SIZE,
            table.file_io().clone(),
            location,
            names,
        );
        Ok(DataFiles {
            rolling,
            table,
            batches,
            splitter,
            streaming,
            open: BTreeMap::new(),
        })
    }

    /// Adds rows to batch `id`; when streaming, a full chunk goes to the batch's data files.
    pub fn add(&mut self, id: Epoch, rows: impl IntoIterator<Item = Row>) -> Result<(), String> {
        let batch = self.open.entry(id).or_default();
        batch.rows.extend(rows);
        if self.streaming && batch.rows.len() >= CHUNK_ROWS {
            let rows = std::mem::take(&mut batch.rows);
            let files = batch.files.take();
            let files = self.write_chunk(files, &rows)?;
            self.open.get_mut(&id).expect("open").files = Some(files);
        }
        Ok(())
    }

    /// The first batch not yet described.
    pub fn first_open(&self) -> Option<Epoch> {
        self.open.keys().next().copied()
    }

    /// Closes every batch up to `id` and describes their data files as JSON. Rows of batches
    /// never written go to one new set of files.
    pub fn close_up_to(&mut self, id: Epoch) -> Result<Vec<String>, String> {
        let rest = self.open.split_off(&id.saturating_add(1));
        let closing = std::mem::replace(&mut self.open, rest);
        let mut waiting = Vec::new();
        let mut written = Vec::new();
        for (_, mut batch) in closing {
            match batch.files.take() {
                Some(files) => written.push(self.write_chunk(Some(files), &batch.rows)?),
                None => waiting.append(&mut batch.rows),
            }
        }
        if !waiting.is_empty() {
            written.push(self.write_chunk(None, &waiting)?);
        }
        let mut files: Vec<DataFile> = Vec::new();
        for open in written {
            files.extend(call(Duration::from_secs(300), "close data files", async {
                match open {
                    OpenFiles::Plain(mut w) => w.close().await,
                    OpenFiles::Partitioned(w) => w.close().await,
                }
            })?);
        }
        let metadata = self.table.metadata();
        let schema = metadata.current_schema();
        let spec = metadata.default_partition_spec();
        let partition_type = spec.partition_type(schema).map_err(|e| e.to_string())?;
        files
            .into_iter()
            .map(|f| {
                serialize_data_file_to_json(f, &partition_type, metadata.format_version())
                    .map_err(|e| e.to_string())
            })
            .collect()
    }

    /// Writes `rows` to `files` (new ones when `None`).
    fn write_chunk(&self, files: Option<OpenFiles>, rows: &[Row]) -> Result<OpenFiles, String> {
        let batch = (!rows.is_empty())
            .then(|| self.batches.build(rows))
            .transpose()?;
        let builder = DataFileWriterBuilder::new(self.rolling.clone());
        let splitter = &self.splitter;
        call(Duration::from_secs(300), "write data files", async {
            let mut files = match files {
                Some(files) => files,
                None => match splitter {
                    None => OpenFiles::Plain(Box::new(builder.build(None).await?)),
                    Some(_) => OpenFiles::Partitioned(Box::new(FanoutWriter::new(builder))),
                },
            };
            if let Some(batch) = batch {
                match (&mut files, splitter) {
                    (OpenFiles::Plain(w), _) => w.write(batch).await?,
                    (OpenFiles::Partitioned(w), Some(splitter)) => {
                        for (key, part) in splitter.split(&batch)? {
                            w.write(key, part).await?;
                        }
                    }
                    (OpenFiles::Partitioned(_), None) => unreachable!("partitioned without a spec"),
                }
            }
            Ok(files)
        })
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
        let mut next_checkpoint = checkpoints.as_ref().and_then(|c| c.first_checkpoint());
        let mut last_flush = Instant::now();
        move |frontiers| {
            let Some(held) = cap.as_mut() else {
                input.for_each_stamp(|_, _| {});
                return false;
            };
            // Rows by batch id: the checkpoint that closes them; the epoch without checkpoints.
            let mut added = Ok(());
            input.for_each_stamp(|stamp, data| {
                let Some(&epoch) = stamp.least() else { return };
                let id = match &checkpoints {
                    Some(c) => c.next_at_or_after(epoch).unwrap_or(epoch),
                    None => epoch,
                };
                for batch in data {
                    stats.written(epoch, batch.iter().map(|e| e.ts));
                    if added.is_ok() {
                        added = files.add(id, batch.drain(..).map(|e| e.row));
                    }
                }
            });
            let frontier = frontiers[0].frontier().first().copied();
            let mut output = output.activate();
            let mut emit = |files: &mut DataFiles, at: Epoch, up_to: Epoch| -> Result<(), String> {
                let described = files.close_up_to(up_to)?;
                if !described.is_empty() {
                    output
                        .session(&held.delayed(&at.max(*held.time())))
                        .give_iterator(described.into_iter());
                }
                Ok(())
            };
            let result = (|| -> Result<(), String> {
                added?;
                match &checkpoints {
                    Some(run) => {
                        while let Some(c) =
                            next_checkpoint.filter(|c| frontier.is_some_and(|f| f > *c))
                        {
                            emit(&mut files, c, c)?;
                            next_checkpoint = run.next_at_or_after(c + 1);
                        }
                    }
                    None => {
                        let passed = frontier.map_or(Epoch::MAX, |f| f.saturating_sub(1));
                        let due = frontier.is_none() || last_flush.elapsed() >= FLUSH_EVERY;
                        if due && files.first_open().is_some_and(|e| e <= passed) {
                            let at = files.first_open().expect("checked");
                            emit(&mut files, at, passed)?;
                            last_flush = Instant::now();
                        } else if files.first_open().is_some() && frontier.is_some() {
                            activator
                                .activate_after(FLUSH_EVERY.saturating_sub(last_flush.elapsed()));
                        }
                    }
                }
                if frontier.is_none() && files.first_open().is_some() {
                    // The input has ended: the rest goes with the final checkpoint.
                    let at = *held.time();
                    emit(&mut files, at, Epoch::MAX - 1)?;
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
                (None, Some(f)) => Some(files.first_open().unwrap_or(f).min(f)),
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

#[cfg(test)]
mod tests {
    use weir_engine::data::{DataType, Field, Value};

    use super::*;
    use crate::iceberg::TableConfig;
    use crate::sink::{PartitionField, PartitionTransform};

    fn files(dir: &std::path::Path, partitioned: bool, streaming: bool) -> DataFiles {
        let schema = Schema::new(vec![
            Field::new("user_id", DataType::String),
            Field::new("n", DataType::Int),
            Field::new("ts", DataType::Timestamp),
        ])
        .unwrap();
        let config = TableConfig {
            catalog: format!("sqlite://{}/catalog.db", dir.display()),
            catalog_name: "weir".into(),
            warehouse: Some(format!("file://{}/warehouse", dir.display())),
            table: "t.rows".into(),
            partition_by: if partitioned {
                vec![PartitionField {
                    transform: PartitionTransform::Day,
                    column: "ts".into(),
                }]
            } else {
                Vec::new()
            },
            schema: schema.clone(),
            timeout: Duration::from_secs(30),
        };
        let handle = TableHandle::open(&config).unwrap();
        DataFiles::new(&handle, &schema, ("job", "sink", 0), streaming).unwrap()
    }

    fn rows(from: i64, n: i64) -> Vec<Row> {
        (from..from + n)
            .map(|i| {
                Row::from_values(&[
                    Value::Str(format!("u{}", i % 7).into()),
                    Value::Int(i),
                    // Three days.
                    Value::Ts(i % 3 * 86_400_000),
                ])
            })
            .collect()
    }

    /// Rows described by data-file JSON.
    fn records(described: &[String]) -> u64 {
        described
            .iter()
            .map(|d| {
                let v: serde_json::Value = serde_json::from_str(d).unwrap();
                v["record_count"].as_u64().unwrap()
            })
            .sum()
    }

    #[test]
    fn streamed_batches_hold_chunks_not_rows_and_describe_every_row() {
        for partitioned in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let mut f = files(dir.path(), partitioned, true);
            for i in 0..5 {
                f.add(3, rows(i * 5000, 5000)).unwrap();
                assert!(
                    f.open[&3].rows.len() < CHUNK_ROWS,
                    "rows wait only for a chunk"
                );
            }
            assert!(f.open[&3].files.is_some());
            f.add(2, rows(100_000, 100)).unwrap();
            f.add(5, rows(200_000, 10)).unwrap();
            let described = f.close_up_to(3).unwrap();
            assert_eq!(records(&described), 25_100, "partitioned: {partitioned}");
            if partitioned {
                assert!(described.len() >= 3, "a file per day at least");
            }
            assert_eq!(f.first_open(), Some(5));
            assert_eq!(records(&f.close_up_to(5).unwrap()), 10);
            assert_eq!(f.first_open(), None);
            assert!(f.close_up_to(9).unwrap().is_empty());
        }
    }

    #[test]
    fn without_streaming_rows_wait_for_their_batch_to_close() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = files(dir.path(), false, false);
        f.add(1, rows(0, 20_000)).unwrap();
        f.add(2, rows(20_000, 5)).unwrap();
        assert!(f.open[&1].files.is_none());
        let described = f.close_up_to(2).unwrap();
        assert_eq!(described.len(), 1, "closed batches share files");
        assert_eq!(records(&described), 20_005);
    }
}
