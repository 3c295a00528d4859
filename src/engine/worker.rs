//! The threads that own the device: each takes frames from its channel, forms batches by the
//! rules of `queue`, runs them through the stages, and answers each frame.
//!
//! On a GPU there is one. On the CPU backend one frame's layers run on one core
//! (`models::fused`; spreading a frame over cores gained little), so one worker runs per core,
//! each with a one-thread pool of its own, and the sessions' frames go to whichever has room.
//! A CPU worker takes each frame still encoded and runs its batch a frame at a time, decoding,
//! tracking and measuring it in one go: the decoded pixels are still in the core's cache for
//! the crop and the quality measure, where a frame decoded on arrival had left it by its turn.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use image::RgbImage;
use tokio::sync::oneshot;

use crate::engine::queue::{BatchQueue, DropReason, Next, QueueFull, QueueLimits, Waiting};
use crate::engine::stages::{StageInput, Stages};
use crate::engine::{
    Analysis, EngineConfig, EngineMetrics, Frame, FrameJob, Outcome, Reply, Tracking,
};
use crate::frame;
use crate::models::FaceModels;
use crate::pipeline::face_mesh::FaceMeshOptions;
use crate::pipeline::tracker::FaceTracker;

/// A job on its way to a worker, with where its answer goes.
pub(super) struct Queued {
    pub job: FrameJob,
    pub deadline: Instant,
    pub max_side: u32,
    pub reply: oneshot::Sender<Reply>,
}

impl Queued {
    /// Answers the job, handing its stream's state back.
    pub fn answer(self, outcome: Outcome) {
        answer(self.reply, self.job.tracking.0, outcome);
    }
}

/// Sends a frame's reply, with its stream's tracker; a session that has left is not told.
fn answer(reply: oneshot::Sender<Reply>, tracker: FaceTracker, outcome: Outcome) {
    let tracking = Tracking(tracker);
    let _ = reply.send(Reply { tracking, outcome });
}

/// Starts `workers` device threads, sharing `config.queue_capacity` between them, and returns
/// the channel into each.
pub(super) fn spawn(
    models: FaceModels,
    workers: usize,
    config: &EngineConfig,
    options: FaceMeshOptions,
    metrics: &Arc<EngineMetrics>,
) -> Vec<SyncSender<Queued>> {
    let workers = workers.max(1);
    metrics
        .workers_warming
        .store(workers as u64, Ordering::Relaxed);
    let limits = QueueLimits {
        max_batch: config.max_batch,
        max_delay: Duration::from_millis(config.max_queue_delay_ms),
        capacity: config.queue_capacity.div_ceil(workers),
    };
    (0..workers)
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
        .collect()
}

