//! The source operator: epochs, watermarks from partitions, idle partitions, end of input.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;
use weir_engine::checkpoint::{names, CheckpointRun, Checkpoints};
use weir_engine::clock::{agree_on_anchor, EpochClock};
use weir_engine::data::{Row, Value};
use weir_engine::event::{Epoch, WATERMARK_END};
use weir_engine::failure::Failures;
use weir_engine::state::CheckpointSchedule;
use weir_operators::source::generator::{GeneratorConfig, GeneratorReader, Pools, StreamKind};
use weir_operators::source::{
    source, Emitter, OnError, PartitionReader, Partitions, ReadStatus, SourceConfig,
};

/// Emits event times `0, 10, 20, ...` up to `count` records (one per `pace`, when set), then
/// either ends or waits — an idle partition — until `then_idle_until`.
struct Scripted {
    next: i64,
    count: i64,
    pace: Option<Duration>,
    last: Option<Instant>,
    then_idle_until: Option<Instant>,
}

fn scripted(
    count: i64,
    pace: Option<u64>,
    idle_until: Option<Instant>,
) -> Box<dyn PartitionReader> {
    Box::new(Scripted {
        next: 0,
        count,
        pace: pace.map(Duration::from_millis),
        last: None,
        then_idle_until: idle_until,
    })
}

impl PartitionReader for Scripted {
    fn location(&self) -> &str {
        "scripted"
    }
    fn read(&mut self, max: usize, out: &mut Emitter<'_>) -> Result<ReadStatus, String> {
        for _ in 0..max {
            if self.next >= self.count {
                break;
            }
            if let (Some(pace), Some(last)) = (self.pace, self.last) {
                if last.elapsed() < pace {
                    return Ok(ReadStatus::Waiting(pace.saturating_sub(last.elapsed())));
                }
            }
            self.last = Some(Instant::now());
            out.record(self.next * 10, Row::from_values(&[Value::Int(self.next)]));
            self.next += 1;
        }
        if self.next < self.count {
            return Ok(ReadStatus::More);
        }
        match self.then_idle_until {
            Some(t) if Instant::now() < t => Ok(ReadStatus::Waiting(Duration::from_millis(5))),
            _ => Ok(ReadStatus::Done),
        }
    }
}

/// A source `s` on `clock`, without checkpoints, 8 epochs in flight at most.
fn config(
    clock: EpochClock,
    max_out_of_orderness: i64,
    idle_timeout: Option<Duration>,
) -> SourceConfig {
    SourceConfig {
        name: "s".into(),
        clock,
        max_out_of_orderness,
        idle_timeout,
        on_error: OnError::DeadLetter,
        max_inflight_epochs: 8,
        checkpoints: None,
    }
}

/// Runs one source over `readers` on one worker; returns the watermarks seen with the time
/// each was seen.
fn watermarks(
    readers: impl Fn() -> Vec<Box<dyn PartitionReader>> + Send + Sync + 'static,
    idle_timeout: Option<Duration>,
) -> Vec<(Duration, i64)> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    timely::execute(timely::Config::thread(), move |worker| {
        let probe = ProbeHandle::new();
        let start = Instant::now();
        let readers = readers();
        let sink = sink.clone();
        worker.dataflow::<Epoch, _, _>(|scope| {
            let config = config(
                EpochClock::starting_now(Duration::from_millis(10)),
                5,
                idle_timeout,
            );
            let out = source(
                scope,
                config,
                Partitions::fixed(readers),
                None,
                Default::default(),
                Failures::new(),
            );
            out.watermarks
                .inspect(move |wm| sink.lock().unwrap().push((start.elapsed(), *wm)))
                .probe_with(&probe);
        });
        worker.step_while(|| !probe.done());
    })
    .unwrap();
    let seen = seen.lock().unwrap().clone();
    seen
}

#[test]
fn the_watermark_waits_for_the_slowest_partition_then_reaches_the_end() {
    let until = Instant::now() + Duration::from_millis(300);
    let seen = watermarks(
        move || vec![scripted(100, None, None), scripted(10, None, Some(until))],
        None,
    );
    let values: Vec<i64> = seen.iter().map(|(_, w)| *w).collect();
    assert_eq!(values.last(), Some(&WATERMARK_END));
    // While the short partition waits, it holds the watermark at its own: 90 - 5.
    assert!(values.contains(&85), "{values:?}");
    assert!(
        values.windows(2).all(|w| w[0] <= w[1]),
        "watermarks never go back: {values:?}"
    );
}

#[test]
fn an_idle_partition_stops_holding_the_watermark_back() {
    // Partition 0 produces one record every 15 ms for 600 ms; partition 1 produces 10 records
    // at once, then nothing until 900 ms.
    let run = |idle_timeout: Option<Duration>| {
        let until = Instant::now() + Duration::from_millis(900);
        watermarks(
            move || {
                vec![
                    scripted(40, Some(15), None),
                    scripted(10, None, Some(until)),
                ]
            },
            idle_timeout,
        )
    };
    let advanced_while_quiet = |seen: &[(Duration, i64)]| {
        seen.iter()
            .any(|(t, w)| *w > 85 && *w != WATERMARK_END && *t < Duration::from_millis(850))
    };
    let held = run(None);
    assert!(
        !advanced_while_quiet(&held),
        "without idle_timeout the quiet partition holds the watermark: {held:?}"
    );
    let idle = run(Some(Duration::from_millis(100)));
    assert!(
        advanced_while_quiet(&idle),
        "after idle_timeout the active partition decides: {idle:?}"
    );
    assert_eq!(idle.last().map(|(_, w)| *w), Some(WATERMARK_END));
}

