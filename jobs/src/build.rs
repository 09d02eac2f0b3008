//! From a [`Plan`] to a timely dataflow, on one worker.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::{ProbeHandle, Scope, StreamVec};
use weir_engine::checkpoint::{names, CheckpointRun, DurableBackend, Participant};
use weir_engine::clock::EpochClock;
use weir_engine::event::{Epoch, Event, WATERMARK_MIN};
use weir_engine::failure::Failures;
use weir_engine::state::{CheckpointSchedule, StateBackend, StateContext};
use weir_engine::stats::JobStats;
use weir_engine::watermark::{delay_stream, min_watermarks};
use weir_operators::filter_project::FilterProject;
use weir_operators::ordered::{ordered, OrderedConfig};
use weir_operators::sink::{
    encode_lines, null_sink, write_sorted_lines, LineWriter, SortedJsonFile, StdoutWriter,
};
use weir_operators::source::file::{plan_splits, JsonLinesReader};
use weir_operators::source::generator::{GeneratorReader, Pools};
use weir_operators::source::{source, PartitionReader, Partitions, SourceConfig};
use weir_operators::window::{WindowAggregate, WindowConfig};

use crate::plan::{
    IcebergOutput, KafkaInput, KafkaOutput, KeyedOp, Plan, RedisOutput, SinkOp, SourceInput,
    SourcePlan, StepOp,
};

/// Where operator state is snapshotted and restored from, and when.
#[derive(Clone)]
pub struct StateSetup {
    /// The store.
    pub backend: Arc<dyn StateBackend>,
    /// Checkpoint epochs.
    pub schedule: CheckpointSchedule,
}

/// Durable checkpoints of a run: where, when, what it resumes from, and who takes part.
#[derive(Clone)]
pub struct DurableSetup {
    /// The run's checkpoints.
    pub run: CheckpointRun,
    /// Every participant of the dataflow (filled in by the build, the same on every worker).
    pub participants: Arc<Mutex<BTreeSet<Participant>>>,
}

impl DurableSetup {
    /// Notes a participant and hands it the run's checkpoints.
    fn join(&self, name: String, every_worker: bool) -> CheckpointRun {
        self.register(name, every_worker);
        self.run.clone()
    }

    fn register(&self, name: String, every_worker: bool) {
        self.participants
            .lock()
            .expect("participants lock")
            .insert(Participant { name, every_worker });
    }
}

/// What every worker of a run shares.
#[derive(Clone)]
pub struct BuildContext {
    /// Counters for progress and summary.
    pub stats: Arc<JobStats>,
    /// Failures raised inside operators.
    pub failures: Failures,
    /// Keyed state snapshots, when enabled.
    pub state: Option<StateSetup>,
    /// Durable checkpoints (sources, steps and sinks), when the job has `checkpoint:`.
    pub durable: Option<DurableSetup>,
    /// Unfinished epochs downstream before sources pause.
    pub max_inflight_epochs: u64,
    /// Where the epoch clock starts, agreed by every worker before the dataflow is built
    /// ([`agree_on_anchor`](weir_engine::clock::agree_on_anchor)); unset: when the dataflow
    /// is built (one worker).
    pub clock_anchor: Option<SystemTime>,
    /// The lineage sinks version their writes by when the run takes no checkpoints (its
    /// start time, ms); with checkpoints, the checkpoints' lineage.
    pub generation: u64,
}

/// How much time of unfinished epochs downstream sources allow before they pause reading.
const INFLIGHT_TIME: std::time::Duration = std::time::Duration::from_millis(80);

impl BuildContext {
    /// A context without state snapshots.
    pub fn new(stats: Arc<JobStats>, failures: Failures) -> Self {
        BuildContext {
            stats,
            failures,
            state: None,
            durable: None,
            max_inflight_epochs: 8,
            clock_anchor: None,
            generation: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_millis() as u64),
        }
    }

    /// A context whose run takes durable checkpoints (state included).
    pub fn with_durable(mut self, durable: DurableSetup) -> Self {
        self.state = Some(StateSetup {
            backend: Arc::new(DurableBackend::new(
                durable.run.checkpoints.clone(),
                durable.run.restore.clone(),
            )),
            schedule: durable.run.schedule.clone(),
        });
        self.durable = Some(durable);
        self
    }
}

