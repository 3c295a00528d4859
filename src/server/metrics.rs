//! What the server counts of its sessions' answers, rendered with the engine's own counters
//! for `/api/status/` (JSON) and `/metrics` (Prometheus text format).

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::engine::EngineMetrics;
use crate::identity::Decision;
use crate::server::codes::RefusalKind;

/// How a frame was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Face,
    NoFace,
    /// A face too poor to judge liveness on (`frame_rejected`).
    QualityRejected,
    Refused(RefusalKind),
}

/// The server's counters, and the engine's beside them.
#[derive(Debug)]
pub struct Metrics {
    pub engine: Arc<EngineMetrics>,
    pub open_sessions: AtomicU64,
    /// Sessions whose liveness check passed, and authentications that ran out of time.
    pub liveness_passed: AtomicU64,
    pub liveness_timed_out: AtomicU64,
    /// Issued sessions' identity decisions, by `Decision::KINDS`.
    identity_decisions: [AtomicU64; Decision::KINDS.len()],
    /// Issued sessions failed because their face looked like a photo or a screen.
    spoofs_detected: AtomicU64,
    /// Sessions of dead processes this one ended as `disconnected` (`registry`).
    pub sessions_reaped: AtomicU64,
    /// Heartbeats that did not reach the store.
    pub heartbeats_failed: AtomicU64,
    faces: AtomicU64,
    no_faces: AtomicU64,
    quality_rejected: AtomicU64,
    refused: [AtomicU64; RefusalKind::ALL.len()],
}

impl Metrics {
    pub fn new(engine: Arc<EngineMetrics>) -> Self {
        Self {
            engine,
            open_sessions: AtomicU64::new(0),
            liveness_passed: AtomicU64::new(0),
            liveness_timed_out: AtomicU64::new(0),
            identity_decisions: Default::default(),
            spoofs_detected: AtomicU64::new(0),
            sessions_reaped: AtomicU64::new(0),
            heartbeats_failed: AtomicU64::new(0),
            faces: AtomicU64::new(0),
            no_faces: AtomicU64::new(0),
            quality_rejected: AtomicU64::new(0),
            refused: Default::default(),
        }
    }