#[test]
fn a_rate_limited_generator_does_not_run_ahead_of_its_rate() {
    let mut config = GeneratorConfig::new(StreamKind::Clicks, Some(400), 1);
    config.rate = Some(2000.0);
    config.partitions = 1;
    let config = Arc::new(config);
    let mut reader = GeneratorReader::new(
        config.clone(),
        Arc::new(Pools::new(config.cardinalities)),
        0,
    );
    let (mut wm, mut events, mut bad) = (
        weir_engine::watermark::PartitionWatermark::new(0),
        Vec::new(),
        Vec::new(),
    );
    let start = Instant::now();
    loop {
        let mut out = Emitter::new(&mut wm, &mut events, &mut bad);
        match reader.read(1000, &mut out).unwrap() {
            ReadStatus::Done => break,
            ReadStatus::Waiting(d) => std::thread::sleep(d),
            ReadStatus::More => {}
        }
    }
    assert_eq!(events.len(), 400);
    // 400 events at 2000/s cannot take less than about 200 ms.
    assert!(
        start.elapsed() >= Duration::from_millis(190),
        "{:?}",
        start.elapsed()
    );
}

/// Emits a record every 5 ms: `count` of them, or until `until` is set, then ends (and sets
/// `done`).
struct Paced {
    count: Option<usize>,
    emitted: usize,
    last: Option<Instant>,
    until: Arc<AtomicBool>,
    done: Option<Arc<AtomicBool>>,
    deadline: Instant,
}

impl PartitionReader for Paced {
    fn location(&self) -> &str {
        "paced"
    }
    fn read(&mut self, _max: usize, out: &mut Emitter<'_>) -> Result<ReadStatus, String> {
        let finished = match self.count {
            Some(n) => self.emitted >= n,
            None => self.until.load(Ordering::SeqCst) || Instant::now() > self.deadline,
        };
        if finished {
            if let Some(done) = &self.done {
                done.store(true, Ordering::SeqCst);
            }
            return Ok(ReadStatus::Done);
        }
        let pace = Duration::from_millis(5);
        // One reading of the clock: between two, a descheduled thread can pass `pace`.
        if let Some(left) = self.last.and_then(|l| pace.checked_sub(l.elapsed())) {
            if !left.is_zero() {
                return Ok(ReadStatus::Waiting(left));
            }
        }
        self.last = Some(Instant::now());
        out.record(self.emitted as i64, Row::from_values(&[Value::Int(0)]));
        self.emitted += 1;
        Ok(ReadStatus::More)
    }
    fn position(&self) -> Option<Vec<u8>> {
        Some(self.emitted.to_le_bytes().to_vec())
    }
}

#[test]
fn a_source_that_starts_late_does_not_stall_the_others() {
    // Worker 1 builds its dataflow 400 ms after worker 0 (a slow broker connection, another
    // process connecting late). Epochs come from one clock, so worker 0's source is not 40
    // epochs ahead of worker 1's — which, beyond the 8 epochs in flight, used to stop it from
    // reading until worker 1's input ended (here: never, until the deadline).
    let first_done = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(20);
    let flag = first_done.clone();
    // Bounded: a stalled source must fail the test, not hang the suite.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(run_two_workers(flag, deadline));
    });
    let read = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the two sources did not finish within 60 s");
    assert_eq!(read[0], 100);
    assert!(
        first_done.load(Ordering::SeqCst) && Instant::now() < deadline,
        "worker 0 read its input only once worker 1 had ended: {read:?}"
    );
}

