//! A request to stop with a savepoint (`weir run --savepoint-on-stop`, on SIGTERM or Ctrl-C):
//! sources stop reading (without ending their input: windows are not flushed), the next
//! checkpoint after every source has stopped is completed as a savepoint, sinks commit it,
//! and the run ends. One flag per process. A savepoint can also be asked for without stopping
//! (SIGUSR1): the next checkpoint completed is named a savepoint.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);
static SAVEPOINT: AtomicBool = AtomicBool::new(false);

/// Asks the running job to stop with a savepoint.
pub fn request() {
    REQUESTED.store(true, Ordering::Release);
}

/// Whether a stop has been asked for.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Acquire)
}

/// Asks for a savepoint without stopping: the next checkpoint completed becomes one.
pub fn request_savepoint() {
    SAVEPOINT.store(true, Ordering::Release);
}

/// Takes the request for a savepoint, if there is one.
pub fn take_savepoint_request() -> bool {
    SAVEPOINT.swap(false, Ordering::AcqRel)
}
