//! The `face-service` command: one binary for every way a person uses the service.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use face_service::bench::{self, BenchConfig};
use face_service::device::{ComputeDevice, DeviceRequest};
use face_service::frame;
use face_service::models::input::images_to_tensor;
use face_service::models::{FaceModels, ModelKind, ModelOptions, WeightFile, WeightSource};
use face_service::overlay::draw_faces;
use face_service::pipeline::detection::sigmoid;
use face_service::pipeline::face_mesh::{FaceMesh, FaceMeshOptions};
use face_service::pipeline::tracker::{FaceTracker, TrackingMode};
use face_service::server::{self, ServeConfig};
use face_service::tflite::TfliteModel;
use serde_json::json;

/// Real-time face landmarks and liveness: MediaPipe FaceMesh as burn models on wgpu or the CPU.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// What the models run on: `auto` takes a hardware GPU if there is one, else the CPU.
    #[arg(
        long,
        env = "FACE_SERVICE_DEVICE",
        value_enum,
        default_value = "auto",
        global = true
    )]
    device: DeviceRequest,

    /// Read the `.tflite` weight files from this directory instead of the copies compiled in.
    #[arg(long, env = "FACE_SERVICE_WEIGHTS_DIR", global = true)]
    weights_dir: Option<PathBuf>,

    /// Load weight files whose sha256 differs from MediaPipe 0.10.21's (e.g. a retrained model
    /// of the same architecture).
    #[arg(long, env = "FACE_SERVICE_SKIP_WEIGHT_CHECKSUM", global = true)]
    skip_weight_checksum: bool,

    /// Run MediaPipe's attention model (478 points: the mesh with refined lips and eyes, and
    /// the irises), as the seed's `refine_landmarks=True`, instead of the 468-point model.
    #[arg(
        long,
        alias = "refine",
        env = "FACE_SERVICE_REFINE_LANDMARKS",
        global = true
    )]
    refine_landmarks: bool,

    /// Log filter, in `tracing` syntax (`info`, `face_service=debug`, ...).
    #[arg(long, env = "FACE_SERVICE_LOG", default_value = "info", global = true)]
    log_level: String,

    /// Log as JSON lines instead of text.
    #[arg(long, env = "FACE_SERVICE_LOG_JSON", global = true)]
    log_json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the seed's WebSocket protocol (the drop-in replacement for its gunicorn deployment).
    Serve(ServeConfig),
    /// List the models, their parameter counts, and the device in use.
    Models,
    /// Load a running server with N sessions of real frames, and report throughput and latency.
    Bench(BenchArgs),
    /// Find face meshes in images and print one JSON line per image, in image pixels.
    Analyze {
        /// Faces to find per image (the seed runs one).
        #[arg(long, default_value_t = 1)]
        max_faces: usize,
        /// Treat every image on its own, running the detector on each (the default).
        #[arg(long, conflicts_with = "video")]
        r#static: bool,
        /// Treat the images as consecutive frames of one stream: track faces from frame to
        /// frame, running the detector only when a face is missing.
        #[arg(long)]
        video: bool,
        /// Draw the landmarks and box over each image into this PNG (with several images,
        /// `-N` is added before the extension).
        #[arg(long)]
        overlay: Option<PathBuf>,
        /// The images (JPEG or PNG).
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Run one raw model on an image resized to its input size, and print the outputs as JSON.
    Infer {
        /// Which model.
        #[arg(long, value_enum, default_value = "landmarks")]
        model: RawModel,
        /// The image (JPEG or PNG).
        image: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// The server, as ws://HOST:PORT.
    #[arg(long, default_value = "ws://127.0.0.1:8003")]
    url: String,
    /// Concurrent sessions.
    #[arg(long, default_value_t = 16)]
    sessions: usize,
    /// Frames per second per session (the seed allows 10).
    #[arg(long, default_value_t = 9.5, conflicts_with = "closed_loop")]
    fps: f32,
    /// Send each session's next frame as soon as its last is answered, instead of at --fps.
    #[arg(long)]
    closed_loop: bool,
    /// Seconds to measure, after the warm-up.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Seconds before measuring starts.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// A directory of JPEG/PNG frames, or a file: an MJPEG video (JPEG frames back to back,
    /// as `ffmpeg -f mjpeg` writes) or one image. By default the 120 carphone frames at
    /// 640x480, JPEG quality 80.
    #[arg(long)]
    frames: Option<PathBuf>,
    /// Send frames as binary messages instead of the seed's JSON base64.
    #[arg(long)]
    binary: bool,
    /// Print the report as JSON instead of a summary.
    #[arg(long)]
    json: bool,
    /// Sweep: run at each of these session counts in turn (e.g. `4,8,16,24,32`), stopping at
    /// the first not served, and report the largest load served (replaces --sessions).
    #[arg(long, value_delimiter = ',')]
    sweep: Vec<usize>,
    /// In a sweep, a step is served only with its p99 latency at most this many ms.
    #[arg(long, default_value_t = 500.0)]
    p99_bound_ms: f64,
    /// In a sweep, draw answers per second and p99 latency against sessions into this SVG.
    #[arg(long)]
    plot: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RawModel {
    Detector,
    Landmarks,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(&args.log_level, args.log_json);
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(filter: &str, json: bool) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

type AnyError = Box<dyn std::error::Error>;

fn run(args: Args) -> Result<(), AnyError> {
    let options = ModelOptions {
        weights: args
            .weights_dir
            .clone()
            .map_or(WeightSource::Embedded, WeightSource::Directory),
        verify_checksum: !args.skip_weight_checksum,
        refine_landmarks: args.refine_landmarks,
    };
    if let Command::Bench(bench) = args.command {
        return run_bench(bench);
    }
    let device = ComputeDevice::select(args.device)?;
    let models = FaceModels::load(device, &options)?;
    match args.command {
        Command::Serve(config) => serve(config, models),
        Command::Models => list_models(&models, &options),
        Command::Bench(_) => unreachable!("handled before loading models"),
        Command::Infer { model, image } => infer(&models, model, &image),
        Command::Analyze {
            max_faces,
            r#static: _,
            video,
            overlay,
            images,
        } => {
            let mode = if video {
                TrackingMode::Video
            } else {
                TrackingMode::Static
            };
            analyze(&models, max_faces, mode, overlay.as_deref(), &images)
        }
    }
}

fn serve(config: ServeConfig, models: FaceModels) -> Result<(), AnyError> {
    // Frames are decoded on tokio's blocking pool. Decoding is CPU-bound, so more threads than
    // twice the cores only add memory under a flood of frames; tokio's default would allow 512.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(2 * cores)
        .build()?;
    runtime.block_on(async {
        let running = server::start(config, models).await?;
        shutdown_signal().await;
        tracing::info!("shutting down: closing sessions with 1001");
        running.shut_down().await?;
        Ok(())
    })
}

fn run_bench(args: BenchArgs) -> Result<(), AnyError> {
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
        None => default_bench_frames()?,
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
    };
    let runtime = tokio::runtime::Runtime::new()?;
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

/// The bundled carphone clip at a webcam's 640x480, as JPEG quality 80.
fn default_bench_frames() -> Result<Vec<Vec<u8>>, AnyError> {
    bench::carphone_clip(640, 480)?
        .iter()
        .map(|frame| {
            let mut jpeg = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 80)
                .encode_image(frame)?;
            Ok(jpeg)
        })
        .collect()
}

/// SIGTERM (systemd, Kubernetes) or Ctrl-C.
async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

fn list_models(models: &FaceModels, options: &ModelOptions) -> Result<(), AnyError> {
    println!("device: {}", models.device.backend);
    for kind in ModelKind::ALL {
        let description = kind.description();
        let file = WeightFile::load(kind, &options.weights, options.verify_checksum)?;
        let in_file = TfliteModel::parse(&file.bytes)?.float_constant_count();
        let loaded = match models.parameter_count(kind) {
            Some(count) => format!("{count} parameters loaded"),
            None => "not loaded (the other landmark model is; see --refine-landmarks)".to_owned(),
        };
        println!(
            "{:<26} {}x{} input, {} weights in {} ({}), {loaded}",
            description.name,
            description.input.width,
            description.input.height,
            in_file,
            file.path.display(),
            &description.sha256[..12],
        );
    }
    Ok(())
}

/// Prints one JSON line per image; an image that cannot be read gets a line with its error,
/// and the command fails at the end if any did.
fn analyze(
    models: &FaceModels,
    max_faces: usize,
    mode: TrackingMode,
    overlay: Option<&Path>,
    images: &[PathBuf],
) -> Result<(), AnyError> {
    let options = FaceMeshOptions {
        max_faces,
        ..FaceMeshOptions::default()
    };
    let mesh = FaceMesh::new(models, options);
    let mut tracker = FaceTracker::new(mode);
    let mut failures = 0;
    for (index, path) in images.iter().enumerate() {
        let frame = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                frame::decode(&bytes, frame::DEFAULT_MAX_SIDE).map_err(|e| e.to_string())
            });
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) => {
                failures += 1;
                println!("{}", json!({ "image": path, "error": error }));
                continue;
            }
        };
        let faces = tracker.process(&mesh, &frame)?;
        let described: Vec<_> = faces
            .iter()
            .map(|face| {
                json!({
                    "score": face.presence,
                    "bbox": face.bounding_box(),
                    "landmarks": face.points,
                })
            })
            .collect();
        println!(
            "{}",
            json!({ "image": path, "width": frame.width(), "height": frame.height(), "faces": described })
        );
        if let Some(overlay) = overlay {
            let target = numbered(overlay, index, images.len());
            draw_faces(&frame, &faces).save(&target)?;
        }
    }
    tracing::info!(
        detector_runs = tracker.detector_runs(),
        images = images.len(),
        "analyzed"
    );
    match failures {
        0 => Ok(()),
        n => Err(format!("{n} of {} images could not be read", images.len()).into()),
    }
}

