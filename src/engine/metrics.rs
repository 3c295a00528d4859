//! What the engine counts as it runs: queue depth, batch sizes, device time, waits. The
//! server renders it beside its own counters; bucket bounds live here, in one place.

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
    pub fn new(bounds: &'static [f64]) -> Self {
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

    /// Writes the histogram in the Prometheus text format.
    pub fn render(&self, name: &str, help: &str, out: &mut String) {
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

/// The engine's counters and histograms, updated lock-free by its workers.
#[derive(Debug)]
pub struct EngineMetrics {
    /// Device workers still warming their kernels up; the engine is ready at zero.
    pub workers_warming: AtomicU64,
    pub queue_wait_seconds: Histogram,
    pub batch_seconds: Histogram,
    pub batch_size: Histogram,
    pub largest_batch: AtomicU64,
    pub queue_depth: AtomicU64,
    /// Frames dropped unrun because their session had gone.
    pub frames_abandoned: AtomicU64,
}

impl Default for EngineMetrics {
    fn default() -> Self {
        Self {
            workers_warming: AtomicU64::new(0),
            queue_wait_seconds: Histogram::new(SECONDS_BUCKETS),
            batch_seconds: Histogram::new(SECONDS_BUCKETS),
            batch_size: Histogram::new(BATCH_BUCKETS),
            largest_batch: AtomicU64::new(0),
            queue_depth: AtomicU64::new(0),
            frames_abandoned: AtomicU64::new(0),
        }
    }
}
