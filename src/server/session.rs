//! One WebSocket connection: one camera stream, one liveness session.
//!
//! Frames go to the device worker one at a time per session, because each frame's tracking
//! regions come from the previous frame's landmarks; for a GPU they are decoded here first,
//! off the async runtime, while a CPU worker decodes them itself (`worker::Frame`).
//! While one is on the device the next few wait here; every message gets its answer in the
//! order it arrived, errors included.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::frame;
use crate::liveness::check::{LivenessCheck, SessionKind, Verdict};
use crate::pipeline::tracker::{FaceTracker, TrackingMode};
use crate::server::AppState;
use crate::server::answers::{self, Answer, FaceReport, FrameContext, Timings};
use crate::server::metrics::Metrics;
use crate::server::protocol::{ClientMessage, FrameRefusal, close, parse_binary, parse_text};
use crate::server::worker::{FaceMeasures, Frame, FrameJob, FrameOutcome, Refused};

/// Answers owed to the client, oldest first: a frame still to run, or an answer ready to go.
enum Slot {
    Frame {
        frame: Frame,
        id: Option<Value>,
        received: Instant,
    },
    Ready(Answer),
}

struct Session {
    token: String,
    id: u64,
    tracker: Option<FaceTracker>,
    owed: VecDeque<Slot>,
    in_flight: Option<(
        oneshot::Receiver<Result<FrameOutcome, Refused>>,
        Option<Value>,
        Instant,
    )>,
    frames_accepted: u64,
    frames_processed: u64,
    recent_frames: VecDeque<Instant>,
    liveness: LivenessCheck,
    started: Instant,
    /// Set once the liveness verdict is in: the close code and reason to end with, once the
    /// answers owed before it are sent.
    ending: Option<(u16, &'static str)>,
}

/// Frames a session may have waiting behind the one on the device.
const MAX_WAITING_FRAMES: usize = 4;
/// On shutdown, how long a session may take to answer the frames it already took.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub async fn run(mut socket: WebSocket, token: String, kind: SessionKind, state: AppState) {
    let config = state.config.clone();
    let mut session = Session {
        id: state.next_session_id.fetch_add(1, Ordering::Relaxed),
        token,
        tracker: Some(FaceTracker::new(TrackingMode::Video)),
        owed: VecDeque::new(),
        in_flight: None,
        frames_accepted: 0,
        frames_processed: 0,
        recent_frames: VecDeque::new(),
        liveness: LivenessCheck::new(kind, config.liveness_rules()),
        started: Instant::now(),
        ending: None,
    };
    state.metrics.open_sessions.fetch_add(1, Ordering::Relaxed);
    let (claim, mut replaced) = state.active_tokens.claim(&session.token);
    let liveness_deadline = session.liveness.timeout().map(|timeout| {
        // Just past the timeout, so that the check finds it run out.
        tokio::time::Instant::from_std(session.started + timeout) + Duration::from_millis(1)
    });
    let hello = answers::connection_established(
        &session.token,
        &session.liveness,
        session
            .liveness
            .timeout()
            .map_or(config.session_timeout_secs, |t| t.as_secs()),
    );
    let mut shutdown = state.shutdown.clone();
    let idle_limit = Duration::from_secs(config.session_timeout_secs);
    let mut close_with = None;
    // Set on shutdown: read no more messages, answer the frames already taken, then close.
    let mut draining_until: Option<tokio::time::Instant> = None;
    if send(&mut socket, Answer::message(hello), &state.metrics)
        .await
        .is_ok()
    {
        loop {
            let reply = async {
                match session.in_flight.as_mut() {
                    Some((receiver, _, _)) => receiver.await.ok(),
                    None => std::future::pending().await,
                }
            };
            let drain_deadline = draining_until.unwrap_or_else(tokio::time::Instant::now);
            let reading = draining_until.is_none() && session.ending.is_none();
            tokio::select! {
                message = tokio::time::timeout(idle_limit, socket.recv()), if reading => {
                    let Ok(Some(Ok(message))) = message else { break };
                    match on_message(&mut session, &state, message).await {
                        Ok(()) => {}
                        Err(closing) => { close_with = Some(closing); }
                    }
                }
                outcome = reply => {
                    let (_, id, received) = session.in_flight.take().expect("a frame was in flight");
                    let answer = on_outcome(&mut session, outcome, id, received);
                    session.owed.push_front(Slot::Ready(answer));
                    conclude(&mut session, &state);
                }
                _ = sleep_until_some(liveness_deadline), if session.ending.is_none() => {
                    session.liveness.tick(session.started.elapsed());
                    conclude(&mut session, &state);
                }
                _ = shutdown.changed(), if draining_until.is_none() => {
                    draining_until = Some(tokio::time::Instant::now() + SHUTDOWN_GRACE);
                }
                _ = tokio::time::sleep_until(drain_deadline), if draining_until.is_some() => {
                    close_with = Some((close::GOING_AWAY, "server shutting down"));
                }
                Ok(()) = &mut replaced => {
                    close_with = Some((close::REPLACED, "replaced by a newer connection with this session token"));
                }
            }
            if pump(&mut session, &mut socket, &state).await.is_err() {
                break;
            }
            let frames_owed = session.in_flight.is_some() || !session.owed.is_empty();
            if draining_until.is_some() && !frames_owed && close_with.is_none() {
                close_with = Some((close::GOING_AWAY, "server shutting down"));
            }
            if session.ending.is_some() && !frames_owed && close_with.is_none() {
                close_with = session.ending;
            }
            if let Some((code, reason)) = close_with {
                let frame = CloseFrame {
                    code,
                    reason: Utf8Bytes::from(reason),
                };
                let _ = socket.send(Message::Close(Some(frame))).await;
                break;
            }
        }
    }
    state.active_tokens.release(&session.token, claim);
    state.metrics.open_sessions.fetch_sub(1, Ordering::Relaxed);
    tracing::info!(frames = session.frames_processed, "session ended");
}

