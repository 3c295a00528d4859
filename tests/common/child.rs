//! Child processes for tests (the built server, Chromium): started with stderr watched, and
//! killed however the test ends.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child process, killed and reaped when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `command` with stderr piped and waits up to `limit` for the first stderr line that
/// `find` turns into a value (an address the process logs, say). The rest of stderr is read
/// and dropped, so that the process never blocks on a full pipe.
pub fn spawn_until_stderr_says<T: Send + 'static>(
    command: &mut Command,
    limit: Duration,
    find: impl Fn(&str) -> Option<T> + Send + 'static,
) -> (KillOnDrop, T) {
    let mut child = KillOnDrop(
        command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {:?}: {e}", command.get_program())),
    );
    let stderr = BufReader::new(child.0.stderr.take().expect("stderr is piped"));
    let (found_tx, found_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = stderr.lines().map_while(Result::ok);
        let _ = found_tx.send(lines.by_ref().find_map(|line| find(&line)));
        lines.for_each(drop);
    });
    let found = found_rx
        .recv_timeout(limit)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("{:?} did not say what was awaited", command.get_program()));
    (child, found)
}

/// Runs `command` and panics with what it printed unless it succeeds.
pub fn passes(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?}:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// What `face-service ARGS` prints; panics with its stderr when it fails.
pub fn printed_by(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_face-service"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{args:?}: {stderr}");
    String::from_utf8(output.stdout).unwrap()
}
