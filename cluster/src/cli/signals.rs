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

/// Crash-only panics for computations of more than one worker: a panicking worker thread would
/// leave the others waiting for it forever (and a lost peer connection panics timely's network
/// threads, after which unwinding workers abort the process with a panic in a destructor). The
/// first panic prints its message, says what it means, and ends the process; the restart
/// restores the last checkpoint. A lost connection exits with [`crate::wire::PEER_LOST`] and names the peer,
/// so the coordinator can tell the process that died from the ones that lost it.
pub fn exit_on_panic(process: usize) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("timely communication error") {
            let peer = name
                .strip_prefix("timely:recv-")
                .or_else(|| name.strip_prefix("timely:send-"))
                .map_or("another process".to_string(), |p| format!("process {p}"));
            eprintln!(
                "error: process {process} lost its connection to {peer} ({message}); \
                 exiting so the job restarts from its last checkpoint"
            );
            std::process::exit(crate::wire::PEER_LOST);
        }
        default(info);
        eprintln!(
            "error: thread `{name}` of process {process} panicked; exiting so the job restarts \
             from its last checkpoint"
        );
        std::process::exit(101);
    }));
}