    pub fn decided(&self, decision: &Decision) {
        self.identity_decisions[decision.kind_index()].fetch_add(1, Ordering::Relaxed);
        if decision.is_spoof() {
            self.spoofs_detected.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn answered(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Face => &self.faces,
            Outcome::NoFace => &self.no_faces,
            Outcome::QualityRejected => &self.quality_rejected,
            Outcome::Refused(kind) => &self.refused[kind as usize],
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused(&self, kind: RefusalKind) -> u64 {
        self.refused[kind as usize].load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let engine = &self.engine;
        let _ = writeln!(
            out,
            "# HELP face_service_frames_total Frames answered, by outcome."
        );
        let _ = writeln!(out, "# TYPE face_service_frames_total counter");
        let answered = [
            ("face", &self.faces),
            ("no_face", &self.no_faces),
            ("quality_rejected", &self.quality_rejected),
        ];
        for (outcome, counter) in answered {
            let _ = writeln!(
                out,
                "face_service_frames_total{{outcome=\"{outcome}\"}} {}",
                load(counter)
            );
        }
        for kind in RefusalKind::ALL {
            let _ = writeln!(
                out,
                "face_service_frames_total{{outcome=\"refused\",code=\"{}\"}} {}",
                kind.code(),
                self.refused(kind)
            );
        }
        let process = ProcessUsage::read();
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory of the process.",
                process.resident_bytes,
            ),
            (
                "process_threads",
                "Threads of the process.",
                process.threads,
            ),
            (
                "process_open_fds",
                "File descriptors the process holds open.",
                process.open_files,
            ),
            (
                "face_service_queue_depth",
                "Frames waiting for the device.",
                load(&engine.queue_depth),
            ),
            (
                "face_service_open_sessions",
                "Open WebSocket sessions.",
                load(&self.open_sessions),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        let counters = [
            (
                "face_service_frames_abandoned_total",
                "Frames dropped unrun because their client left.",
                &engine.frames_abandoned,
            ),
            (
                "face_service_sessions_reaped_total",
                "Open sessions of dead processes that this process marked disconnected.",
                &self.sessions_reaped,
            ),
            (
                "face_service_heartbeats_failed_total",
                "Heartbeats that did not reach the store.",
                &self.heartbeats_failed,
            ),
        ];
        for (name, help, counter) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                load(counter)
            );
        }
        let name = "face_service_liveness_sessions_total";
        let _ = writeln!(
            out,
            "# HELP {name} Liveness checks concluded, by verdict.\n# TYPE {name} counter\n\
             {name}{{verdict=\"passed\"}} {}\n{name}{{verdict=\"timed_out\"}} {}",
            load(&self.liveness_passed),
            load(&self.liveness_timed_out)
        );
        let name = "face_service_identity_decisions_total";
        let _ = writeln!(
            out,
            "# HELP {name} Issued sessions' identity steps, by decision.\n# TYPE {name} counter"
        );
        for (kind, counter) in Decision::KINDS.iter().zip(&self.identity_decisions) {
            let _ = writeln!(out, "{name}{{decision=\"{kind}\"}} {}", load(counter));
        }
        let name = "face_service_spoofs_detected_total";
        let _ = writeln!(
            out,
            "# HELP {name} Issued sessions failed as spoof_detected by the anti-spoofing check.\n\
             # TYPE {name} counter\n{name} {}",
            load(&self.spoofs_detected)
        );
        engine.queue_wait_seconds.render(
            "face_service_queue_wait_seconds",
            "Time a frame waited for its device batch.",
            &mut out,
        );
        engine.batch_seconds.render(
            "face_service_batch_seconds",
            "Device time per batch.",
            &mut out,
        );
        engine.batch_size.render(
            "face_service_batch_size",
            "Frames per device batch.",
            &mut out,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_render_cumulative_buckets_sum_and_count() {
        let metrics = Metrics::new(Arc::default());
        for size in [1.0, 3.0, 3.0, 300.0] {
            metrics.engine.batch_size.observe(size);
        }
        let text = metrics.render();
        assert!(
            text.contains("face_service_batch_size_bucket{le=\"1\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("face_service_batch_size_bucket{le=\"4\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("face_service_batch_size_bucket{le=\"256\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("face_service_batch_size_bucket{le=\"+Inf\"} 4\n"),
            "{text}"
        );
        assert!(text.contains("face_service_batch_size_sum 307\n"), "{text}");
        assert!(text.contains("face_service_batch_size_count 4\n"), "{text}");
    }

    #[test]
    fn outcomes_are_counted_by_code() {
        let metrics = Metrics::new(Arc::default());
        metrics.answered(Outcome::Face);
        metrics.answered(Outcome::Refused(RefusalKind::TooFast));
        metrics.answered(Outcome::Refused(RefusalKind::TooFast));
        metrics.answered(Outcome::Refused(RefusalKind::Overloaded));
        assert_eq!(metrics.refused(RefusalKind::TooFast), 2);
        let text = metrics.render();
        assert!(text.contains("face_service_frames_total{outcome=\"face\"} 1\n"));
        assert!(text.contains("face_service_frames_total{outcome=\"refused\",code=\"429\"} 2\n"));
        assert!(text.contains("face_service_frames_total{outcome=\"refused\",code=\"503\"} 1\n"));
        assert!(text.contains("face_service_frames_total{outcome=\"refused\",code=\"400\"} 0\n"));
    }
}

/// What the process holds, from `/proc/self` (zeros where there is no `/proc`): what a soak
/// watches for leaks.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessUsage {
    pub resident_bytes: u64,
    pub threads: u64,
    pub open_files: u64,
}

impl ProcessUsage {
    pub fn read() -> ProcessUsage {
        ProcessUsage::of("/proc/self")
    }

    /// The process whose `/proc` directory is `proc_dir` (`/proc/PID`).
    pub fn of(proc_dir: &str) -> ProcessUsage {
        let status = std::fs::read_to_string(format!("{proc_dir}/status")).unwrap_or_default();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|value| value.split_whitespace().next())
                .and_then(|value| value.parse().ok())
                .unwrap_or(0)
        };
        ProcessUsage {
            resident_bytes: field("VmRSS:") * 1024,
            threads: field("Threads:"),
            open_files: std::fs::read_dir(format!("{proc_dir}/fd"))
                .map_or(0, |fds| fds.count() as u64),
        }
    }
}
