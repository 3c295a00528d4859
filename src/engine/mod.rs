//! The engine owns the device: it takes sessions' encoded frames, decides where each is
//! decoded, gathers frames from many sessions into device batches (`queue`), runs them through
//! the model stages on its worker threads (`worker`, `stages`), and answers each frame with a
//! domain [`Outcome`]. It knows nothing of HTTP, WebSockets or wire codes: the server maps
//! outcomes to those, once.
//!
//! On a GPU one worker feeds the device, and frames are decoded on the blocking pool before
//! they queue, so that its one thread never spends itself decoding. On the CPU backend the
//! "device" is the cores: one worker per core, each taking frames still encoded and decoding,
//! tracking and measuring each in one go, while its pixels are in that core's cache.

pub mod decode_budget;
pub mod metrics;
pub mod queue;
pub mod stages;
mod worker;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, Instant};

use image::RgbImage;
use tokio::sync::oneshot;

use crate::engine::decode_budget::DecodeBudget;
use crate::frame::{self, FrameError, Header};
use crate::matching::Template;
use crate::models::FaceModels;
use crate::pipeline::face_mesh::{FaceLandmarks, FaceMeshOptions};
use crate::pipeline::recognition::FaceProblem;
use crate::pipeline::tracker::{FaceTracker, TrackingMode};

pub use metrics::EngineMetrics;
pub use queue::SessionId;
pub use stages::FaceMeasures;

/// How the engine batches and runs frames. Every field is a flag of `serve` and an environment
/// variable; the doc comments are the `--help` text.
#[derive(Debug, Clone, PartialEq, clap::Args)]
#[command(next_help_heading = "Batching and the device")]
pub struct EngineConfig {
    /// Most frames in one device batch.
    #[arg(long, env = "FACE_SERVICE_MAX_BATCH", default_value_t = 32)]
    pub max_batch: usize,
    /// Longest a frame waits for others to fill its batch, in milliseconds.
    #[arg(long, env = "FACE_SERVICE_MAX_QUEUE_DELAY_MS", default_value_t = 5)]
    pub max_queue_delay_ms: u64,
    /// Frames waiting for the device across all sessions before new ones are refused (503).
    #[arg(long, env = "FACE_SERVICE_QUEUE_CAPACITY", default_value_t = 256)]
    pub queue_capacity: usize,
    /// A frame not on the device this long after it arrived is answered 504, not run.
    #[arg(long, env = "FACE_SERVICE_FRAME_DEADLINE_MS", default_value_t = 2000)]
    pub frame_deadline_ms: u64,
    /// On the CPU backend, device workers running frames side by side, each on one core
    /// (0: one per core). A GPU always has one.
    #[arg(long, env = "FACE_SERVICE_CPU_WORKERS", default_value_t = 0)]
    pub cpu_workers: usize,
    /// On a GPU, cut the model inputs out of the frames with the crop shader (the frames'
    /// bytes are uploaded) instead of on the CPU (the crops are uploaded). Off until measured
    /// faster on a GPU: `benches/gpu.sh` times both.
    #[arg(long, env = "FACE_SERVICE_GPU_CROP")]
    pub gpu_crop: bool,
    /// Largest frame side in pixels, checked from the image header before decoding (413).
    #[arg(long, env = "FACE_SERVICE_MAX_FRAME_SIDE", default_value_t = frame::DEFAULT_MAX_SIDE)]
    pub max_frame_side: u32,
    /// On a GPU, memory the frames decoding at once may take, in MiB, reckoned from their
    /// headers; a frame waits for its share up to its deadline, then is refused (503). (On
    /// the CPU each worker decodes one frame at a time.)
    #[arg(
        long,
        env = "FACE_SERVICE_MAX_DECODE_MEMORY_MIB",
        default_value_t = 1024
    )]
    pub max_decode_memory_mib: u32,
    /// Faces to track per session (the seed runs one).
    #[arg(long, env = "FACE_SERVICE_MAX_NUM_FACES", default_value_t = 1)]
    pub max_num_faces: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_batch: 32,
            max_queue_delay_ms: 5,
            queue_capacity: 256,
            frame_deadline_ms: 2000,
            cpu_workers: 0,
            gpu_crop: false,
            max_frame_side: frame::DEFAULT_MAX_SIDE,
            max_decode_memory_mib: 1024,
            max_num_faces: 1,
        }
    }
}

/// One stream's state between its frames: where its faces were, so that the next frame is
/// tracked from them. A session holds it while no frame of its is in the engine.
#[derive(Debug)]
pub struct Tracking(FaceTracker);

impl Default for Tracking {
    fn default() -> Self {
        Self(FaceTracker::new(TrackingMode::Video))
    }
}

/// A frame ready to queue: still encoded where the worker decodes it, decoded otherwise.
pub enum Frame {
    Encoded(Vec<u8>),
    Decoded(RgbImage),
}

/// Why a frame could not be readied to queue.
#[derive(Debug, Clone, PartialEq)]
pub enum NotPrepared {
    Undecodable(FrameError),
    /// Other frames' decodes held the memory for decoding until this frame's deadline.
    DecodeMemoryBusy,
}

/// One frame of one session, for the engine to run.
pub struct FrameJob {
    pub frame: Frame,
    pub tracking: Tracking,
    pub session: SessionId,
    /// When the frame arrived: its deadline counts from here.
    pub received: Instant,
    /// Whether the frame's first face needs a template (enrollment, authentication). The
    /// engine must have been started with the recognition model; without it the frame gets
    /// none.
    pub wants_template: bool,
    /// Whether the frame's first face needs an anti-spoofing score; likewise only with the
    /// anti-spoofing model.
    pub wants_spoof_score: bool,
}

