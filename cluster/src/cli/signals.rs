//! Signals of `weir run`. With `--savepoint-on-stop`, the first SIGTERM or Ctrl-C asks the job
//! to stop with a savepoint; a second one aborts at once. With checkpoints, SIGUSR1 asks for a
//! savepoint without stopping.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::signal::unix::{signal, SignalKind};

static SEEN: AtomicBool = AtomicBool::new(false);

fn on_signal(name: &str) {
    if SEEN.swap(true, Ordering::AcqRel) {
        eprintln!("{name} again: aborting without a savepoint");
        std::process::exit(130);
    }
    eprintln!("{name}: stopping with a savepoint (send it again to abort)");
    weir_engine::stop::request();
}

/// Installs the handlers, on the shared I/O runtime.
pub fn stop_with_savepoint_on_signal() {
    let runtime = weir_engine::io::runtime();
    for (kind, name) in [
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::interrupt(), "SIGINT"),
    ] {
        let _guard = runtime.enter();
        match signal(kind) {
            Ok(mut stream) => {
                runtime.spawn(async move {
                    while stream.recv().await.is_some() {
                        on_signal(name);
                    }
                });
            }
            Err(e) => eprintln!("warning: cannot handle {name}: {e}"),
        }
    }
}

/// SIGUSR1: a savepoint without stopping (the next checkpoint completed).
pub fn savepoint_on_sigusr1() {
    let runtime = weir_engine::io::runtime();
    let _guard = runtime.enter();
    match signal(SignalKind::user_defined1()) {
        Ok(mut stream) => {
            runtime.spawn(async move {
                while stream.recv().await.is_some() {
                    eprintln!("SIGUSR1: the next checkpoint will be a savepoint");
                    weir_engine::stop::request_savepoint();
                }
            });
        }
        Err(e) => eprintln!("warning: cannot handle SIGUSR1: {e}"),
    }
}