/// Opens the partitions of `source` that `worker` (of `peers`) reads (for Kafka, this waits
/// for the brokers, up to the source's `connect_timeout`).
pub fn partitions_for(
    source: &SourcePlan,
    job: &str,
    worker: usize,
    peers: usize,
    restore: Option<&CheckpointRun>,
) -> Result<Partitions, String> {
    match &source.input {
        SourceInput::Kafka(k) => kafka_partitions(source, k, job, worker, peers, restore),
        _ => readers_for(source, worker, peers).map(Partitions::fixed),
    }
}

#[cfg(feature = "kafka")]
fn kafka_partitions(
    source: &SourcePlan,
    k: &KafkaInput,
    job: &str,
    worker: usize,
    peers: usize,
    restore: Option<&CheckpointRun>,
) -> Result<Partitions, String> {
    use weir_operators::kafka::{open_partitions, Connection, KafkaSourceConfig};
    // A restored run assigns each partition at its checkpointed offset directly (rather than
    // seeking after the assignment, which librdkafka may apply after fetching has started).
    let mut resume = std::collections::BTreeMap::new();
    if let Some(run) = restore {
        let positions = weir_operators::source::restored_positions(run, &source.name)
            .map_err(|e| format!("source `{}` cannot restore: {e}", source.name))?;
        for (location, (position, _)) in positions {
            let partition = location
                .strip_prefix(&format!("{}[", k.topic))
                .and_then(|p| p.strip_suffix(']'))
                .and_then(|p| p.parse::<i32>().ok());
            let offset = <[u8; 8]>::try_from(position.as_slice()).map(i64::from_le_bytes);
            if let (Some(p), Ok(o)) = (partition, offset) {
                if o >= 0 {
                    resume.insert(p, o);
                }
            }
        }
    }
    let config = KafkaSourceConfig {
        name: source.name.clone(),
        connection: Connection {
            brokers: k.brokers.clone(),
            properties: k.properties.clone(),
            connect_timeout: k.connect_timeout,
        },
        topic: k.topic.clone(),
        group: k
            .group
            .clone()
            .unwrap_or_else(|| format!("weir-{job}-{}", source.name)),
        start: k.start.clone(),
        until: k.until.clone(),
        discovery: k.discovery,
        schema: source.schema.clone(),
        ts_column: source.ts_column,
        metadata: k.metadata,
        debezium: source.debezium,
        resume,
        fail_on_deleted: k.fail_on_deleted,
    };
    open_partitions(&config, worker, peers).map_err(|e| format!("source `{}`: {e}", source.name))
}

#[cfg(not(feature = "kafka"))]
fn kafka_partitions(
    source: &SourcePlan,
    _: &KafkaInput,
    _: &str,
    _: usize,
    _: usize,
    _: Option<&CheckpointRun>,
) -> Result<Partitions, String> {
    Err(format!(
        "source `{}`: this weir was built without Kafka support (cargo feature `kafka`)",
        source.name
    ))
}

/// Opens the file and generator partitions of `source` that `worker` (of `peers`) reads.
pub fn readers_for(
    source: &SourcePlan,
    worker: usize,
    peers: usize,
) -> Result<Vec<Box<dyn PartitionReader>>, String> {
    match &source.input {
        SourceInput::File {
            patterns,
            split_size,
        } => {
            let splits = plan_splits(patterns, *split_size)
                .map_err(|e| format!("source `{}`: {e}", source.name))?;
            Ok(splits
                .into_iter()
                .enumerate()
                .filter(|(i, _)| i % peers == worker)
                .map(|(_, split)| {
                    let reader =
                        JsonLinesReader::new(split, source.schema.clone(), source.ts_column);
                    let reader = if source.debezium {
                        reader.debezium()
                    } else {
                        reader
                    };
                    Box::new(reader) as Box<dyn PartitionReader>
                })
                .collect())
        }
        SourceInput::Kafka(_) => Err(format!(
            "source `{}` reads Kafka: use partitions_for",
            source.name
        )),
        SourceInput::Generator(config) => {
            let config = Arc::new(config.clone());
            let pools = Arc::new(Pools::new(config.cardinalities));
            Ok((0..config.partitions)
                .filter(|p| *p as usize % peers == worker)
                .map(|p| {
                    Box::new(GeneratorReader::new(config.clone(), pools.clone(), p))
                        as Box<dyn PartitionReader>
                })
                .collect())
        }
    }
}

type Streams<'scope> = HashMap<
    String,
    (
        StreamVec<'scope, Epoch, Event>,
        StreamVec<'scope, Epoch, i64>,
    ),