/// The engine's answer to a frame: the stream's state back, and what became of the frame.
pub struct Reply {
    pub tracking: Tracking,
    pub outcome: Outcome,
}

/// What became of a frame.
#[derive(Debug)]
pub enum Outcome {
    /// Every queue was full: try again.
    Overloaded,
    /// It waited past its deadline and was not run.
    DeadlineMissed,
    Undecodable(FrameError),
    /// The models failed on its batch.
    Internal,
    Done(Analysis),
}

/// A frame run through the models.
#[derive(Debug)]
pub struct Analysis {
    pub faces: Vec<FaceLandmarks>,
    /// The first face's measures, taken while the frame was at hand.
    pub first_face: Option<FaceMeasures>,
    /// The first face's template, where the job wanted one and there is a face.
    pub template: Option<Result<Template, FaceProblem>>,
    /// The first face's anti-spoofing score (0 spoof .. 1 real), where the job wanted one.
    pub spoof_score: Option<f32>,
    /// From entering the queue to the start of the run that computed it.
    pub queue_wait: Duration,
    /// That run: the whole batch on a GPU, this frame on the CPU.
    pub inference: Duration,
    pub batch_size: usize,
}

/// What a session needs of the engine; the server's session loop is generic over it, so that
/// its rules are tested without models.
pub trait Analyze: Send + Sync + 'static {
    /// Readies an encoded frame to queue, decoding it now if the engine wants it decoded.
    /// `header` is the frame's, read by the caller already.
    fn prepare(
        &self,
        bytes: Vec<u8>,
        header: Option<Header>,
    ) -> impl Future<Output = Result<Frame, NotPrepared>> + Send;
    /// Queues a frame; the reply comes when it has run or been refused. A reply that never
    /// comes (the sender dropped) means the engine has stopped.
    fn analyze(&self, job: FrameJob) -> oneshot::Receiver<Reply>;
    /// The largest width or height of a frame the engine decodes; larger frames are refused
    /// from their header.
    fn max_frame_side(&self) -> u32;
}

/// The running engine: cheap to clone, shared by every session.
#[derive(Clone)]
pub struct Engine {
    workers: Arc<[SyncSender<worker::Queued>]>,
    /// Whether the workers take frames encoded.
    decodes_on_worker: bool,
    max_frame_side: u32,
    /// Memory for the decodes on the blocking pool.
    decode_budget: DecodeBudget,
    deadline: Duration,
    /// Where the next frame tries first, so that the workers share the load in turn.
    next: Arc<AtomicUsize>,
    pub metrics: Arc<EngineMetrics>,
}

impl Engine {
    /// Starts the device workers: one on a GPU, `config.cpu_workers` (or one per core) on the
    /// CPU, sharing `config.queue_capacity` between them. They stop when every `Engine`
    /// clone is gone and their queues are empty.
    pub fn start(models: FaceModels, config: &EngineConfig) -> Self {
        let on_gpu = models.device.is_gpu();
        let workers = match (on_gpu, config.cpu_workers) {
            (true, _) => 1,
            (false, 0) => std::thread::available_parallelism().map_or(1, |n| n.get()),
            (false, n) => n,
        };
        tracing::info!(workers, "device workers");
        let metrics = Arc::new(EngineMetrics::default());
        let options = FaceMeshOptions {
            max_faces: config.max_num_faces,
            // A GPU compiles kernels per batch shape: keep the shapes few and warm them up.
            padded_batches_up_to: on_gpu.then_some(config.max_batch),
            crop_on_device: config.gpu_crop,
            ..FaceMeshOptions::default()
        };
        let senders = worker::spawn(models, workers, config, options, &metrics);
        Self {
            workers: senders.into(),
            decodes_on_worker: !on_gpu,
            max_frame_side: config.max_frame_side,
            decode_budget: DecodeBudget::new(
                config.max_decode_memory_mib,
                Duration::from_millis(config.frame_deadline_ms),
            ),
            deadline: Duration::from_millis(config.frame_deadline_ms),
            next: Arc::default(),
            metrics,
        }
    }
}

impl Analyze for Engine {
    async fn prepare(&self, bytes: Vec<u8>, header: Option<Header>) -> Result<Frame, NotPrepared> {
        if self.decodes_on_worker {
            return Ok(Frame::Encoded(bytes));
        }
        let max_side = self.max_frame_side;
        // A frame without a header, or over the side limit, fails before it allocates.
        let cost = header
            .filter(|header| header.fits(max_side))
            .map_or(0, |header| header.decode_cost());
        let reservation = self
            .decode_budget
            .reserve(cost)
            .await
            .map_err(|_| NotPrepared::DecodeMemoryBusy)?;
        tokio::task::spawn_blocking(move || {
            let decoded = frame::decode_untrusted(&bytes, max_side);
            drop(reservation);
            decoded
        })
        .await
        .unwrap_or_else(|_| {
            Err(FrameError::Damaged(
                "the server stopped while decoding this frame".into(),
            ))
        })
        .map(Frame::Decoded)
        .map_err(NotPrepared::Undecodable)
    }

    fn max_frame_side(&self) -> u32 {
        self.max_frame_side
    }

    fn analyze(&self, job: FrameJob) -> oneshot::Receiver<Reply> {
        let (reply, receiver) = oneshot::channel();
        let mut queued = worker::Queued {
            deadline: job.received + self.deadline,
            max_side: self.max_frame_side,
            job,
            reply,
        };
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        for offset in 0..self.workers.len() {
            let worker = &self.workers[(first + offset) % self.workers.len()];
            match worker.try_send(queued) {
                Ok(()) => return receiver,
                Err(TrySendError::Full(back) | TrySendError::Disconnected(back)) => queued = back,
            }
        }
        queued.answer(Outcome::Overloaded);
        receiver
    }
}
