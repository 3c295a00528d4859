//! `face-service bench`: loads a running server with sessions of real frames and reports what
//! came back (see `crate::bench`).

use std::path::PathBuf;
use std::time::Duration;

use crate::bench::{self, BenchConfig};
use crate::cli::AnyError;

/// The load to put on a server.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The server, as ws://HOST:PORT.
    #[arg(long, default_value = "ws://127.0.0.1:8003")]
    pub url: String,
    /// Concurrent sessions.
    #[arg(long, default_value_t = 16)]
    pub sessions: usize,
    /// Frames per second per session (the seed allows 10).
    #[arg(long, default_value_t = 9.5, conflicts_with = "closed_loop")]
    pub fps: f32,
    /// Send each session's next frame as soon as its last is answered, instead of at --fps.
    #[arg(long)]
    pub closed_loop: bool,
    /// Seconds to measure, after the warm-up.
    #[arg(long, default_value_t = 20.0)]
    pub seconds: f64,
    /// Seconds before measuring starts.
    #[arg(long, default_value_t = 3.0)]
    pub warmup: f64,
    /// A directory of JPEG/PNG frames, or a file: an MJPEG video (JPEG frames back to back,
    /// as `ffmpeg -f mjpeg` writes) or one image. By default the 120 carphone frames at
    /// 640x480, JPEG quality 80.
    #[arg(long)]
    pub frames: Option<PathBuf>,
    /// Send frames as binary messages instead of the seed's JSON base64.
    #[arg(long)]
    pub binary: bool,
    /// A tenant's API key: each session is created over the REST API first (an
    /// authentication session, as a tenant's backend makes), and a new one is opened whenever
    /// one ends. Without it, open-mode tokens (the server must run with open sessions).
    #[arg(long, env = "FACE_SERVICE_BENCH_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Print the report as JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// Sweep: run at each of these session counts in turn (e.g. `4,8,16,24,32`), stopping at
    /// the first not served, and report the largest load served (replaces --sessions).
    #[arg(long, value_delimiter = ',')]
    pub sweep: Vec<usize>,
    /// In a sweep, a step is served only with its p99 latency at most this many ms.
    #[arg(long, default_value_t = 500.0)]
    pub p99_bound_ms: f64,
    /// Soak: sample the server's resident memory, threads and open files (from its
    /// `/metrics`) every this many seconds while the load runs for --seconds, and report each
    /// series with its slope per hour.
    #[arg(long, conflicts_with = "sweep")]
    pub soak_every_secs: Option<f64>,
    /// In a sweep, draw answers per second and p99 latency against sessions into this SVG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

pub fn run(args: BenchArgs) -> Result<(), AnyError> {
    let frames = match &args.frames {
        Some(file) if file.is_file() => bench::frames_of_file(std::fs::read(file)?),
        Some(dir) => {
            let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
                .map(|entry| entry.map(|e| e.path()))
                .collect::<Result<_, _>>()?;
            paths.sort();
            paths
                .into_iter()
                .filter(|p| {
                    matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("jpg" | "jpeg" | "png")
                    )
                })
                .map(std::fs::read)
                .collect::<Result<Vec<_>, _>>()?
        }
        None => bench::footage::carphone_jpegs(640, 480, 80)?,
    };
    let config = BenchConfig {
        url: args.url,
        sessions: args.sessions,
        fps: (!args.closed_loop).then_some(args.fps),
        duration: Duration::from_secs_f64(args.seconds),
        warmup: Duration::from_secs_f64(args.warmup),
        frames,
        binary: args.binary,
        progress: true,
        api_key: args.api_key,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    if let Some(every) = args.soak_every_secs {
        let report = runtime.block_on(bench::soak::soak(config, Duration::from_secs_f64(every)))?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!("{}", report.summary());
        }
        return Ok(());
    }
    if args.sweep.is_empty() {
        let report = runtime.block_on(bench::run(config))?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!("{}", report.summary());
        }
        return Ok(());
    }
    let report = runtime.block_on(bench::sweep::sweep(&config, &args.sweep, args.p99_bound_ms))?;
    if let Some(path) = &args.plot {
        let fps = config
            .fps
            .map_or("closed loop".to_owned(), |f| format!("{f} fps"));
        let title = format!("face-service sweep: sessions at {fps}, {}", config.url);
        std::fs::write(path, bench::sweep::svg(&report, &title))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        match (
            report.largest_sessions_served,
            report.largest_load_served_fps,
        ) {
            (Some(sessions), Some(load)) => println!(
                "largest load served: {sessions} sessions, {load:.1} frames/s (p99 <= {} ms, no errors)",
                args.p99_bound_ms
            ),
            _ => println!(
                "no step was served (p99 <= {} ms, no errors)",
                args.p99_bound_ms
            ),
        }
    }
    Ok(())
}
