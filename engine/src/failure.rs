//! Job failures raised inside operators, where there is no caller to return an error to.
//!
//! An operator that hits an unrecoverable error (a sink that cannot write, `on_error: fail`)
//! reports it here and stops making progress; the worker loop sees it and ends the run with
//! the message.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A shared list of failures of one job in this process.
#[derive(Clone, Debug, Default)]
pub struct Failures {
    inner: Arc<Mutex<Vec<String>>>,
    failed: Arc<AtomicBool>,
}

impl Failures {
    /// A fresh, empty list.
    pub fn new() -> Self {
        Failures::default()
    }

    /// Records a failure.
    pub fn report(&self, message: impl Into<String>) {
        self.inner
            .lock()
            .expect("failures lock")
            .push(message.into());
        self.failed.store(true, Ordering::Release);
    }

    /// The first failure, if any.
    pub fn first(&self) -> Option<String> {
        self.inner.lock().expect("failures lock").first().cloned()
    }

    /// True when something failed (cheap: checked on every worker step).
    pub fn any(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }
}
