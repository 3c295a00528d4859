//! The thread that owns the device: it takes frames from every session, forms batches by the
//! rules of `scheduler::queue`, runs them through the models, and answers each frame.
//!
//! On a GPU there is one. On the CPU backend the "device" is the cores, and one frame's layers
//! run on one core (`models::fused`; spreading a frame over cores gained little): there, one
//! worker runs per core, each with a one-thread pool of its own, and the sessions' frames go to
//! whichever has room. A CPU worker takes each frame still encoded and runs its batch a frame
//! at a time, decoding, tracking and measuring it in one go: the decoded pixels are still in
//! the core's cache for the crop and the quality measure, where a frame decoded on arrival had
//! left it by its turn (BENCHMARKS.md: 3.7 to 3.2 ms of the server's CPU per frame).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use image::RgbImage;
use tokio::sync::oneshot;

use crate::frame::{self, FrameError};
use crate::liveness::pose::{HeadPose, head_pose};
use crate::liveness::quality::{self, Quality, QualityRules};
use crate::models::FaceModels;
use crate::models::input::InputError;
use crate::pipeline::face_mesh::{FaceLandmarks, FaceMesh, FaceMeshOptions};
use crate::pipeline::tracker::{FaceTracker, process_batch};
use crate::scheduler::queue::{
    BatchQueue, DropReason, Next, QueueFull, QueueLimits, SessionId, Waiting,
};
use crate::server::metrics::Metrics;
use crate::server::protocol::FrameRefusal;

/// A frame on its way to the device, with its session's tracker.
pub struct FrameJob {
    pub frame: Frame,
    pub tracker: FaceTracker,
    pub session: SessionId,
    pub deadline: Instant,
    pub reply: oneshot::Sender<Result<FrameOutcome, Refused>>,
}

/// A frame the worker did not run, handing the tracker back to its session.
pub struct Refused {
    pub tracker: FaceTracker,
    pub why: FrameRefusal,
}

/// A frame as the session hands it over: decoded by the session where the worker feeds a GPU
/// (its one thread must not spend itself decoding), encoded for a CPU worker.
pub enum Frame {
    Encoded { bytes: Vec<u8>, max_side: u32 },
    Decoded(RgbImage),
}

impl Frame {
    /// The pixels, decoded into `spare`'s allocation where there is decoding to do.
    fn decode(self, spare: &mut Vec<u8>) -> Result<RgbImage, FrameError> {
        match self {
            Frame::Decoded(frame) => Ok(frame),
            Frame::Encoded { bytes, max_side } => {
                frame::decode_reusing(&bytes, max_side, std::mem::take(spare))
            }
        }
    }
}

pub struct FrameOutcome {
    pub faces: Vec<FaceLandmarks>,
    /// The first face's measures, taken while the frame is at hand.
    pub first_face: Option<FaceMeasures>,
    pub tracker: FaceTracker,
    /// From entering the queue to the start of the run that computed it.
    pub queue_wait: Duration,
    /// That run: the whole batch on a GPU, this frame on the CPU.
    pub inference: Duration,
    pub batch_size: usize,
}

/// The first face's box, head pose, and the frame's quality around it.
pub struct FaceMeasures {
    pub face_box: [f32; 4],
    pub pose: HeadPose,
    pub quality: Quality,
}

/// The sessions' side of the workers: submits frames, refusing at once when every queue is
/// full.
#[derive(Clone)]
pub struct WorkerHandle {
    workers: Arc<[SyncSender<FrameJob>]>,
    /// Whether the workers take frames encoded (`Frame`).
    pub takes_encoded_frames: bool,
    /// Where the next frame tries first, so that the workers share the load in turn.
    next: Arc<AtomicUsize>,
}

impl WorkerHandle {
    /// Queues `job` on a worker with room; when none has, the job comes straight back, to be
    /// answered 503.
    pub fn submit(&self, mut job: FrameJob) -> Result<(), Box<FrameJob>> {
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        for offset in 0..self.workers.len() {
            let worker = &self.workers[(first + offset) % self.workers.len()];
            match worker.try_send(job) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(back) | TrySendError::Disconnected(back)) => job = back,
            }
        }
        Err(Box::new(job))
    }
}

