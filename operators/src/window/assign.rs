//! Window shapes and the windows an event time belongs to.

use serde::{Deserialize, Serialize};

/// The shape of a window step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WindowKind {
    /// Fixed, non-overlapping windows of `size` ms, aligned to the epoch.
    Tumbling {
        /// Window length in ms.
        size: i64,
    },
    /// Windows of `size` ms starting every `slide` ms (hopping windows).
    Sliding {
        /// Window length in ms.
        size: i64,
        /// Distance between window starts in ms.
        slide: i64,
    },
    /// Per key, events closer than `gap` ms share a window.
    Session {
        /// Inactivity that closes a session, in ms.
        gap: i64,
    },
}

impl WindowKind {
    /// Calls `f(start, end)` for every fixed window containing `ts`, earliest end first
    /// (nothing for sessions, which are formed per key).
    #[inline]
    pub fn for_each_window(&self, ts: i64, mut f: impl FnMut(i64, i64)) {
        match *self {
            WindowKind::Tumbling { size } => {
                let start = ts - ts.rem_euclid(size);
                f(start, start + size)
            }
            WindowKind::Sliding { size, slide } => {
                // Starts s with s ≤ ts < s + size, s a multiple of `slide`.
                let last = ts - ts.rem_euclid(slide);
                let mut start = last - ((size - 1) / slide) * slide;
                while start <= last {
                    if ts < start + size {
                        f(start, start + size);
                    }
                    start += slide;
                }
            }
            WindowKind::Session { .. } => {}
        }
    }

    /// The length of a fixed window.
    pub fn size(&self) -> Option<i64> {
        match *self {
            WindowKind::Tumbling { size } | WindowKind::Sliding { size, .. } => Some(size),
            WindowKind::Session { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(kind: WindowKind, ts: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        kind.for_each_window(ts, |s, e| out.push((s, e)));
        out
    }

    #[test]
    fn tumbling_windows_align_to_the_epoch_also_before_it() {
        let t = WindowKind::Tumbling { size: 10 };
        assert_eq!(windows(t, 0), vec![(0, 10)]);
        assert_eq!(windows(t, 9), vec![(0, 10)]);
        assert_eq!(windows(t, 10), vec![(10, 20)]);
        assert_eq!(windows(t, -1), vec![(-10, 0)]);
    }

    #[test]
    fn sliding_windows_cover_each_time_size_over_slide_times() {
        let s = WindowKind::Sliding { size: 10, slide: 5 };
        assert_eq!(windows(s, 7), vec![(0, 10), (5, 15)]);
        assert_eq!(windows(s, 10), vec![(5, 15), (10, 20)]);
        let uneven = WindowKind::Sliding { size: 10, slide: 4 };
        for ts in -20..20 {
            let w = windows(uneven, ts);
            assert!(
                w.iter()
                    .all(|&(s, e)| s <= ts && ts < e && s.rem_euclid(4) == 0),
                "{ts}: {w:?}"
            );
            assert!((2..=3).contains(&w.len()), "{ts}: {w:?}");
        }
    }
}
