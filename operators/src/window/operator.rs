//! The timely operator of a window step.

use std::sync::Arc;

use timely::dataflow::StreamVec;
use weir_engine::data::RowBuilder;
use weir_engine::event::{Epoch, Event};
use weir_engine::keys::KeyGroups;
use weir_engine::state::StateContext;
use weir_engine::stats::{JobStats, OperatorStats};

use super::assign::WindowKind;
use super::state::{ClosedWindow, WindowState};
use crate::aggregate::Aggregates;
use crate::keyed::{KeyExtractor, Routing};
use crate::timed::{timed_operator, TimedInput, TimedLogic};

/// What a window step computes.
#[derive(Clone, Debug)]
pub struct WindowConfig {
    /// The step name: names the operator, its metrics and its state.
    pub name: String,
    /// Key columns of the input.
    pub key_columns: Vec<usize>,
    /// Window shape.
    pub kind: WindowKind,
    /// How long after a window's end records are still accepted, in ms.
    pub allowed_lateness: i64,
    /// The aggregates, compiled against the input schema.
    pub aggregates: Arc<Aggregates>,
    /// The job's key groups.
    pub key_groups: KeyGroups,
}

/// The two outputs of a window step.
pub struct WindowOutputs<'scope> {
    /// One row per closed window and key.
    pub results: StreamVec<'scope, Epoch, Event>,
    /// Input records that arrived after all their windows had closed.
    pub late: StreamVec<'scope, Epoch, Event>,
}

/// Keyed window aggregation driven by a watermark stream.
pub trait WindowAggregate<'scope> {
    /// Groups records by key into windows, and emits each window's aggregates once the
    /// watermark (`watermarks`, identical on every worker) passes its end plus the allowed
    /// lateness.
    ///
    /// # Examples
    /// ```
    /// use std::sync::Arc;
    /// use timely::dataflow::operators::{Capture, ToStream};
    /// use timely::dataflow::operators::capture::Extract;
    /// use weir_engine::data::{DataType, Field, Row, Schema, Value};
    /// use weir_engine::event::{Event, WATERMARK_END};
    /// use weir_operators::aggregate::Aggregates;
    /// use weir_operators::window::{WindowAggregate, WindowConfig, WindowKind};
    ///
    /// let schema = Schema::new(vec![Field::new("user", DataType::String)]).unwrap();
    /// let config = WindowConfig {
    ///     name: "per_user".into(),
    ///     key_columns: vec![0],
    ///     kind: WindowKind::Tumbling { size: 10 },
    ///     allowed_lateness: 0,
    ///     aggregates: Arc::new(Aggregates::compile([("n", "count(*)")], &schema).unwrap()),
    ///     key_groups: Default::default(),
    /// };
    /// let out = timely::example(move |scope| {
    ///     let row = Row::from_values(&[Value::Str("ann".into())]);
    ///     let events = vec![Event::new(3, 0, row.clone()), Event::new(7, 3, row)].to_stream(scope);
    ///     let watermarks = vec![WATERMARK_END].to_stream(scope);
    ///     events.window_aggregate(watermarks, config, None, Default::default()).results.capture()
    /// });
    /// let rows: Vec<String> = out.extract()[0].1.iter().map(|e| format!("{:?}", e.row)).collect();
    /// assert_eq!(rows, ["[\"ann\", 1970-01-01T00:00:00.000Z, 1970-01-01T00:00:00.010Z, 2]"]);
    /// ```
    fn window_aggregate(
        self,
        watermarks: StreamVec<'scope, Epoch, i64>,
        config: WindowConfig,
        state: Option<StateContext>,
        stats: Arc<JobStats>,
    ) -> WindowOutputs<'scope>;
}

/// The per-worker logic, apart from timely plumbing.
struct WindowLogic {
    config: WindowConfig,
    state: WindowState,
    keys: KeyExtractor,
    output: RowBuilder,
    closed: Vec<ClosedWindow>,
    stats: OperatorStats,
}

impl WindowLogic {
    /// Adds one record to its windows, or returns it when it is late.
    #[inline]
    fn insert(&mut self, event: Event, fired_wm: i64) -> Option<Event> {
        let lateness = self.config.allowed_lateness;
        let key = self.keys.key_bytes(&event.row);
        let accepted = match self.config.kind {
            WindowKind::Session { .. } => {
                // Late when further behind the watermark than allowed: a session it could join
                // may already be closed. `fired_wm` only matters after idle partitions rejoin.
                let on_time = event.ts.saturating_add(lateness) >= event.wm.max(fired_wm);
                if on_time {
                    self.state.insert_session(key, event.ts, &event.row);
                }
                on_time
            }
            _ => {
                let bound = event.wm.max(fired_wm);
                self.state.insert_fixed(key, event.ts, &event.row, |end| {
                    end.saturating_add(lateness) > bound
                })
            }
        };
        if accepted {
            None
        } else {
            self.stats.add_late(1);
            Some(event)
        }
    }

    /// Closes every window the watermark `wm` has passed; returns their output records.
    fn close(&mut self, wm: i64, out: &mut Vec<Event>) {
        self.state.close_until(
            wm.saturating_sub(self.config.allowed_lateness),
            &mut self.closed,
        );
        let keys = self.config.key_columns.len();
        for w in self.closed.drain(..) {
            for k in 0..keys {
                self.output.copy_from(k, &w.key, k);
            }
            self.output.set_ts(keys, w.start);
            self.output.set_ts(keys + 1, w.end);
            self.config
                .aggregates
                .write(&w.accs, &mut self.output, keys + 2);
            // Emitted `end - 1`: a window's result is on time for any downstream window.
            out.push(Event::new(w.end - 1, w.end - 1, self.output.finish()));
        }
    }
}

impl TimedLogic for WindowLogic {
    type State = WindowState;

    fn insert(&mut self, _input: usize, event: Event, fired_wm: i64) -> Option<Event> {
        WindowLogic::insert(self, event, fired_wm)
    }

    fn advance(&mut self, wm: i64, out: &mut Vec<Event>) {
        self.close(wm, out)
    }

    fn state(&self) -> &WindowState {
        &self.state
    }

    fn state_mut(&mut self) -> &mut WindowState {
        &mut self.state
    }
}

impl<'scope> WindowAggregate<'scope> for StreamVec<'scope, Epoch, Event> {
    fn window_aggregate(
        self,
        watermarks: StreamVec<'scope, Epoch, i64>,
        config: WindowConfig,
        state: Option<StateContext>,
        stats: Arc<JobStats>,
    ) -> WindowOutputs<'scope> {
        let window_state = WindowState::new(
            config.name.clone(),
            config.kind,
            config.aggregates.clone(),
            config.key_groups,
        );
        let output_columns = config.key_columns.len() + 2 + config.aggregates.len();
        let (name, key_groups) = (config.name.clone(), config.key_groups);
        let input = TimedInput {
            stream: self,
            routing: Routing::Key(config.key_columns.clone()),
        };
        let worker = watermarks.scope().index();
        let logic = WindowLogic {
            keys: KeyExtractor::new(config.key_columns.clone()),
            output: RowBuilder::new(output_columns),
            closed: Vec::new(),
            state: window_state,
            stats: stats.operator(&name, worker),
            config,
        };
        let mut out = timed_operator(&name, vec![input], watermarks, key_groups, logic, state);
        WindowOutputs {
            results: out.results,
            late: out.late.pop().expect("one input"),
        }
    }
}
