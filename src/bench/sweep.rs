//! Sweep mode: the load harness run at more and more sessions until the server stops serving
//! them (an error answer, a closed session, or a p99 latency over the bound), giving the
//! largest load served (sessions x fps): the number an operator sizes hosts with. It can draw
//! the sweep as an SVG for the README.

use serde::Serialize;

use crate::bench::{BenchConfig, BenchReport, run};

#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    pub fps: Option<f32>,
    pub p99_bound_ms: f64,
    /// One run per step, in order, up to and including the first that was not served.
    pub steps: Vec<BenchReport>,
    /// The largest number of sessions served, and the frames per second they sent in all.
    pub largest_sessions_served: Option<usize>,
    pub largest_load_served_fps: Option<f64>,
}

/// Served: every frame answered with a face or a no-face, every session opened, none cut
/// and none closed but by concluding (1000), p99 in bound.
pub fn served(report: &BenchReport, p99_bound_ms: f64) -> bool {
    report.errors.is_empty()
        && report.closed.keys().all(|&code| code == 1000)
        && report.sessions_cut == 0
        && report.open_failures == 0
        && report.frames_answered > 0
        && report.latency_ms_p99 <= p99_bound_ms
}

/// Runs `config` at each of `sessions` in turn, stopping after the first step not served.
pub async fn sweep(
    config: &BenchConfig,
    sessions: &[usize],
    p99_bound_ms: f64,
) -> Result<SweepReport, String> {
    let mut report = SweepReport {
        fps: config.fps,
        p99_bound_ms,
        steps: Vec::new(),
        largest_sessions_served: None,
        largest_load_served_fps: None,
    };
    for &count in sessions {
        let step = run(BenchConfig {
            sessions: count,
            ..config.clone()
        })
        .await?;
        let ok = served(&step, p99_bound_ms);
        eprintln!(
            "sweep: {count} sessions {}: {}",
            if ok { "served" } else { "NOT served" },
            step.summary().replace('\n', "; ")
        );
        if ok {
            report.largest_sessions_served = Some(count);
            report.largest_load_served_fps = Some(step.frames_sent as f64 / step.seconds);
        }
        report.steps.push(step);
        if !ok {
            break;
        }
    }
    Ok(report)
}