/// Handles one client message; an `Err` is the close code and reason that end the session.
async fn on_message(
    session: &mut Session,
    state: &AppState,
    message: Message,
) -> Result<(), (u16, &'static str)> {
    let config = &state.config;
    let parsed = match message {
        Message::Text(text) => parse_text(&text, config.max_frame_bytes),
        Message::Binary(bytes) => parse_binary(bytes.to_vec(), config.max_frame_bytes),
        Message::Ping(_) | Message::Pong(_) => return Ok(()),
        Message::Close(_) => return Err((close::NORMAL, "closed by the client")),
    };
    let (image, id) = match parsed {
        Ok(ClientMessage::Ping) => {
            let pong = Answer::message(json!({ "type": "pong" }));
            session.owed.push_back(Slot::Ready(pong));
            return Ok(());
        }
        Ok(ClientMessage::Frame { image, id }) => (image, id),
        Err(refusal) => {
            session
                .owed
                .push_back(Slot::Ready(Answer::refusal(&refusal, None)));
            return Ok(());
        }
    };
    let now = Instant::now();
    if config.max_frames_per_session > 0 && session.frames_accepted >= config.max_frames_per_session
    {
        return Err((close::FRAME_BUDGET_USED, "session frame budget used up"));
    }
    while session
        .recent_frames
        .front()
        .is_some_and(|t| now - *t >= Duration::from_secs(1))
    {
        session.recent_frames.pop_front();
    }
    if session.recent_frames.len() as f32 >= config.max_fps {
        let refusal = FrameRefusal::TooFast(config.max_fps);
        session
            .owed
            .push_back(Slot::Ready(Answer::refusal(&refusal, id)));
        return Ok(());
    }
    let waiting = session
        .owed
        .iter()
        .filter(|s| matches!(s, Slot::Frame { .. }))
        .count();
    if waiting >= MAX_WAITING_FRAMES {
        let refusal = Answer::refusal(&FrameRefusal::Overloaded, id);
        session.owed.push_back(Slot::Ready(refusal));
        return Ok(());
    }
    session.recent_frames.push_back(now);
    session.frames_accepted += 1;
    let max_side = config.max_frame_side;
    let frame = if state.worker.takes_encoded_frames {
        Frame::Encoded {
            bytes: image,
            max_side,
        }
    } else {
        let decoded =
            tokio::task::spawn_blocking(move || frame::decode_untrusted(&image, max_side))
                .await
                .unwrap_or_else(|_| {
                    Err(frame::FrameError::Damaged(
                        "the server stopped while decoding this frame".into(),
                    ))
                });
        match decoded {
            Ok(frame) => Frame::Decoded(frame),
            Err(error) => {
                let refusal = Answer::refusal(&FrameRefusal::Undecodable(error), id);
                session.owed.push_back(Slot::Ready(refusal));
                return Ok(());
            }
        }
    };
    session.owed.push_back(Slot::Frame {
        frame,
        id,
        received: now,
    });
    Ok(())
}

