//! A soak: the harness's load for a long stretch while the server's own process figures
//! (resident memory, threads, open files, from its `/metrics`) are read at an interval. The
//! report gives each series and its least-squares slope per hour, so a leak shows as a slope
//! well away from zero once the warm-up's growth is behind.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::server_metrics::scrape;
use super::{BenchConfig, BenchReport, run};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SoakSample {
    pub elapsed_secs: f64,
    pub resident_mb: f64,
    pub threads: f64,
    pub open_files: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    pub samples: Vec<SoakSample>,
    /// Least-squares slopes over the samples taken after the warm-up.
    pub resident_mb_per_hour: f64,
    pub threads_per_hour: f64,
    pub open_files_per_hour: f64,
    pub load: BenchReport,
}

/// Runs `config`'s load and samples the server every `every` until the load ends.
pub async fn soak(config: BenchConfig, every: Duration) -> Result<SoakReport, String> {
    let url = config.url.clone();
    let (warmup, total) = (config.warmup, config.warmup + config.duration);
    let load = tokio::spawn(run(config));
    let started = Instant::now();
    let mut samples = Vec::new();
    loop {
        let metrics = scrape(&url).await?;
        samples.push(SoakSample {
            elapsed_secs: started.elapsed().as_secs_f64(),
            resident_mb: metrics.get("process_resident_memory_bytes") / 1e6,
            threads: metrics.get("process_threads"),
            open_files: metrics.get("process_open_fds"),
        });
        let left = total.saturating_sub(started.elapsed());
        if left.is_zero() || load.is_finished() {
            break;
        }
        tokio::time::sleep(every.min(left)).await;
    }
    let load = load.await.map_err(|e| format!("the load stopped: {e}"))??;
    let measured: Vec<&SoakSample> = samples
        .iter()
        .filter(|s| s.elapsed_secs >= warmup.as_secs_f64())
        .collect();
    let slope = |value: fn(&SoakSample) -> f64| {
        let points: Vec<(f64, f64)> = measured
            .iter()
            .map(|s| (s.elapsed_secs / 3600.0, value(s)))
            .collect();
        slope(&points)
    };
    Ok(SoakReport {
        resident_mb_per_hour: slope(|s| s.resident_mb),
        threads_per_hour: slope(|s| s.threads),
        open_files_per_hour: slope(|s| s.open_files),
        samples,
        load,
    })
}

/// The least-squares slope of `points` (0 with fewer than two).
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let (mean_x, mean_y) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let covariance: f64 = points
        .iter()
        .map(|(x, y)| (x - mean_x) * (y - mean_y))
        .sum();
    let variance: f64 = points.iter().map(|(x, _)| (x - mean_x).powi(2)).sum();
    if variance == 0.0 {
        0.0
    } else {
        covariance / variance
    }
}

impl SoakReport {
    pub fn summary(&self) -> String {
        let mut out = String::from("elapsed_s  resident_MB  threads  open_files\n");
        for s in &self.samples {
            out.push_str(&format!(
                "{:>9.0}  {:>11.1}  {:>7.0}  {:>10.0}\n",
                s.elapsed_secs, s.resident_mb, s.threads, s.open_files
            ));
        }
        out.push_str(&format!(
            "slopes after the warm-up: {:+.2} MB/h resident, {:+.2} threads/h, {:+.2} open files/h\n",
            self.resident_mb_per_hour, self.threads_per_hour, self.open_files_per_hour
        ));
        out.push_str(&self.load.summary());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slope_is_the_least_squares_line() {
        assert_eq!(slope(&[]), 0.0);
        assert_eq!(slope(&[(0.0, 5.0)]), 0.0);
        assert!((slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]) - 2.0).abs() < 1e-12);
        assert!(slope(&[(0.0, 4.0), (1.0, 4.0), (2.0, 4.0)]).abs() < 1e-12);
    }
}
