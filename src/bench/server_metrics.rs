//! What the server measured itself while the harness loaded it: its Prometheus `/metrics`
//! read before and after the measured stretch, and the difference turned into batch sizes,
//! queue wait and device time per batch. A server without face-service's metrics (the
//! seed-style comparison server) simply has none.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// One reading of `/metrics`: every sample line, `name{labels}` to value.
#[derive(Debug, Clone, Default)]
pub struct MetricsSample(BTreeMap<String, f64>);

impl MetricsSample {
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (key, value) = line.rsplit_once(' ')?;
                Some((key.to_owned(), value.parse().ok()?))
            })
            .collect();
        Self(samples)
    }

    pub fn get(&self, key: &str) -> f64 {
        self.0.get(key).copied().unwrap_or(0.0)
    }
}

/// Reads `/metrics` from the server behind `ws_url` (`ws://host:port`).
pub async fn scrape(ws_url: &str) -> Result<MetricsSample, String> {
    let url = format!(
        "{}/metrics",
        ws_url.trim_end_matches('/').replacen("ws", "http", 1)
    );
    let read = async { reqwest::get(&url).await?.error_for_status()?.text().await };
    let body = tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .map_err(|_| format!("{url}: no answer in 5 s"))?
        .map_err(|e| format!("{url}: {e}"))?;
    Ok(MetricsSample::parse(&body))
}

/// The server's own account of the measured stretch.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ServerMeasures {
    pub batches: u64,
    pub frames_in_batches: u64,
    pub mean_batch_size: f64,
    /// Batches by size bucket, smallest first: (`le`, the bucket's upper bound; count).
    pub batch_sizes: Vec<(String, u64)>,
    pub mean_queue_wait_ms: f64,
    pub mean_device_ms_per_batch: f64,
}

impl ServerMeasures {
    /// What happened between two readings; `None` when the server exposes no batch metrics.
    pub fn between(before: &MetricsSample, after: &MetricsSample) -> Option<Self> {
        const SIZE: &str = "face_service_batch_size";
        if !after.0.contains_key(&format!("{SIZE}_count")) {
            return None;
        }
        let delta = |key: &str| after.get(key) - before.get(key);
        let batches = delta(&format!("{SIZE}_count"));
        let frames = delta(&format!("{SIZE}_sum"));
        let waits = delta("face_service_queue_wait_seconds_count");
        let mean = |total: f64, count: f64| if count > 0.0 { total / count } else { 0.0 };
        // The buckets are cumulative: each bucket's own count is its excess over the last.
        let mut batch_sizes = Vec::new();
        let mut below = 0.0;
        let prefix = format!("{SIZE}_bucket{{le=\"");
        let mut bounds: Vec<(f64, &String)> = after
            .0
            .keys()
            .filter_map(|key| {
                let bound = key.strip_prefix(&prefix)?.strip_suffix("\"}")?;
                let value = if bound == "+Inf" {
                    f64::INFINITY
                } else {
                    bound.parse().ok()?
                };
                Some((value, key))
            })
            .collect();
        bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (bound, key) in bounds {
            let cumulative = delta(key);
            if cumulative > below {
                let label = if bound.is_infinite() {
                    "+Inf".to_owned()
                } else {
                    bound.to_string()
                };
                batch_sizes.push((label, (cumulative - below) as u64));
            }
            below = cumulative;
        }
        Some(Self {
            batches: batches as u64,
            frames_in_batches: frames as u64,
            mean_batch_size: mean(frames, batches),
            batch_sizes,
            mean_queue_wait_ms: 1e3 * mean(delta("face_service_queue_wait_seconds_sum"), waits),
            mean_device_ms_per_batch: 1e3 * mean(delta("face_service_batch_seconds_sum"), batches),
        })
    }

    pub fn summary(&self) -> String {
        let sizes: Vec<String> = self
            .batch_sizes
            .iter()
            .map(|(le, n)| format!("<={le}: {n}"))
            .collect();
        format!(
            "server: {} batches, mean size {:.1} [{}], queue wait {:.1} ms, device {:.1} ms per batch",
            self.batches,
            self.mean_batch_size,
            sizes.join(", "),
            self.mean_queue_wait_ms,
            self.mean_device_ms_per_batch
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_difference_of_two_readings_gives_the_stretch_between() {
        let before = MetricsSample::parse(
            "# TYPE face_service_batch_size histogram\n\
             face_service_batch_size_bucket{le=\"1\"} 2\n\
             face_service_batch_size_bucket{le=\"2\"} 2\n\
             face_service_batch_size_bucket{le=\"4\"} 2\n\
             face_service_batch_size_bucket{le=\"+Inf\"} 2\n\
             face_service_batch_size_sum 2\nface_service_batch_size_count 2\n\
             face_service_batch_seconds_sum 0.02\n\
             face_service_queue_wait_seconds_sum 0.002\nface_service_queue_wait_seconds_count 2\n",
        );
        // Then three batches: sizes 1, 2 and 4 (7 frames), 60 ms on the device, 7 waits of 3 ms.
        let after = MetricsSample::parse(
            "face_service_batch_size_bucket{le=\"1\"} 3\n\
             face_service_batch_size_bucket{le=\"2\"} 4\n\
             face_service_batch_size_bucket{le=\"4\"} 5\n\
             face_service_batch_size_bucket{le=\"+Inf\"} 5\n\
             face_service_batch_size_sum 9\nface_service_batch_size_count 5\n\
             face_service_batch_seconds_sum 0.08\n\
             face_service_queue_wait_seconds_sum 0.023\nface_service_queue_wait_seconds_count 9\n",
        );
        let measures = ServerMeasures::between(&before, &after).unwrap();
        assert_eq!((measures.batches, measures.frames_in_batches), (3, 7));
        assert!((measures.mean_batch_size - 7.0 / 3.0).abs() < 1e-9);
        assert!((measures.mean_device_ms_per_batch - 20.0).abs() < 1e-9);
        assert!((measures.mean_queue_wait_ms - 3.0).abs() < 1e-9);
        let sizes: Vec<(&str, u64)> = measures
            .batch_sizes
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(sizes, [("1", 1), ("2", 1), ("4", 1)]);
    }

    #[test]
    fn a_server_without_batch_metrics_has_no_measures() {
        let json = MetricsSample::parse("{\"status\": \"healthy\"}");
        assert_eq!(ServerMeasures::between(&json, &json), None);
    }
}