fn run(
    models: FaceModels,
    limits: QueueLimits,
    options: FaceMeshOptions,
    incoming: Receiver<Queued>,
    metrics: &EngineMetrics,
) {
    let stages = Stages::new(&models, options);
    if let Err(error) = stages.warm_up() {
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
    let accept = |queue: &mut BatchQueue<Queued>, queued: Queued| {
        let (session, deadline) = (queued.job.session, queued.deadline);
        if let Err(QueueFull(queued)) = queue.push(queued, session, Instant::now(), deadline) {
            queued.answer(Outcome::Overloaded);
        }
    };
    loop {
        while let Ok(queued) = incoming.try_recv() {
            accept(&mut queue, queued);
        }
        let now = Instant::now();
        let next = queue.next_batch(now, |waiting| !waiting.item.reply.is_closed(), &mut dropped);
        for (waiting, reason) in dropped.drain(..) {
            match reason {
                DropReason::DeadlinePassed => waiting.item.answer(Outcome::DeadlineMissed),
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
                Ok(queued) => accept(&mut queue, queued),
                Err(_) => return,
            },
            Next::WaitUntil(when) => {
                match incoming.recv_timeout(when.saturating_duration_since(now)) {
                    Ok(queued) => accept(&mut queue, queued),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {}
                }
            }
            Next::Run(batch) => run_batch(&stages, batch, metrics, &mut spare_pixels),
        }
    }
}

/// Runs a batch: in one go on a GPU, a frame at a time on the CPU (where a batch saves
/// nothing and each frame is best decoded, tracked and measured while it is in cache).
fn run_batch(
    stages: &Stages<'_>,
    batch: Vec<Waiting<Queued>>,
    metrics: &EngineMetrics,
    spare_pixels: &mut Vec<u8>,
) {
    let started = Instant::now();
    let size = batch.len();
    if stages.runs_items_together() {
        let jobs = batch
            .into_iter()
            .map(|w| (w.item, started.saturating_duration_since(w.enqueued)));
        run_frames(stages, jobs.collect(), size, metrics, spare_pixels);
    } else {
        for waiting in batch {
            let queue_wait = Instant::now().saturating_duration_since(waiting.enqueued);
            let job = vec![(waiting.item, queue_wait)];
            run_frames(stages, job, size, metrics, spare_pixels);
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

/// A frame decoded and about to run.
struct Ready {
    frame: RgbImage,
    tracker: FaceTracker,
    wants_template: bool,
    wants_spoof_score: bool,
    reply: oneshot::Sender<Reply>,
    queue_wait: Duration,
}

/// Decodes `jobs`' frames, runs them through the stages together, and answers each; the
/// last frame's buffer is left in `spare_pixels`.
fn run_frames(
    stages: &Stages<'_>,
    jobs: Vec<(Queued, Duration)>,
    batch_size: usize,
    metrics: &EngineMetrics,
    spare_pixels: &mut Vec<u8>,
) {
    let started = Instant::now();
    let mut ready = Vec::with_capacity(jobs.len());
    for (queued, queue_wait) in jobs {
        metrics.queue_wait_seconds.observe(queue_wait.as_secs_f64());
        // Its session may have gone while the frames before it ran.
        if queued.reply.is_closed() {
            metrics.frames_abandoned.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let Queued {
            job,
            max_side,
            reply,
            ..
        } = queued;
        let decoded = match job.frame {
            Frame::Decoded(frame) => Ok(frame),
            Frame::Encoded(bytes) => {
                frame::decode_reusing(&bytes, max_side, std::mem::take(spare_pixels))
            }
        };
        let tracker = job.tracking.0;
        match decoded {
            Ok(frame) => ready.push(Ready {
                frame,
                tracker,
                wants_template: job.wants_template,
                wants_spoof_score: job.wants_spoof_score,
                reply,
                queue_wait,
            }),
            Err(error) => answer(reply, tracker, Outcome::Undecodable(error)),
        }
    }
    let mut inputs: Vec<StageInput<'_>> = ready
        .iter_mut()
        .map(|ready| StageInput {
            tracker: &mut ready.tracker,
            frame: &ready.frame,
            wants_template: ready.wants_template,
            wants_spoof_score: ready.wants_spoof_score,
        })
        .collect();
    // A panic inside the models or the measures must cost these frames, not the device
    // thread every session depends on: catch it, answer them, and carry on with the next.
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| stages.run(&mut inputs)));
    drop(inputs);
    let inference = started.elapsed();
    match result {
        Ok(Ok(found)) => {
            for (ready, found) in ready.into_iter().zip(found) {
                let Ready {
                    frame,
                    tracker,
                    reply,
                    queue_wait,
                    ..
                } = ready;
                *spare_pixels = frame.into_raw();
                let analysis = Analysis {
                    faces: found.faces,
                    first_face: found.first_face,
                    template: found.template,
                    spoof_score: found.spoof_score,
                    queue_wait,
                    inference,
                    batch_size,
                };
                answer(reply, tracker, Outcome::Done(analysis));
            }
        }
        failed => {
            let size = ready.len();
            match failed {
                Ok(Err(error)) => tracing::error!(%error, size, "a batch failed"),
                _ => tracing::error!(size, "a batch panicked; its frames are answered 500"),
            }
            for ready in ready {
                answer(ready.reply, ready.tracker, Outcome::Internal);
            }
        }
    }
}