/// `out.png` for a single image, `out-3.png` for the third of several.
fn numbered(path: &Path, index: usize, count: usize) -> PathBuf {
    if count == 1 {
        return path.to_owned();
    }
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let extension = path
        .extension()
        .map_or("png".into(), |e| e.to_string_lossy());
    path.with_file_name(format!("{stem}-{}.{extension}", index + 1))
}

fn infer(models: &FaceModels, model: RawModel, path: &PathBuf) -> Result<(), AnyError> {
    let kind = match model {
        RawModel::Detector => ModelKind::Detector,
        RawModel::Landmarks => models.landmarker.kind(),
    };
    let input = kind.description().input;
    let image = image::open(path)?.to_rgb8();
    // A plain resize (no letterbox, no face crop): this shows the raw model, not the pipeline.
    let resized = image::imageops::resize(
        &image,
        input.width as u32,
        input.height as u32,
        image::imageops::FilterType::Triangle,
    );
    let tensor = images_to_tensor(&[&resized], &input, &models.device.device)?;
    let started = Instant::now();
    let mut report = match model {
        RawModel::Landmarks => {
            let mut output = models.landmarker.forward(tensor);
            let logit = output.face_presence[0][0];
            let presence = sigmoid(logit);
            let points = output.landmarks.swap_remove(0);
            json!({
                "face_presence_logit": logit,
                "face_presence": presence,
                "landmarks": points.chunks(3).collect::<Vec<_>>(),
            })
        }
        RawModel::Detector => {
            let output = models.detector.forward(tensor);
            let scores = output.scores.into_data().try_to_vec::<f32>()?;
            let regressors = output.regressors.into_data().try_to_vec::<f32>()?;
            let mut order: Vec<usize> = (0..scores.len()).collect();
            order.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
            let best: Vec<_> = order
                .iter()
                .take(5)
                .map(|&anchor| {
                    json!({
                        "anchor": anchor,
                        "score_logit": scores[anchor],
                        "regressors": &regressors[anchor * 16..anchor * 16 + 16],
                    })
                })
                .collect();
            json!({ "best_anchors": best })
        }
    };
    report["model"] = json!(kind.description().name);
    report["image"] = json!(path);
    report["device"] = json!(models.device.backend.to_string());
    report["input_size"] = json!([input.width, input.height]);
    report["forward_ms"] = json!(started.elapsed().as_secs_f64() * 1e3);
    println!("{report}");
    Ok(())
}