>;

/// Builds the job's dataflow in `scope`; returns the probe that completes when every sink has
/// seen the end of its input.
pub fn build<'scope>(
    scope: Scope<'scope, Epoch>,
    plan: &Plan,
    ctx: &BuildContext,
) -> Result<ProbeHandle<Epoch>, String> {
    let probe = ProbeHandle::new();
    let (worker, peers) = (scope.index(), scope.peers());
    let mut streams: Streams<'scope> = HashMap::new();

    // Every worker sees the same watermarks; each publishes the lowest for progress display.
    let source_watermarks = Rc::new(RefCell::new(vec![WATERMARK_MIN; plan.sources.len()]));
    for (i, source_plan) in plan.sources.iter().enumerate() {
        let config = SourceConfig {
            name: source_plan.name.clone(),
            clock: EpochClock::new(ctx.clock_anchor.unwrap_or_else(SystemTime::now), plan.tick),
            max_out_of_orderness: source_plan.max_out_of_orderness,
            idle_timeout: source_plan.idle_timeout,
            on_error: source_plan.on_error,
            // At least `max_inflight_epochs`, and at least 80 ms of epochs: a bound in epochs
            // alone makes short ticks pause reading at every hiccup downstream.
            max_inflight_epochs: ctx
                .max_inflight_epochs
                .max((INFLIGHT_TIME.as_nanos() / plan.tick.as_nanos().max(1)) as u64),
            checkpoints: ctx
                .durable
                .as_ref()
                .map(|d| d.join(names::source(&source_plan.name), true)),
        };
        let restore = ctx
            .durable
            .as_ref()
            .map(|d| &d.run)
            .filter(|r| r.restore.is_some());
        let readers = partitions_for(source_plan, &plan.name, worker, peers, restore)?;
        let out = source(
            scope,
            config,
            readers,
            Some(probe.clone()),
            ctx.stats.clone(),
            ctx.failures.clone(),
        );
        let (all, stats) = (source_watermarks.clone(), ctx.stats.clone());
        let watermarks = out.watermarks.inspect(move |wm| {
            let mut all = all.borrow_mut();
            all[i] = *wm;
            stats.observe_watermark(all.iter().copied().min().unwrap_or(*wm));
        });
        streams.insert(source_plan.name.clone(), (out.events, watermarks.clone()));
        streams.insert(
            format!("{}.dead_letter", source_plan.name),
            (out.dead_letters, watermarks),
        );
    }

    for step in &plan.steps {
        let (input, watermarks) = streams
            .get(&step.input)
            .cloned()
            .ok_or_else(|| format!("step `{}`: input `{}` was not built", step.name, step.input))?;
        match &step.op {
            StepOp::FilterProject { filter, project } => {
                let out = input.filter_project(&step.name, filter.clone(), project.clone());
                streams.insert(step.name.clone(), (out, watermarks));
            }
            StepOp::Window {
                key_columns,
                kind,
                allowed_lateness,
                aggregates,
            } => {
                let config = WindowConfig {
                    name: step.name.clone(),
                    key_columns: key_columns.clone(),
                    kind: *kind,
                    allowed_lateness: *allowed_lateness,
                    aggregates: aggregates.clone(),
                    key_groups: plan.key_groups,
                };
                let state = state_context(ctx, &step.name, plan, worker, peers);
                let out =
                    input.window_aggregate(watermarks.clone(), config, state, ctx.stats.clone());
                // Results come out `allowed_lateness + 1` ms behind the input watermark.
                let delayed = delay_stream(watermarks.clone(), allowed_lateness.saturating_add(1));
                streams.insert(step.name.clone(), (out.results, delayed));
                streams.insert(format!("{}.late", step.name), (out.late, watermarks));
            }
            StepOp::Keyed {
                key_columns,
                allowed_lateness,
                control,
                process,
                ..
            } => {
                // A fixed `where` of a threshold rule is applied before the exchange: records
                // it would ignore are not shipped, buffered and sorted (`.late` then holds the
                // late records that match it).
                let input = match &**process {
                    KeyedOp::Threshold(rule) if rule.updates.is_none() => match &rule.condition {
                        Some(c) => input.filter_project(
                            &format!("{}.where", step.name),
                            Some(c.clone()),
                            None,
                        ),
                        None => input,
                    },
                    _ => input,
                };
                let mut inputs = vec![input];
                let mut marks = vec![watermarks.clone()];
                if let Some(right) = &step.right {
                    let (stream, wm) = streams.get(right).cloned().ok_or_else(|| {
                        format!("step `{}`: input `{right}` was not built", step.name)
                    })?;
                    inputs.push(stream);
                    marks.push(wm);
                }
                let combined = match &marks[..] {
                    [a, b] => min_watermarks(a.clone(), b.clone()),
                    _ => watermarks.clone(),
                };
                let config = OrderedConfig {
                    name: step.name.clone(),
                    key_columns: key_columns.clone(),
                    allowed_lateness: *allowed_lateness,
                    key_groups: plan.key_groups,
                    control: *control,
                };
                let state = state_context(ctx, &step.name, plan, worker, peers);
                let (w, stats) = (combined.clone(), ctx.stats.clone());
                let out = match &**process {
                    KeyedOp::Threshold(p) => ordered(inputs, w, config, p.clone(), state, stats),
                    KeyedOp::Pattern(p) => ordered(inputs, w, config, p.clone(), state, stats),
                    KeyedOp::Rolling(p) => ordered(inputs, w, config, p.clone(), state, stats),
                    KeyedOp::Interval(p) => ordered(inputs, w, config, p.clone(), state, stats),
                    KeyedOp::WindowJoin(p) => ordered(inputs, w, config, p.clone(), state, stats),
                    KeyedOp::Temporal(p) => ordered(inputs, w, config, p.clone(), state, stats),
                };
                // Results are at or after the input watermark less the allowed lateness.
                let delayed = delay_stream(combined, *allowed_lateness);
                streams.insert(step.name.clone(), (out.results, delayed));
                let mut late = out.late.into_iter().zip(marks);
                if let Some(l) = late.next() {
                    streams.insert(format!("{}.late", step.name), l);
                }
                if let Some(l) = late.next() {
                    streams.insert(format!("{}.late_right", step.name), l);
                }
            }
        }
    }

    let mut committers = kafka_committers(plan, ctx, worker, scope.peers())?;
    for sink in &plan.sinks {
        let (input, _) = streams
            .get(&sink.input)
            .cloned()
            .ok_or_else(|| format!("sink `{}`: input `{}` was not built", sink.name, sink.input))?;
        let name = names::sink(&sink.name);
        // File and stdout sinks gather encoded lines on worker 0, which alone writes.
        let (writer, format): (Option<Box<dyn LineWriter>>, _) = match &sink.op {
            SinkOp::Null => {
                null_sink(input, &name, ctx.stats.clone()).probe_with(&probe);
                continue;
            }
            SinkOp::Kafka(k) => {
                let committer = committers.remove(&sink.name);
                kafka_sink_for(
                    input,
                    &sink.name,
                    &sink.columns,
                    k,
                    &plan.name,
                    committer,
                    ctx,
                )?
                .probe_with(&probe);
                continue;
            }
            SinkOp::Redis(r) => {
                redis_sink_for(input, &sink.name, &sink.columns, r, &plan.name, worker, ctx)?
                    .probe_with(&probe);
                continue;
            }
            SinkOp::Iceberg(i) => {
                iceberg_sink_for(input, &sink.name, i, &plan.name, ctx)?.probe_with(&probe);
                continue;
            }
            SinkOp::File { path, format } if worker == 0 => {
                let position = match ctx.durable.as_ref().and_then(|d| d.run.restore.as_ref()) {
                    Some(r) => r.read(&names::sink_file(&name))?,
                    None => None,
                };
                let file = match position {
                    Some(p) => SortedJsonFile::resume(path, &p),
                    None if ctx.durable.is_some() => {
                        SortedJsonFile::create(path).map(SortedJsonFile::checkpointed)
                    }
                    None => SortedJsonFile::create(path),
                }
                .map_err(|e| format!("sink `{}`: {e}", sink.name))?;
                (Some(Box::new(file)), *format)
            }
            SinkOp::Stdout { format } if worker == 0 => (Some(Box::new(StdoutWriter)), *format),
            SinkOp::File { format, .. } | SinkOp::Stdout { format } => (None, *format),
        };
        // A file sink resumes from checkpoints; stdout cannot take anything back.
        let checkpoints = match (&sink.op, &ctx.durable) {
            (SinkOp::File { .. }, Some(d)) => Some(d.join(name.clone(), false)),
            _ => None,
        };
        let lines = encode_lines(input, &name, sink.columns.clone(), format);
        write_sorted_lines(
            lines,
            &name,
            writer,
            checkpoints,
            ctx.stats.clone(),
            ctx.failures.clone(),
        )
        .probe_with(&probe);
    }
    Ok(probe)
}

