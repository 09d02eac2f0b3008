//! Crash points for recovery tests. `WEIR_CRASH_AT=<point>[:<n>]` makes the process abort
//! (no destructors, no flushing: as `kill -9` would leave it) the `n`-th time (default: the
//! first) it reaches `<point>`. Unset, a crash point costs one relaxed atomic load.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

struct Armed {
    point: String,
    at: u32,
    seen: AtomicU32,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let text = std::env::var("WEIR_CRASH_AT").ok()?;
            let (point, at) = match text.rsplit_once(':') {
                Some((p, n)) => (p.to_string(), n.parse().ok()?),
                None => (text, 1),
            };
            Some(Armed {
                point,
                at,
                seen: AtomicU32::new(0),
            })
        })
        .as_ref()
}

/// Aborts the process here if this is the armed crash point's turn.
pub fn point(name: &str) {
    let Some(armed) = armed() else { return };
    if armed.point == name && armed.seen.fetch_add(1, Ordering::Relaxed) + 1 == armed.at {
        eprintln!("crash point `{name}` reached (WEIR_CRASH_AT): aborting");
        std::process::abort();
    }
}