/// Starts `workers` device threads (one on a GPU), sharing `limits.capacity` between them.
/// They stop when every `WorkerHandle` is gone and their queues are empty.
pub fn spawn(
    models: FaceModels,
    workers: usize,
    limits: QueueLimits,
    options: FaceMeshOptions,
    metrics: Arc<Metrics>,
) -> WorkerHandle {
    let workers = workers.max(1);
    let on_cpu = !models.device.is_gpu();
    metrics
        .workers_warming
        .store(workers as u64, Ordering::Relaxed);
    let limits = QueueLimits {
        capacity: limits.capacity.div_ceil(workers),
        ..limits
    };
    let senders: Vec<SyncSender<FrameJob>> = (0..workers)
        .map(|index| {
            let (jobs, incoming) = std::sync::mpsc::sync_channel(limits.capacity);
            let (models, metrics) = (models.clone(), metrics.clone());
            // With several workers each gets a one-thread pool, so that burn's CPU kernels
            // run on their worker's core instead of all contending for every core.
            let pool = (workers > 1).then(|| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .thread_name(move |_| format!("device-worker-{index}-pool"))
                    .build()
                    .expect("a one-thread pool")
            });
            std::thread::Builder::new()
                .name(format!("device-worker-{index}"))
                .spawn(move || match pool {
                    Some(pool) => pool.install(|| run(models, limits, options, incoming, &metrics)),
                    None => run(models, limits, options, incoming, &metrics),
                })
                .expect("spawning a device worker");
            jobs
        })
        .collect();
    WorkerHandle {
        workers: senders.into(),
        takes_encoded_frames: on_cpu,
        next: Arc::default(),
    }
}