/// Sends every answer that is ready at the head of the line, and starts the next frame when
/// the device has none of this session's.
async fn pump(
    session: &mut Session,
    socket: &mut WebSocket,
    state: &AppState,
) -> Result<(), axum::Error> {
    while session.in_flight.is_none() {
        match session.owed.pop_front() {
            Some(Slot::Ready(answer)) => send(socket, answer, &state.metrics).await?,
            Some(Slot::Frame {
                frame,
                id,
                received,
            }) => {
                let (reply, receiver) = oneshot::channel();
                let job = FrameJob {
                    frame,
                    tracker: session
                        .tracker
                        .take()
                        .expect("the tracker is home between frames"),
                    session: session.id,
                    deadline: received + Duration::from_millis(state.config.frame_deadline_ms),
                    reply,
                };
                match state.worker.submit(job) {
                    Ok(()) => session.in_flight = Some((receiver, id, received)),
                    Err(job) => {
                        session.tracker = Some(job.tracker);
                        let refusal = Answer::refusal(&FrameRefusal::Overloaded, id);
                        send(socket, refusal, &state.metrics).await?;
                    }
                }
            }
            None => break,
        }
    }
    Ok(())
}

/// The answer for a frame the worker finished (or refused).
fn on_outcome(
    session: &mut Session,
    outcome: Option<Result<FrameOutcome, Refused>>,
    id: Option<Value>,
    received: Instant,
) -> Answer {
    let outcome = match outcome {
        Some(Ok(outcome)) => outcome,
        Some(Err(refused)) => {
            session.tracker = Some(refused.tracker);
            return Answer::refusal(&refused.why, id);
        }
        None => {
            // The worker is gone (shutting down): start tracking afresh if the session goes on.
            session.tracker = Some(FaceTracker::new(TrackingMode::Video));
            return Answer::refusal(&FrameRefusal::Overloaded, id);
        }
    };
    session.tracker = Some(outcome.tracker);
    session.frames_processed += 1;
    let timings = Timings {
        queue_wait_ms: outcome.queue_wait.as_secs_f64() * 1e3,
        inference_ms: outcome.inference.as_secs_f64() * 1e3,
        total_ms: received.elapsed().as_secs_f64() * 1e3,
        batch_size: outcome.batch_size,
    };
    let time = received.duration_since(session.started);
    let frame = FrameContext {
        frames_processed: session.frames_processed,
        timings: &timings,
        id,
    };
    // The worker measures the first face whenever there is one.
    let (Some(face), Some(measures)) = (outcome.faces.first(), &outcome.first_face) else {
        let progress = session.liveness.observe_no_face(time);
        return answers::no_face(frame, &progress);
    };
    let &FaceMeasures {
        face_box,
        pose,
        ref quality,
    } = measures;
    let report = FaceReport {
        face,
        face_box,
        faces: outcome.faces.len(),
        quality,
    };
    if quality.rejection.is_some() {
        let progress = session.liveness.observe_no_face(time);
        answers::frame_rejected(frame, &report, &progress)
    } else {
        let (indicators, progress) =
            session
                .liveness
                .observe(&face.points, face_box, pose, quality.score, time);
        answers::face_processed(frame, &report, &indicators, &progress)
    }
}

/// Once the liveness verdict is in, the session ends: the answers already made go out, then
/// the verdict's message, then the close. Frames still waiting cannot change the verdict and
/// are dropped.
fn conclude(session: &mut Session, state: &AppState) {
    if session.ending.is_some() {
        return;
    }
    let progress = session.liveness.progress();
    let frames = session.frames_processed;
    let (message, ending, counter) = match progress.verdict {
        Verdict::InProgress => return,
        Verdict::Passed => (
            Answer::message(answers::liveness_passed(
                &session.token,
                session.liveness.kind(),
                frames,
                &progress,
            )),
            (close::NORMAL, "liveness passed"),
            &state.metrics.liveness_passed,
        ),
        Verdict::TimedOut => (
            Answer::message(answers::authentication_timeout(
                &session.token,
                state.config.authentication_timeout_secs,
                frames,
                &progress,
            )),
            (close::SESSION_EXPIRED, "authentication timed out"),
            &state.metrics.liveness_timed_out,
        ),
    };
    let answered = session
        .owed
        .iter()
        .take_while(|slot| matches!(slot, Slot::Ready(_)))
        .count();
    session.owed.truncate(answered);
    session.in_flight = None;
    session.owed.push_back(Slot::Ready(message));
    session.ending = Some(ending);
    counter.fetch_add(1, Ordering::Relaxed);
    tracing::info!(verdict = ?progress.verdict, score = progress.liveness_score, "liveness concluded");
}

/// Waits until `deadline`, or forever when there is none.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Sends one answer, counting frame outcomes as it goes.
async fn send(
    socket: &mut WebSocket,
    answer: Answer,
    metrics: &Metrics,
) -> Result<(), axum::Error> {
    if let Some(outcome) = answer.outcome {
        metrics.answered(outcome);
    }
    socket.send(Message::Text(answer.json.into())).await
}
