//! A request to stop with a savepoint (`weir run --savepoint-on-stop`, on SIGTERM or Ctrl-C):
//! sources stop reading (without ending their input: windows are not flushed), the next
//! checkpoint after every source has stopped is completed as a savepoint, sinks commit it,
//! and the run ends. One flag per process.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Asks the running job to stop with a savepoint.
pub fn request() {
    REQUESTED.store(true, Ordering::Release);
}

/// Whether a stop has been asked for.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Acquire)
}
