//! Temporal joins: each left record with the dimension row valid at its event time.

use serde::{Deserialize, Serialize};
use weir_engine::data::Row;
use weir_engine::event::Event;

use super::{JoinType, Joined};
use crate::expr::Expr;
use crate::ordered::{KeyState, KeyedProcess};

/// A temporal (as-of) join of a stream (side 0) with a dimension changelog (side 1): upserts,
/// and deletes where `deleted` holds. A dimension version is valid from its event time on, so
/// a record at `ts` joins the last version at or before `ts` — a version at the same event
/// time included (dimension records are processed first at equal times).
#[derive(Clone, Debug)]
pub struct TemporalJoin {
    /// Inner or left outer.
    pub join_type: JoinType,
    /// Marks dimension records that delete their key.
    pub deleted: Option<Expr>,
    joined: Joined,
}

impl TemporalJoin {
    /// A join of rows with `left` columns against dimension rows with `right` columns.
    pub fn new(join_type: JoinType, deleted: Option<Expr>, left: usize, right: usize) -> Self {
        TemporalJoin {
            join_type,
            deleted,
            joined: Joined::new(0, left, right),
        }
    }
}

/// Per key: the current dimension version.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Version {
    current: Option<Row>,
}

impl KeyState for Version {
    fn entries(&self) -> usize {
        self.current.is_some() as usize
    }
}

impl KeyedProcess for TemporalJoin {
    type KeyState = Version;

    fn on_records(
        &mut self,
        _key: &Row,
        ts: i64,
        side: usize,
        rows: &[Row],
        state: &mut Version,
        out: &mut Vec<Event>,
    ) {
        if side == 1 {
            // Several versions at one event time: the last in row order wins, deterministically.
            for row in rows {
                let delete = self.deleted.as_ref().is_some_and(|d| d.matches(row));
                state.current = (!delete).then(|| row.clone());
            }
            return;
        }
        for row in rows {
            match (&state.current, self.join_type) {
                (Some(dim), _) => out.push(Event::new(ts, ts, self.joined.row(row, Some(dim)))),
                (None, JoinType::LeftOuter) => {
                    out.push(Event::new(ts, ts, self.joined.row(row, None)))
                }
                (None, JoinType::Inner) => {}
            }
        }
    }

    fn on_timer(&mut self, _: &Row, _: i64, _: &mut Version, _: &mut Vec<Event>) {}

    fn next_timer(&self, _: &Version) -> Option<i64> {
        None
    }

    fn side_rank(&self, side: usize) -> usize {
        // The dimension first: a version applies to records at its own event time.
        1 - side
    }
}
