//! The real `face-service serve` process, as systemd or Kubernetes runs it: started from the
//! built binary on the CPU backend, stopped with SIGTERM or killed with SIGKILL.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::child::{KillOnDrop, spawn_until_stderr_says};
use super::client::get_text;
use face_service::server::metrics::ProcessUsage;

/// A running server process, killed if the test ends without stopping it.
pub struct ServerProcess {
    pub child: KillOnDrop,
    pub address: SocketAddr,
    /// Its store (`--data-dir`), in cargo's scratch directory for tests.
    pub data_dir: PathBuf,
}

impl ServerProcess {
    /// Starts `face-service serve` on the CPU on a free port with `extra` flags, and waits for
    /// it to listen (the address comes from its log).
    pub fn start(extra: &[&str]) -> ServerProcess {
        Self::start_on("cpu", extra)
    }

    /// `start` on `device` (`cpu` or `gpu`).
    pub fn start_on(device: &str, extra: &[&str]) -> ServerProcess {
        Self::launch(binary(), device, "127.0.0.1:0", extra)
    }

    /// `start` listening on `bind`: a process restarted where a proxy expects it.
    pub fn start_at(bind: SocketAddr, extra: &[&str]) -> ServerProcess {
        Self::launch(binary(), "cpu", &bind.to_string(), extra)
    }

    /// `start`, allowed only `files` open file descriptors (`ulimit -n`).
    pub fn start_with_file_limit(files: u32, extra: &[&str]) -> ServerProcess {
        let mut shell = Command::new("sh");
        shell.args([
            "-c",
            &format!("ulimit -n {files} && exec \"$0\" \"$@\""),
            env!("CARGO_BIN_EXE_face-service"),
        ]);
        Self::launch(shell, "cpu", "127.0.0.1:0", extra)
    }

    /// Runs `serve` with `command` (the binary, or a shell that execs it).
    fn launch(mut serve: Command, device: &str, bind: &str, extra: &[&str]) -> ServerProcess {
        let data_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("process-{}", uuid::Uuid::new_v4()));
        serve
            .args(["serve", "--device", device, "--bind", bind])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(extra)
            .env("NO_COLOR", "1")
            // glibc raises its mmap threshold as large buffers are freed, and then keeps freed
            // frame-sized buffers in its per-thread arenas: resident memory wanders by +-15 MB
            // from one round of sessions to the next and creeps towards a plateau (about
            // 170 MB after 1,800 sessions here), hiding a small leak. A fixed threshold hands
            // large buffers back to the system when freed, so what stays resident is what the
            // process still holds (about 27 MB here).
            .env("MALLOC_MMAP_THRESHOLD_", "131072");
        let (child, address) =
            spawn_until_stderr_says(&mut serve, Duration::from_secs(120), |line| {
                let line = strip_ansi(line);
                let rest = line.split_once("listening")?.1;
                rest.split_once("address=")?
                    .1
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            });
        ServerProcess {
            child,
            address,
            data_dir,
        }
    }

    /// Resident memory in KiB and thread count, from `/proc/PID/status`.
    pub fn usage(&self) -> (u64, u64) {
        let usage = ProcessUsage::of(&format!("/proc/{}", self.child.0.id()));
        assert!(usage.threads > 0, "no /proc/PID/status for the server");
        (usage.resident_bytes / 1024, usage.threads)
    }

    pub async fn status(&self, path: &str) -> Value {
        serde_json::from_str(&get_text(self.address, path).await).expect("JSON")
    }

    pub async fn open_sessions(&self) -> u64 {
        self.status("/api/status/").await["open_sessions"]
            .as_u64()
            .unwrap()
    }

    /// Its id in the store's registry of processes.
    pub async fn process_id(&self) -> String {
        self.status("/api/status/").await["process_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Sends SIGTERM and waits (at most 30 s: the drain takes up to 22 s) for the process to
    /// exit.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal(rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: the process dies at once, with no chance to tell anyone.
    pub fn kill(&mut self) {
        self.signal(rustix::process::Signal::KILL);
        let _ = self.child.0.wait();
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_child(&self.child.0);
        rustix::process::kill_process(pid, signal).expect("signalling the server");
    }
}

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_face-service"))
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            out.push(c);
        }
    }
    out
}
