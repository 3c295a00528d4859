//! What the server counts, shared by the sessions and the device worker, rendered for
//! `/api/status/` (JSON) and `/metrics` (Prometheus text format). Bucket bounds live here, in
//! one place.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Seconds a frame waits in the queue, and a batch takes on the device.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0,
];
/// Frames per device batch.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// A Prometheus histogram with fixed buckets and lock-free updates.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations at or below each bound (not cumulative; summed when rendered).
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    /// The sum in millionths, to keep it in an atomic integer.
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        if let Some(bucket) = self.bounds.iter().position(|bound| value <= *bound) {
            self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((value * 1e6).round() as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn sum(&self) -> f64 {
        self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count());
        let _ = writeln!(
            out,
            "{name}_sum {}\n{name}_count {}",
            self.sum(),
            self.count()
        );
    }
}

/// How a frame was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Face,
    NoFace,
    /// A face too poor to judge liveness on (`frame_rejected`).
    QualityRejected,
    /// Refused with this protocol code.
    Refused(u16),
}

/// The refusal codes counted separately; any other is counted as `other`.
const REFUSAL_CODES: [u16; 7] = [400, 413, 415, 429, 500, 503, 504];

#[derive(Debug)]
pub struct Metrics {
    /// Device workers still warming their kernels up; the server is ready at zero.
    pub workers_warming: AtomicU64,
    pub queue_wait_seconds: Histogram,
    pub batch_seconds: Histogram,
    pub batch_size: Histogram,
    pub largest_batch: AtomicU64,
    pub queue_depth: AtomicU64,
    pub frames_abandoned: AtomicU64,
    pub open_sessions: AtomicU64,
    /// Sessions whose liveness check passed, and authentications that ran out of time.
    pub liveness_passed: AtomicU64,
    pub liveness_timed_out: AtomicU64,
    faces: AtomicU64,
    no_faces: AtomicU64,
    quality_rejected: AtomicU64,
    refused: [AtomicU64; REFUSAL_CODES.len() + 1],
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            workers_warming: AtomicU64::new(0),
            queue_wait_seconds: Histogram::new(SECONDS_BUCKETS),
            batch_seconds: Histogram::new(SECONDS_BUCKETS),
            batch_size: Histogram::new(BATCH_BUCKETS),
            largest_batch: AtomicU64::new(0),
            queue_depth: AtomicU64::new(0),
            frames_abandoned: AtomicU64::new(0),
            open_sessions: AtomicU64::new(0),
            liveness_passed: AtomicU64::new(0),
            liveness_timed_out: AtomicU64::new(0),
            faces: AtomicU64::new(0),
            no_faces: AtomicU64::new(0),
            quality_rejected: AtomicU64::new(0),
            refused: Default::default(),
        }
    }
}

impl Metrics {
    pub fn answered(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Face => &self.faces,
            Outcome::NoFace => &self.no_faces,
            Outcome::QualityRejected => &self.quality_rejected,
            Outcome::Refused(code) => {
                let slot = REFUSAL_CODES
                    .iter()
                    .position(|c| *c == code)
                    .unwrap_or(REFUSAL_CODES.len());
                &self.refused[slot]
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused(&self, code: u16) -> u64 {
        REFUSAL_CODES
            .iter()
            .position(|c| *c == code)
            .map_or(0, |slot| self.refused[slot].load(Ordering::Relaxed))
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP face_service_frames_total Frames answered, by outcome."
        );
        let _ = writeln!(out, "# TYPE face_service_frames_total counter");
        let _ = writeln!(
            out,
            "face_service_frames_total{{outcome=\"face\"}} {}",
            load(&self.faces)
        );
        let _ = writeln!(
            out,
            "face_service_frames_total{{outcome=\"no_face\"}} {}",
            load(&self.no_faces)
        );
        let _ = writeln!(
            out,
            "face_service_frames_total{{outcome=\"quality_rejected\"}} {}",
            load(&self.quality_rejected)
        );
        for (slot, counter) in self.refused.iter().enumerate() {
            let code = REFUSAL_CODES
                .get(slot)
                .map_or("other".to_owned(), u16::to_string);
            let _ = writeln!(
                out,
                "face_service_frames_total{{outcome=\"refused\",code=\"{code}\"}} {}",
                load(counter)
            );
        }
        let gauges = [
            (
                "face_service_queue_depth",
                "Frames waiting for the device.",
                load(&self.queue_depth),
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
        let name = "face_service_frames_abandoned_total";
        let _ = writeln!(
            out,
            "# HELP {name} Frames dropped unrun because their client left.\n# TYPE {name} counter\n{name} {}",
            load(&self.frames_abandoned)
        );
        let name = "face_service_liveness_sessions_total";
        let _ = writeln!(
            out,
            "# HELP {name} Liveness checks concluded, by verdict.\n# TYPE {name} counter\n\
             {name}{{verdict=\"passed\"}} {}\n{name}{{verdict=\"timed_out\"}} {}",
            load(&self.liveness_passed),
            load(&self.liveness_timed_out)
        );
        self.queue_wait_seconds.render(
            "face_service_queue_wait_seconds",
            "Time a frame waited for its device batch.",
            &mut out,
        );
        self.batch_seconds.render(
            "face_service_batch_seconds",
            "Device time per batch.",
            &mut out,
        );
        self.batch_size.render(
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
        let metrics = Metrics::default();
        for size in [1.0, 3.0, 3.0, 300.0] {
            metrics.batch_size.observe(size);
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
        let metrics = Metrics::default();
        metrics.answered(Outcome::Face);
        metrics.answered(Outcome::Refused(429));
        metrics.answered(Outcome::Refused(429));
        metrics.answered(Outcome::Refused(418));
        assert_eq!(metrics.refused(429), 2);
        let text = metrics.render();
        assert!(text.contains("face_service_frames_total{outcome=\"face\"} 1\n"));
        assert!(text.contains("face_service_frames_total{outcome=\"refused\",code=\"429\"} 2\n"));
        assert!(text.contains("face_service_frames_total{outcome=\"refused\",code=\"other\"} 1\n"));
    }
}
