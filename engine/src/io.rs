//! The process's small shared tokio runtime, for clients whose APIs are async (the object
//! store, Redis): operators call them synchronously, bounded in time, from their own threads.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

/// The runtime (one per process, two threads).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("weir-io")
            .enable_all()
            .build()
            .expect("the I/O runtime starts")
    })
}

/// Runs `future` to completion on the runtime, waiting at most `timeout`; `None` when it took
/// longer (it is then dropped).
pub fn block_on_for<T>(timeout: Duration, future: impl Future<Output = T>) -> Option<T> {
    runtime().block_on(async { tokio::time::timeout(timeout, future).await.ok() })
}