#[test]
fn a_source_that_starts_after_checkpoint_epochs_takes_part_in_them() {
    // Worker 1 builds its dataflow 400 ms after the anchor: the checkpoint epochs before
    // then (every 3 ticks of 10 ms) passed without it. They must still complete — worker 1's
    // source read nothing in them and takes part with where it starts — or a restored run
    // whose worker was slow to build logged its first checkpoints as failed.
    let dir = tempfile::tempdir().unwrap();
    let store = weir_engine::store::Store::open(&format!("file://{}", dir.path().display()));
    let run = CheckpointRun {
        checkpoints: Checkpoints::new(store.unwrap(), "late"),
        schedule: CheckpointSchedule::Every(3),
        restore: None,
        first_epoch: 0,
        completion: Default::default(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let (tx, rx) = std::sync::mpsc::channel();
    let for_run = run.clone();
    std::thread::spawn(move || {
        let flag = Arc::new(AtomicBool::new(false));
        let _ = tx.send(run_two_workers_with(flag, deadline, Some(for_run)));
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the two sources did not finish within 60 s");
    let first = run.first_checkpoint().unwrap();
    for w in 0..2 {
        assert!(
            run.checkpoints.is_done(first, &names::source("s"), w),
            "checkpoint {first} has nothing from worker {w}'s source"
        );
    }
}

/// Worker 0 reads 100 paced records; worker 1 starts 400 ms later and reads until worker 0 is
/// done (or `deadline`). Returns what each read.
fn run_two_workers(flag: Arc<AtomicBool>, deadline: Instant) -> Vec<usize> {
    run_two_workers_with(flag, deadline, None)
}

/// [`run_two_workers`], with checkpoints.
fn run_two_workers_with(
    flag: Arc<AtomicBool>,
    deadline: Instant,
    checkpoints: Option<CheckpointRun>,
) -> Vec<usize> {
    timely::execute(timely::Config::process(2), move |worker| {
        let anchor = agree_on_anchor(worker);
        let index = worker.index();
        if index == 1 {
            std::thread::sleep(Duration::from_millis(400));
        }
        let reader = Paced {
            count: (index == 0).then_some(100),
            emitted: 0,
            last: None,
            until: flag.clone(),
            done: (index == 0).then(|| flag.clone()),
            deadline,
        };
        let probe = ProbeHandle::new();
        let count = Arc::new(Mutex::new(0usize));
        let counter = count.clone();
        worker.dataflow::<Epoch, _, _>(|scope| {
            let clock = EpochClock::new(anchor, Duration::from_millis(10));
            let mut config = config(clock, 0, Some(Duration::from_millis(50)));
            config.checkpoints = checkpoints.clone();
            let out = source(
                scope,
                config,
                Partitions::fixed(vec![Box::new(reader)]),
                Some(probe.clone()),
                Default::default(),
                Failures::new(),
            );
            out.events
                .inspect(move |_| *counter.lock().unwrap() += 1)
                .probe_with(&probe);
        });
        worker.step_while(|| !probe.done());
        let n = *count.lock().unwrap();
        n
    })
    .unwrap()
    .join()
    .into_iter()
    .map(|r| r.unwrap())
    .collect()
}

/// What a client library's consumer looks like to the source: records arrive on another
/// thread; with none queued the reader asks to be looked at again in an hour, and the client
/// calls the waker when some arrive.
struct Pushed {
    inbox: Arc<Mutex<(Vec<i64>, bool)>>,
    waker: Arc<Mutex<Option<weir_operators::source::Waker>>>,
}

impl PartitionReader for Pushed {
    fn location(&self) -> &str {
        "pushed"
    }
    fn set_waker(&mut self, waker: weir_operators::source::Waker) {
        *self.waker.lock().unwrap() = Some(waker);
    }
    fn read(&mut self, _max: usize, out: &mut Emitter<'_>) -> Result<ReadStatus, String> {
        let mut inbox = self.inbox.lock().unwrap();
        for ts in inbox.0.drain(..) {
            out.record(ts, Row::from_values(&[Value::Int(ts)]));
        }
        Ok(if inbox.1 {
            ReadStatus::Done
        } else {
            ReadStatus::Waiting(Duration::from_secs(3600))
        })
    }
}

#[test]
fn a_waiting_partition_is_read_as_soon_as_its_client_wakes_the_source() {
    // The reader said "nothing for an hour"; input that arrives and wakes the source is read
    // at once (it used to wait out the pause the reader asked for: up to 2 ms per Kafka
    // partition on a live topic, here an hour).
    let inbox = Arc::new(Mutex::new((Vec::new(), false)));
    let waker = Arc::new(Mutex::new(None::<weir_operators::source::Waker>));
    let reader = Pushed {
        inbox: inbox.clone(),
        waker: waker.clone(),
    };
    let reader = Mutex::new(Some(reader));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        timely::execute(timely::Config::thread(), move |worker| {
            let probe = ProbeHandle::new();
            let reader: Box<dyn PartitionReader> = Box::new(reader.lock().unwrap().take().unwrap());
            let sink = sink.clone();
            worker.dataflow::<Epoch, _, _>(|scope| {
                let config = config(EpochClock::starting_now(Duration::from_millis(10)), 0, None);
                let out = source(
                    scope,
                    config,
                    Partitions::fixed(vec![reader]),
                    None,
                    Default::default(),
                    Failures::new(),
                );
                out.events
                    .inspect(move |e| sink.lock().unwrap().push(e.ts))
                    .probe_with(&probe);
            });
            worker.step_while(|| !probe.done());
        })
        .unwrap();
        let _ = done_tx.send(());
    });
    let wake = || {
        let w = waker.lock().unwrap().clone();
        w.expect("the source gave the reader a waker")()
    };
    // Let the source read once (nothing) and mark the partition as waiting.
    let deadline = Instant::now() + Duration::from_secs(30);
    while waker.lock().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    inbox.lock().unwrap().0.extend([10, 20, 30]);
    wake();
    while seen.lock().unwrap().len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        *seen.lock().unwrap(),
        vec![10, 20, 30],
        "the woken partition was not read"
    );
    inbox.lock().unwrap().1 = true;
    wake();
    done_rx
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .expect("the source ends once its woken partition reports the end");
}