/// The state handle of step `name` on `worker`, when the run keeps state.
fn state_context(
    ctx: &BuildContext,
    name: &str,
    plan: &Plan,
    worker: usize,
    peers: usize,
) -> Option<StateContext> {
    ctx.state.as_ref().map(|s| {
        let context = StateContext::new(
            name.to_string(),
            s.backend.clone(),
            s.schedule.clone(),
            plan.key_groups,
            worker,
            peers,
        );
        match &ctx.durable {
            Some(d) => {
                d.register(names::step(name), true);
                context
                    .starting_at(d.run.first_epoch)
                    .with_final_checkpoint(d.run.final_checkpoint())
            }
            None => context,
        }
    })
}

#[cfg(feature = "kafka")]
type Committer = weir_operators::kafka::KafkaCommitter;
#[cfg(not(feature = "kafka"))]
type Committer = ();

#[cfg(feature = "kafka")]
fn kafka_sink_config(
    name: &str,
    columns: &[String],
    k: &KafkaOutput,
    job: &str,
) -> weir_operators::kafka::KafkaSinkConfig {
    use weir_operators::kafka::{Connection, KafkaSinkConfig};
    KafkaSinkConfig {
        name: name.to_string(),
        job: job.to_string(),
        connection: Connection {
            brokers: k.brokers.clone(),
            properties: k.properties.clone(),
            connect_timeout: std::time::Duration::from_secs(30),
        },
        topic: k.topic.clone(),
        key: k.key.clone(),
        columns: columns.to_vec(),
        format: k.format,
        partitions: k.partitions,
        delivery: k.delivery,
        commit_topic: k.commit_topic.clone(),
    }
}

