//! Window aggregates: tumbling, sliding and session windows with allowed lateness.
//!
//! Semantics, all in event time (ms):
//! - a fixed window `[start, end)` closes when the watermark reaches `end + allowed_lateness`;
//!   a session (per key, events less than `gap` apart) `[first, last + gap)` likewise;
//! - a record is *late* for a fixed window when its partition's watermark at read time
//!   (`Event::wm`) had already passed `end + allowed_lateness`; it goes to the step's late
//!   output when it is late for every window it belongs to. For sessions, a record is late
//!   when it is more than `allowed_lateness` behind that watermark. Both rules depend only on
//!   the input, so results are the same at any worker count and on every replay;
//! - each closed window emits one row: the key columns, `window_start`, `window_end`, then
//!   the aggregates, with event time `window_end - 1`. Windows close in `(end, key)` order.

mod assign;
mod operator;
mod state;

pub use assign::WindowKind;
pub use operator::{WindowAggregate, WindowConfig, WindowOutputs};
pub use state::{ClosedWindow, WindowState};
