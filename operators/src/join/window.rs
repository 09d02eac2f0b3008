//! Window joins: pairs of records of one key in the same tumbling or sliding window.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use weir_engine::data::Row;
use weir_engine::event::Event;

use super::{JoinType, Joined};
use crate::ordered::{KeyState, KeyedProcess};
use crate::window::WindowKind;

/// A window join: when a window closes, every left record in it with every right record in
/// it (left outer: a left record of a window without right records, with NULLs), at event
/// time `window_end - 1`. Output rows start with `window_start` and `window_end`.
#[derive(Clone, Debug)]
pub struct WindowJoin {
    /// Inner or left outer.
    pub join_type: JoinType,
    /// Tumbling or sliding.
    pub kind: WindowKind,
    joined: Joined,
}

impl WindowJoin {
    /// A join of rows with `left` and `right` columns.
    pub fn new(join_type: JoinType, kind: WindowKind, left: usize, right: usize) -> Self {
        WindowJoin {
            join_type,
            kind,
            joined: Joined::new(2, left, right),
        }
    }
}

/// Per key: open windows by end, with the records of each side.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OpenWindows {
    windows: BTreeMap<i64, (Vec<Row>, Vec<Row>)>,
}

impl KeyState for OpenWindows {
    fn entries(&self) -> usize {
        self.windows.values().map(|(l, r)| l.len() + r.len()).sum()
    }
}

impl KeyedProcess for WindowJoin {
    type KeyState = OpenWindows;

    fn on_records(
        &mut self,
        _key: &Row,
        ts: i64,
        side: usize,
        rows: &[Row],
        state: &mut OpenWindows,
        _out: &mut Vec<Event>,
    ) {
        self.kind.for_each_window(ts, |_, end| {
            let (left, right) = state.windows.entry(end).or_default();
            let list = if side == 0 { left } else { right };
            list.extend(rows.iter().cloned());
        });
    }

    fn on_timer(&mut self, _key: &Row, t: i64, state: &mut OpenWindows, out: &mut Vec<Event>) {
        let size = self.kind.size().expect("fixed windows");
        while let Some(entry) = state.windows.first_entry() {
            let end = *entry.key();
            if end - 1 > t {
                break;
            }
            let (left, right) = entry.remove();
            self.joined.set_prefix_ts(0, end - size);
            self.joined.set_prefix_ts(1, end);
            for l in &left {
                if right.is_empty() {
                    if self.join_type == JoinType::LeftOuter {
                        out.push(Event::new(end - 1, end - 1, self.joined.row(l, None)));
                    }
                    continue;
                }
                for r in &right {
                    out.push(Event::new(end - 1, end - 1, self.joined.row(l, Some(r))));
                }
            }
        }
    }

    fn next_timer(&self, state: &OpenWindows) -> Option<i64> {
        // After the window's last millisecond every record in it is known.
        state.windows.keys().next().map(|end| end - 1)
    }
}