/// The committers of the Kafka sinks that commit per checkpoint. After a restore, every
/// earlier worker this one stands in for is fenced, for every sink, before any sink recovers:
/// a transaction left open by the crash would otherwise hold up the readers of commit records.
#[cfg(feature = "kafka")]
fn kafka_committers(
    plan: &Plan,
    ctx: &BuildContext,
    worker: usize,
    peers: usize,
) -> Result<HashMap<String, Committer>, String> {
    use weir_operators::kafka::{Delivery, KafkaCommitter};
    let mut committers = HashMap::new();
    let Some(durable) = &ctx.durable else {
        return Ok(committers);
    };
    let before = durable
        .run
        .restore
        .as_ref()
        .map_or(0, |r| r.manifest.workers);
    for sink in &plan.sinks {
        let SinkOp::Kafka(k) = &sink.op else { continue };
        if k.delivery == Delivery::AtLeastOnce {
            continue;
        }
        let config = kafka_sink_config(&sink.name, &sink.columns, k, &plan.name);
        let committer = KafkaCommitter::new(config, worker)
            .map_err(|e| format!("sink `{}`: {e}", sink.name))?;
        for owner in (0..before).filter(|o| o % peers == worker) {
            committer
                .fence(owner)
                .map_err(|e| format!("sink `{}`: {e}", sink.name))?;
        }
        committers.insert(sink.name.clone(), committer);
    }
    Ok(committers)
}

#[cfg(not(feature = "kafka"))]
fn kafka_committers(
    _: &Plan,
    _: &BuildContext,
    _: usize,
    _: usize,
) -> Result<HashMap<String, Committer>, String> {
    Ok(HashMap::new())
}

#[cfg(feature = "kafka")]
fn kafka_sink_for<'scope>(
    input: StreamVec<'scope, Epoch, Event>,
    name: &str,
    columns: &[String],
    k: &KafkaOutput,
    job: &str,
    committer: Option<Committer>,
    ctx: &BuildContext,
) -> Result<weir_operators::sink::Done<'scope>, String> {
    use weir_operators::kafka::kafka_sink;
    use weir_operators::sink::two_phase_sink;
    match (committer, &ctx.durable) {
        (Some(committer), Some(d)) => {
            let participant = names::sink(name);
            let run = d.join(participant.clone(), true);
            Ok(two_phase_sink(
                input,
                &participant,
                committer,
                Some(run),
                ctx.stats.clone(),
                ctx.failures.clone(),
            ))
        }
        _ => kafka_sink(
            input,
            kafka_sink_config(name, columns, k, job),
            ctx.stats.clone(),
            ctx.failures.clone(),
        )
        .map_err(|e| format!("sink `{name}`: {e}")),
    }
}

