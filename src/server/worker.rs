//! The thread that owns the device: it takes frames from every session, forms batches by the
//! rules of `scheduler::queue`, runs them through the models, and answers each frame.
//!
//! On a GPU there is one. On the CPU backend the "device" is the cores, and one frame's layers
//! run on one core (`models::fused`; spreading a frame over cores gained little): there, one
//! worker runs per core, each with a one-thread pool of its own, and the sessions' frames go to
//! whichever has room.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use image::RgbImage;
use tokio::sync::oneshot;

use crate::models::FaceModels;
use crate::pipeline::face_mesh::{FaceLandmarks, FaceMesh, FaceMeshOptions};
use crate::pipeline::tracker::{FaceTracker, process_batch};
use crate::scheduler::queue::{
    BatchQueue, DropReason, Next, QueueFull, QueueLimits, SessionId, Waiting,
};
use crate::server::metrics::Metrics;
use crate::server::protocol::FrameRefusal;

/// A decoded frame on its way to the device, with its session's tracker.
pub struct FrameJob {
    pub frame: RgbImage,
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

pub struct FrameOutcome {
    pub faces: Vec<FaceLandmarks>,
    /// The frame, handed back for the session's quality checks.
    pub frame: RgbImage,
    pub tracker: FaceTracker,
    pub queue_wait: Duration,
    pub inference: Duration,
    pub batch_size: usize,
}

/// The sessions' side of the workers: submits frames, refusing at once when every queue is
/// full.
#[derive(Clone)]
pub struct WorkerHandle {
    workers: Arc<[SyncSender<FrameJob>]>,
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
            Next::Run(batch) => run_batch(&mesh, batch, metrics),
        }
    }
}

fn run_batch(mesh: &FaceMesh<'_>, batch: Vec<Waiting<FrameJob>>, metrics: &Metrics) {
    let started = Instant::now();
    let size = batch.len();
    let mut jobs: Vec<(FrameJob, Duration)> = batch
        .into_iter()
        .map(|waiting| {
            (
                waiting.item,
                started.saturating_duration_since(waiting.enqueued),
            )
        })
        .collect();
    let mut streams: Vec<(&mut FaceTracker, &RgbImage)> = jobs
        .iter_mut()
        .map(|(job, _)| (&mut job.tracker, &job.frame))
        .collect();
    // A panic inside the models must cost this batch, not the device thread every session
    // depends on: catch it, answer these frames, and carry on with the next batch.
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| process_batch(mesh, &mut streams)));
    drop(streams);
    let inference = started.elapsed();
    metrics.batch_seconds.observe(inference.as_secs_f64());
    metrics.batch_size.observe(size as f64);
    metrics
        .largest_batch
        .fetch_max(size as u64, Ordering::Relaxed);
    for (_, queue_wait) in &jobs {
        metrics.queue_wait_seconds.observe(queue_wait.as_secs_f64());
    }
    match result {
        Ok(Ok(faces)) => {
            for ((job, queue_wait), faces) in jobs.into_iter().zip(faces) {
                let _ = job.reply.send(Ok(FrameOutcome {
                    faces,
                    frame: job.frame,
                    tracker: job.tracker,
                    queue_wait,
                    inference,
                    batch_size: size,
                }));
            }
        }
        failed => {
            match failed {
                Ok(Err(error)) => tracing::error!(%error, size, "a batch failed"),
                _ => tracing::error!(size, "a batch panicked; its frames are answered 500"),
            }
            for (job, _) in jobs {
                let why = FrameRefusal::Internal;
                let _ = job.reply.send(Err(Refused {
                    tracker: job.tracker,
                    why,
                }));
            }
        }
    }
}