/// The sweep as an SVG chart: answers per second (left axis) and p99 latency (right axis)
/// against sessions, with the latency bound dashed.
pub fn svg(report: &SweepReport, title: &str) -> String {
    const W: f64 = 720.0;
    const H: f64 = 420.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 70.0;
    const TOP: f64 = 75.0;
    const BOTTOM: f64 = 60.0;
    let max_sessions = report.steps.iter().map(|s| s.sessions).max().unwrap_or(1) as f64;
    let max_rate = report
        .steps
        .iter()
        .map(|s| s.answers_per_second)
        .fold(1.0, f64::max)
        * 1.1;
    let max_latency = report
        .steps
        .iter()
        .map(|s| s.latency_ms_p99)
        .fold(report.p99_bound_ms, f64::max)
        * 1.1;
    let x = |sessions: f64| LEFT + (W - LEFT - RIGHT) * sessions / max_sessions;
    let y = |value: f64, max: f64| H - BOTTOM - (H - TOP - BOTTOM) * value / max;
    let line = |value: fn(&BenchReport) -> f64, max: f64| -> String {
        report
            .steps
            .iter()
            .map(|s| format!("{:.1},{:.1}", x(s.sessions as f64), y(value(s), max)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let dots = |value: fn(&BenchReport) -> f64, max: f64, colour: &str| -> String {
        report
            .steps
            .iter()
            .map(|s| {
                format!(
                    r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{colour}"/>"#,
                    x(s.sessions as f64),
                    y(value(s), max)
                )
            })
            .collect()
    };
    let rate = |s: &BenchReport| s.answers_per_second;
    let latency = |s: &BenchReport| s.latency_ms_p99;
    let bound_y = y(report.p99_bound_ms, max_latency);
    let (x0, x1, y_base) = (LEFT, W - RIGHT, H - BOTTOM);
    let mut ticks = String::new();
    for step in &report.steps {
        ticks += &format!(
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x(step.sessions as f64),
            y_base + 18.0,
            step.sessions
        );
    }
    let served = match report.largest_sessions_served {
        Some(n) => format!("largest served: {n} sessions"),
        None => "no step served".to_owned(),
    };
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{LEFT}" y="24" font-size="15">{title}</text>
<text x="{LEFT}" y="40" fill="#555">{served} (p99 bound {bound:.0} ms)</text>
<line x1="{x0}" y1="{y_base}" x2="{x1}" y2="{y_base}" stroke="black"/>
<line x1="{x0}" y1="{TOP}" x2="{x0}" y2="{y_base}" stroke="#1f5fbf"/>
<line x1="{x1}" y1="{TOP}" x2="{x1}" y2="{y_base}" stroke="#c0392b"/>
{ticks}
<text x="{mid:.1}" y="{label_y:.1}" text-anchor="middle">sessions</text>
<text x="{x0}" y="{top_label:.1}" fill="#1f5fbf" text-anchor="middle">answers/s (max {rate_max:.0})</text>
<text x="{x1}" y="{top_label:.1}" fill="#c0392b" text-anchor="middle">p99 ms (max {latency_max:.0})</text>
<line x1="{x0}" y1="{bound_y:.1}" x2="{x1}" y2="{bound_y:.1}" stroke="#c0392b" stroke-dasharray="6 4"/>
<polyline fill="none" stroke="#1f5fbf" stroke-width="2" points="{rate_line}"/>
<polyline fill="none" stroke="#c0392b" stroke-width="2" points="{latency_line}"/>
{rate_dots}{latency_dots}
</svg>
"##,
        bound = report.p99_bound_ms,
        mid = (x0 + x1) / 2.0,
        label_y = y_base + 40.0,
        top_label = TOP - 8.0,
        rate_max = max_rate / 1.1,
        latency_max = max_latency / 1.1,
        rate_line = line(rate, max_rate),
        latency_line = line(latency, max_latency),
        rate_dots = dots(rate, max_rate, "#1f5fbf"),
        latency_dots = dots(latency, max_latency, "#c0392b"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(sessions: usize, rate: f64, p99: f64, errors: bool) -> BenchReport {
        let mut report = BenchReport {
            sessions,
            seconds: 10.0,
            frames_sent: (rate * 10.0) as u64,
            frames_answered: (rate * 10.0) as u64,
            answers_per_second: rate,
            latency_ms_p99: p99,
            ..BenchReport::default()
        };
        if errors {
            report.errors.insert(503, 4);
        }
        report
    }

    #[test]
    fn a_step_is_served_without_errors_closes_or_latency_over_the_bound() {
        assert!(served(&step(8, 76.0, 120.0, false), 500.0));
        assert!(served(&step(8, 76.0, 500.0, false), 500.0));
        assert!(!served(&step(8, 76.0, 500.1, false), 500.0));
        assert!(!served(&step(8, 76.0, 100.0, true), 500.0));
        let mut closed = step(8, 76.0, 100.0, false);
        closed.closed.insert(4429, 1);
        assert!(!served(&closed, 500.0));
    }

    #[test]
    fn the_chart_draws_every_step() {
        let report = SweepReport {
            fps: Some(9.5),
            p99_bound_ms: 500.0,
            steps: vec![
                step(4, 38.0, 40.0, false),
                step(8, 76.0, 90.0, false),
                step(16, 120.0, 900.0, true),
            ],
            largest_sessions_served: Some(8),
            largest_load_served_fps: Some(76.0),
        };
        let chart = svg(&report, "test");
        assert!(chart.starts_with("<svg"));
        assert_eq!(chart.matches("<circle").count(), 6);
        assert_eq!(chart.matches("<polyline").count(), 2);
        assert!(chart.contains("largest served: 8 sessions"));
    }
}