fn run(
    models: FaceModels,
    limits: QueueLimits,
    options: FaceMeshOptions,
    incoming: Receiver<FrameJob>,
    metrics: &Metrics,
) {
    let mesh = FaceMesh::new(&models, options);
    if let Err(error) = mesh.warm_up() {
        tracing::error!(%error, "warming the models up failed");
    }
    metrics.workers_warming.fetch_sub(1, Ordering::Relaxed);
    tracing::info!("device worker ready");
    let mut queue = BatchQueue::new(limits);
    // This worker's share of the queue-depth gauge, which every worker adds to.
    let mut depth_reported = 0u64;
    let mut dropped = Vec::new();
    // The last decoded frame's buffer, which the next decode reuses.
    let mut spare_pixels = Vec::new();
    let accept = |queue: &mut BatchQueue<FrameJob>, job: FrameJob| {
        let (session, deadline) = (job.session, job.deadline);
        if let Err(QueueFull(job)) = queue.push(job, session, Instant::now(), deadline) {
            let why = FrameRefusal::Overloaded;
            let _ = job.reply.send(Err(Refused {
                tracker: job.tracker,
                why,
            }));
        }
    };
    loop {
        while let Ok(job) = incoming.try_recv() {
            accept(&mut queue, job);
        }
        let now = Instant::now();
        let next = queue.next_batch(now, |waiting| !waiting.item.reply.is_closed(), &mut dropped);
        for (waiting, reason) in dropped.drain(..) {
            let job = waiting.item;
            match reason {
                DropReason::DeadlinePassed => {
                    let _ = job.reply.send(Err(Refused {
                        tracker: job.tracker,
                        why: FrameRefusal::DeadlineMissed,
                    }));
                }
                DropReason::SessionClosed => {
                    metrics.frames_abandoned.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let depth = queue.len() as u64;
        metrics.queue_depth.fetch_add(depth, Ordering::Relaxed);
        metrics
            .queue_depth
            .fetch_sub(depth_reported, Ordering::Relaxed);
        depth_reported = depth;
        match next {
            Next::Idle => match incoming.recv() {
                Ok(job) => accept(&mut queue, job),
                Err(_) => return,
            },
            Next::WaitUntil(when) => {
                match incoming.recv_timeout(when.saturating_duration_since(now)) {
                    Ok(job) => accept(&mut queue, job),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {}
                }
            }
            Next::Run(batch) => run_batch(&mesh, batch, metrics, &mut spare_pixels),
        }
    }
}

/// Runs a batch: in one go on a GPU, a frame at a time on the CPU (where a batch saves
/// nothing and each frame is best decoded, tracked and measured while it is in cache).
fn run_batch(
    mesh: &FaceMesh<'_>,
    batch: Vec<Waiting<FrameJob>>,
    metrics: &Metrics,
    spare_pixels: &mut Vec<u8>,
) {
    let started = Instant::now();
    let size = batch.len();
    if mesh.runs_items_together() {
        let jobs = batch
            .into_iter()
            .map(|w| (w.item, started.saturating_duration_since(w.enqueued)));
        run_frames(mesh, jobs.collect(), size, metrics, spare_pixels);
    } else {
        for waiting in batch {
            let queue_wait = Instant::now().saturating_duration_since(waiting.enqueued);
            let job = vec![(waiting.item, queue_wait)];
            run_frames(mesh, job, size, metrics, spare_pixels);
        }
    }
    metrics
        .batch_seconds
        .observe(started.elapsed().as_secs_f64());
    metrics.batch_size.observe(size as f64);
    metrics
        .largest_batch
        .fetch_max(size as u64, Ordering::Relaxed);
}

/// Decodes `jobs`' frames, tracks them through the models together, and answers each; the
/// last frame's buffer is left in `spare_pixels`.
fn run_frames(
    mesh: &FaceMesh<'_>,
    jobs: Vec<(FrameJob, Duration)>,
    batch_size: usize,
    metrics: &Metrics,
    spare_pixels: &mut Vec<u8>,
) {
    let started = Instant::now();
    let mut decoded = Vec::with_capacity(jobs.len());
    for (job, queue_wait) in jobs {
        metrics.queue_wait_seconds.observe(queue_wait.as_secs_f64());
        let FrameJob {
            frame,
            tracker,
            reply,
            ..
        } = job;
        // Its session may have gone while the frames before it ran.
        if reply.is_closed() {
            metrics.frames_abandoned.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        match frame.decode(spare_pixels) {
            Ok(frame) => decoded.push((frame, tracker, reply, queue_wait)),
            Err(error) => {
                let why = FrameRefusal::Undecodable(error);
                let _ = reply.send(Err(Refused { tracker, why }));
            }
        }
    }
    let mut streams: Vec<(&mut FaceTracker, &RgbImage)> = decoded
        .iter_mut()
        .map(|(frame, tracker, _, _)| (tracker, &*frame))
        .collect();
    // A panic inside the models or the measures must cost these frames, not the device
    // thread every session depends on: catch it, answer them, and carry on with the next.
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let faces = process_batch(mesh, &mut streams)?;
        let first_faces: Vec<Option<FaceMeasures>> = faces
            .iter()
            .zip(&streams)
            .map(|(faces, (_, frame))| faces.first().map(|face| measure(frame, face, faces.len())))
            .collect();
        Ok::<_, InputError>(faces.into_iter().zip(first_faces))
    }));
    drop(streams);
    let inference = started.elapsed();
    match result {
        Ok(Ok(faces)) => {
            let frames = decoded.into_iter().zip(faces);
            for ((frame, tracker, reply, queue_wait), (faces, first_face)) in frames {
                *spare_pixels = frame.into_raw();
                let _ = reply.send(Ok(FrameOutcome {
                    faces,
                    first_face,
                    tracker,
                    queue_wait,
                    inference,
                    batch_size,
                }));
            }
        }
        failed => {
            let size = decoded.len();
            match failed {
                Ok(Err(error)) => tracing::error!(%error, size, "a batch failed"),
                _ => tracing::error!(size, "a batch panicked; its frames are answered 500"),
            }
            for (_, tracker, reply, _) in decoded {
                let why = FrameRefusal::Internal;
                let _ = reply.send(Err(Refused { tracker, why }));
            }
        }
    }
}

fn measure(frame: &RgbImage, face: &FaceLandmarks, faces: usize) -> FaceMeasures {
    let face_box = face.bounding_box();
    let pose = head_pose(&face.points).unwrap_or_default();
    let quality = quality::assess(frame, face_box, faces, pose, &QualityRules::default());
    FaceMeasures {
        face_box,
        pose,
        quality,
    }
}