#[cfg(not(feature = "kafka"))]
fn kafka_sink_for<'scope>(
    _: StreamVec<'scope, Epoch, Event>,
    name: &str,
    _: &[String],
    _: &KafkaOutput,
    _: &str,
    _: Option<Committer>,
    _: &BuildContext,
) -> Result<weir_operators::sink::Done<'scope>, String> {
    Err(format!(
        "sink `{name}`: this weir was built without Kafka support (cargo feature `kafka`)"
    ))
}

#[cfg(feature = "redis")]
fn redis_sink_for<'scope>(
    input: StreamVec<'scope, Epoch, Event>,
    name: &str,
    columns: &[String],
    r: &RedisOutput,
    job: &str,
    worker: usize,
    ctx: &BuildContext,
) -> Result<weir_operators::sink::Done<'scope>, String> {
    use weir_operators::redis::{RedisCommitter, RedisSinkConfig};
    use weir_operators::sink::two_phase_sink;
    let config = RedisSinkConfig {
        name: name.to_string(),
        job: job.to_string(),
        url: r.url.clone(),
        mode: r.mode,
        key: r.key.clone(),
        columns: columns.to_vec(),
        format: r.format,
        ttl: r.ttl,
        member: r.member.clone(),
        score: r.score.clone(),
        value: r.value.clone(),
        timeout: std::time::Duration::from_secs(30),
    };
    let (participant, run, generation) = two_phase_participant(name, ctx);
    let committer = RedisCommitter::new(config, worker, generation)?;
    Ok(two_phase_sink(
        input,
        &participant,
        committer,
        run,
        ctx.stats.clone(),
        ctx.failures.clone(),
    ))
}

/// A two-phase sink's name in checkpoints, its part in the run's checkpoints (registered as a
/// participant on every worker), and the lineage its writes carry.
#[cfg(any(feature = "redis", feature = "iceberg"))]
fn two_phase_participant(
    name: &str,
    ctx: &BuildContext,
) -> (String, Option<weir_engine::checkpoint::CheckpointRun>, u64) {
    let participant = names::sink(name);
    let run = ctx
        .durable
        .as_ref()
        .map(|d| d.join(participant.clone(), true));
    let generation = run
        .as_ref()
        .map_or(ctx.generation, |r| r.checkpoints.generation());
    (participant, run, generation)
}

#[cfg(feature = "iceberg")]
fn iceberg_sink_for<'scope>(
    input: StreamVec<'scope, Epoch, Event>,
    name: &str,
    i: &IcebergOutput,
    job: &str,
    ctx: &BuildContext,
) -> Result<weir_operators::sink::Done<'scope>, String> {
    use weir_operators::iceberg::{iceberg_sink, IcebergSinkConfig, TableConfig};
    let config = IcebergSinkConfig {
        name: name.to_string(),
        job: job.to_string(),
        table: TableConfig {
            catalog: i.catalog.clone(),
            catalog_name: i.catalog_name.clone(),
            warehouse: i.warehouse.clone(),
            table: i.table.clone(),
            partition_by: i.partition_by.clone(),
            schema: i.schema.clone(),
            timeout: std::time::Duration::from_secs(30),
        },
    };
    let (participant, run, generation) = two_phase_participant(name, ctx);
    iceberg_sink(
        input,
        &config,
        &participant,
        run,
        generation,
        ctx.stats.clone(),
        ctx.failures.clone(),
    )
}

#[cfg(not(feature = "iceberg"))]
fn iceberg_sink_for<'scope>(
    _: StreamVec<'scope, Epoch, Event>,
    name: &str,
    _: &IcebergOutput,
    _: &str,
    _: &BuildContext,
) -> Result<weir_operators::sink::Done<'scope>, String> {
    Err(format!(
        "sink `{name}`: this weir was built without Iceberg support (cargo feature `iceberg`)"
    ))
}

#[cfg(not(feature = "redis"))]
fn redis_sink_for<'scope>(
    _: StreamVec<'scope, Epoch, Event>,
    name: &str,
    _: &[String],
    _: &RedisOutput,
    _: &str,
    _: usize,
    _: &BuildContext,
) -> Result<weir_operators::sink::Done<'scope>, String> {
    Err(format!(
        "sink `{name}`: this weir was built without Redis support (cargo feature `redis`)"
    ))
}
