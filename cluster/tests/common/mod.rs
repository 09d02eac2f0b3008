//! Running the `weir` binary from end-to-end tests, bounded in time.

#![allow(dead_code)]

pub mod kafka;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `weir` binary of this build, with stdout and stderr captured.
pub fn weir() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weir"));
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// Waits for `child` at most `limit`, killing it after that.
pub fn wait(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "timed out after {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `weir ARGS` in `cwd`, for at most two minutes.
pub fn run(args: &[&str], cwd: &Path) -> Output {
    wait(
        weir()
            .args(args)
            .current_dir(cwd)
            .spawn()
            .expect("spawn weir"),
        Duration::from_secs(120),
    )
}

/// The captured stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}
