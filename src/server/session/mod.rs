//! One WebSocket connection: one camera stream, one session: its liveness check and, for a
//! session issued over REST, its identity step once liveness has passed.
//!
//! Frames go to the engine one at a time per session, because each frame's tracking regions
//! come from the previous frame's landmarks. While one is in the engine the next few wait
//! here; every message gets its answer in the order it arrived, errors included. The loop is
//! generic over the socket's two halves and the engine, so that its rules are tested with
//! channels and a scripted engine (the tests below).

pub mod limits;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};

use crate::engine::{Analyze, FrameJob, Reply, SessionId, Tracking};
use crate::identity::session_faces::SessionFaces;
use crate::identity::spoof_scores::SpoofScores;
use crate::identity::{Conclusion, Identity, IdentityRequest};
use crate::liveness::check::{LivenessCheck, LivenessRules, Progress, SessionKind, Verdict};
use crate::server::answers::{self, Answer, FaceReport, FrameContext, Timings};
use crate::server::codes::{Close, FrameRefusal};
use crate::server::metrics::Metrics;
use crate::server::protocol::{ClientMessage, parse_binary, parse_text};
use limits::{Allowance, LimitHit, MAX_WAITING_FRAMES, SessionLimits};

/// On shutdown, how long a session may take to answer the frames it already took.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What a session is given when it starts.
pub struct SessionSetup<'a, E> {
    pub token: String,
    pub id: SessionId,
    pub kind: SessionKind,
    pub limits: &'a SessionLimits,
    pub rules: LivenessRules,
    pub engine: &'a E,
    pub metrics: &'a Arc<Metrics>,
    /// Turns true when the server shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// Fires when a newer connection takes this session's token.
    pub replaced: oneshot::Receiver<()>,
    /// The identity step of a session issued over REST; `None` in open mode.
    pub identity: Option<SessionIdentity<'a>>,
}

/// What an issued session's identity step needs.
pub struct SessionIdentity<'a> {
    pub service: &'a Identity,
    pub request: IdentityRequest,
}

/// An issued session's identity step as it goes: the face it has shown so far, and how live
/// it looked.
struct IdentityStep<'a> {
    service: &'a Identity,
    request: IdentityRequest,
    faces: SessionFaces,
    spoof: SpoofScores,
}

/// Answers owed to the client, oldest first: a frame still to run, or an answer ready to go.
enum Slot {
    Frame {
        frame: crate::engine::Frame,
        id: Option<Value>,
        received: Instant,
    },
    Ready(Answer),
}

/// The frame in the engine: its reply, and what its answer needs.
struct InFlight {
    reply: oneshot::Receiver<Reply>,
    id: Option<Value>,
    received: Instant,
}

/// Where a session is on its way to closing.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ending {
    /// Reading messages and answering them.
    Running,
    /// The server is shutting down: no more reading; the frames taken are answered until
    /// `until`, then the session closes.
    Draining { until: tokio::time::Instant },
    /// The verdict is in: the answers made before it and its message go out, then this close.
    Concluded(Close),
    /// Close now.
    Closing(Close),
}

impl Ending {
    /// The next state once everything owed has been sent, if it has.
    fn settled(self, frames_owed: bool) -> Self {
        match self {
            Ending::Draining { .. } if !frames_owed => Ending::Closing(Close::ShuttingDown),
            Ending::Concluded(close) if !frames_owed => Ending::Closing(close),
            other => other,
        }
    }
}

struct Session<'a, E> {
    token: String,
    id: SessionId,
    engine: &'a E,
    metrics: &'a Metrics,
    max_frame_bytes: usize,
    send_timeout: Duration,
    /// Home while none of this session's frames is in the engine.
    tracking: Option<Tracking>,
    owed: VecDeque<Slot>,
    in_flight: Option<InFlight>,
    frames_processed: u64,
    allowance: Allowance,
    liveness: LivenessCheck,
    identity: Option<IdentityStep<'a>>,
    conclusion: Option<Conclusion>,
    started: Instant,
    ending: Ending,
}

/// How a session ended: the close it sent (none when the socket went away or idled out), and
/// how far it got.
pub struct SessionEnd {
    pub close: Option<Close>,
    pub frames_processed: u64,
    pub progress: Progress,
    /// The identity step's, where it came to a decision.
    pub conclusion: Option<Conclusion>,
}

/// Runs a session over a socket's two halves until it closes.
pub async fn run<E, W, R, X>(mut sink: W, mut stream: R, setup: SessionSetup<'_, E>) -> SessionEnd
where
    E: Analyze,
    W: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, X>> + Unpin,
    X: Into<ReadFault>,
{
    let SessionSetup {
        token,
        id,
        kind,
        limits,
        rules,
        engine,
        metrics,
        mut shutdown,
        mut replaced,
        identity,
    } = setup;
    let mut session = Session {
        token,
        id,
        engine,
        metrics,
        max_frame_bytes: limits.max_frame_bytes,
        send_timeout: Duration::from_secs(limits.send_timeout_secs),
        tracking: Some(Tracking::default()),
        owed: VecDeque::new(),
        in_flight: None,
        frames_processed: 0,
        allowance: Allowance::new(limits),
        liveness: LivenessCheck::new(kind, rules),
        identity: identity.map(|identity| IdentityStep {
            faces: identity.service.session_faces(),
            spoof: SpoofScores::default(),
            service: identity.service,
            request: identity.request,
        }),
        conclusion: None,
        started: Instant::now(),
        ending: Ending::Running,
    };
    metrics.open_sessions.fetch_add(1, Ordering::Relaxed);
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
            .map_or(limits.session_timeout_secs, |t| t.as_secs()),
    );
    let idle_limit = Duration::from_secs(limits.session_timeout_secs);
    let mut closed_with = None;
    let send_timeout = session.send_timeout;
    if send(&mut sink, Answer::message(hello), metrics, send_timeout).await {
        loop {
            let reply = async {
                match session.in_flight.as_mut() {
                    Some(in_flight) => (&mut in_flight.reply).await.ok(),
                    None => std::future::pending().await,
                }
            };
            let draining_until = match session.ending {
                Ending::Draining { until } => Some(until),
                _ => None,
            };
            let concluded = matches!(session.ending, Ending::Concluded(_) | Ending::Closing(_));
            tokio::select! {
                message = tokio::time::timeout(idle_limit, stream.next()),
                    if session.ending == Ending::Running => {
                    match message {
                        Ok(Some(Ok(message))) => session.on_message(message).await,
                        Err(_idle) => session.ending = Ending::Closing(Close::IdleTimeout),
                        Ok(Some(Err(fault))) => match fault.into().close() {
                            Some(close) => session.ending = Ending::Closing(close),
                            None => break,
                        },
                        // The peer went without a close frame.
                        Ok(None) => break,
                    }
                }
                reply = reply => {
                    let in_flight = session.in_flight.take().expect("a frame was in flight");
                    let answer = session.on_reply(reply, in_flight);
                    session.owed.push_front(Slot::Ready(answer));
                    session.conclude().await;
                }
                _ = sleep_until_some(liveness_deadline), if !concluded => {
                    session.liveness.tick(session.started.elapsed());
                    session.conclude().await;
                }
                _ = shutdown.changed(), if session.ending == Ending::Running => {
                    let until = tokio::time::Instant::now() + SHUTDOWN_GRACE;
                    session.ending = Ending::Draining { until };
                }
                _ = sleep_until_some(draining_until), if draining_until.is_some() => {
                    session.ending = Ending::Closing(Close::ShuttingDown);
                }
                Ok(()) = &mut replaced => {
                    session.ending = Ending::Closing(Close::Replaced);
                }
            }
            if !session.pump(&mut sink).await {
                break;
            }
            let frames_owed = session.in_flight.is_some() || !session.owed.is_empty();
            session.ending = session.ending.settled(frames_owed);
            if let Ending::Closing(code) = session.ending {
                close(&mut sink, &mut stream, code).await;
                closed_with = Some(code);
                break;
            }
        }
    }
    metrics.open_sessions.fetch_sub(1, Ordering::Relaxed);
    tracing::info!(frames = session.frames_processed, "session ended");
    SessionEnd {
        close: closed_with,
        frames_processed: session.frames_processed,
        progress: session.liveness.progress(),
        conclusion: session.conclusion,
    }
}

impl<E: Analyze> Session<'_, E> {
    /// Handles one client message: queues its answer, or a frame to run, or ends the session.
    async fn on_message(&mut self, message: Message) {
        let parsed = match message {
            Message::Text(text) => parse_text(&text, self.max_frame_bytes),
            Message::Binary(bytes) => parse_binary(bytes.to_vec(), self.max_frame_bytes),
            Message::Ping(_) | Message::Pong(_) => return,
            Message::Close(_) => {
                self.ending = Ending::Closing(Close::ClientClosed);
                return;
            }
        };
        let now = Instant::now();
        let (image, id) = match parsed {
            Ok(ClientMessage::Ping) => {
                let pong = Answer::message(json!({ "type": "pong" }));
                self.owed.push_back(Slot::Ready(pong));
                return;
            }
            Ok(ClientMessage::Frame { image, id }) => (image, id),
            Err(refusal) => {
                // A malformed message spends the rate and the budget as a frame does, so a
                // flood of them is held to the same limits.
                match self.allowance.take(now, 0) {
                    Ok(()) => self.refuse(&refusal, None),
                    Err(hit) => self.limit_hit(hit, None),
                }
                return;
            }
        };
        let waiting = self
            .owed
            .iter()
            .filter(|s| matches!(s, Slot::Frame { .. }))
            .count();
        // Frames past the largest side are refused from their header as they are decoded.
        let header = crate::frame::Header::read(&image);
        let max_side = self.engine.max_frame_side();
        let pixels = header
            .filter(|header| header.fits(max_side))
            .map_or(0, |header| header.pixels());
        let taken = self
            .allowance
            .take(now, waiting)
            .and_then(|()| self.allowance.take_pixels(now, pixels));
        if let Err(hit) = taken {
            self.limit_hit(hit, id);
            return;
        }
        match self.engine.prepare(image, header).await {
            Ok(frame) => self.owed.push_back(Slot::Frame {
                frame,
                id,
                received: now,
            }),
            Err(not_prepared) => self.refuse(&not_prepared.into(), id),
        }
    }

    fn limit_hit(&mut self, hit: LimitHit, id: Option<Value>) {
        match hit {
            // The frames taken before are still answered, then the close.
            LimitHit::BudgetUsed => self.ending = Ending::Concluded(Close::FrameBudgetUsed),
            LimitHit::TooFast => self.refuse(&FrameRefusal::TooFast(self.allowance.max_fps()), id),
            LimitHit::Backlog => self.refuse(&FrameRefusal::Backlog(MAX_WAITING_FRAMES), id),
            LimitHit::TooManyPixels => self.refuse(
                &FrameRefusal::TooManyPixels(self.allowance.max_pixels()),
                id,
            ),
        }
    }

    fn refuse(&mut self, refusal: &FrameRefusal, id: Option<Value>) {
        self.owed
            .push_back(Slot::Ready(Answer::refusal(refusal, id)));
    }

    /// Sends every answer that is ready at the head of the line, and hands the next frame to
    /// the engine when it has none of this session's. False when the socket is gone.
    async fn pump<W: Sink<Message> + Unpin>(&mut self, sink: &mut W) -> bool {
        while self.in_flight.is_none() {
            match self.owed.pop_front() {
                Some(Slot::Ready(answer)) => {
                    if !send(sink, answer, self.metrics, self.send_timeout).await {
                        return false;
                    }
                }
                Some(Slot::Frame {
                    frame,
                    id,
                    received,
                }) => {
                    let job = FrameJob {
                        frame,
                        tracking: self
                            .tracking
                            .take()
                            .expect("the tracking is home between frames"),
                        session: self.id,
                        received,
                        wants_template: self
                            .identity
                            .as_ref()
                            .is_some_and(|identity| identity.faces.wants_template()),
                        wants_spoof_score: self
                            .identity
                            .as_ref()
                            .is_some_and(|identity| identity.spoof.wants_score()),
                    };
                    let reply = self.engine.analyze(job);
                    self.in_flight = Some(InFlight {
                        reply,
                        id,
                        received,
                    });
                }
                None => break,
            }
        }
        true
    }

    /// The answer for a frame the engine finished (or refused).
    fn on_reply(&mut self, reply: Option<Reply>, in_flight: InFlight) -> Answer {
        let InFlight { id, received, .. } = in_flight;
        let Some(reply) = reply else {
            // The engine is gone (shutting down): start tracking afresh if the session goes on.
            self.tracking = Some(Tracking::default());
            return Answer::refusal(&FrameRefusal::Overloaded, id);
        };
        self.tracking = Some(reply.tracking);
        let mut analysis = match FrameRefusal::of_outcome(reply.outcome) {
            Ok(analysis) => analysis,
            Err(refusal) => return Answer::refusal(&refusal, id),
        };
        self.frames_processed += 1;
        let timings = Timings {
            queue_wait_ms: analysis.queue_wait.as_secs_f64() * 1e3,
            inference_ms: analysis.inference.as_secs_f64() * 1e3,
            total_ms: received.elapsed().as_secs_f64() * 1e3,
            batch_size: analysis.batch_size,
        };
        let time = received.duration_since(self.started);
        let frame = FrameContext {
            frames_processed: self.frames_processed,
            timings: &timings,
            id,
        };
        // The engine measures the first face whenever there is one.
        let (Some(face), Some(measures)) = (analysis.faces.first(), &analysis.first_face) else {
            let progress = self.liveness.observe_no_face(time);
            return answers::no_face(frame, &progress);
        };
        let report = FaceReport {
            face,
            face_box: measures.face_box,
            faces: analysis.faces.len(),
            quality: &measures.quality,
        };
        if measures.quality.rejection.is_some() {
            let progress = self.liveness.observe_no_face(time);
            answers::frame_rejected(frame, &report, &progress)
        } else {
            let (indicators, progress) = self.liveness.observe(
                &face.points,
                measures.face_box,
                measures.pose,
                measures.quality.score,
                time,
            );
            if let Some(identity) = &mut self.identity {
                match analysis.template.take() {
                    // A face unlike the session's so far ends the session (`conclude`).
                    Some(Ok(template)) => {
                        let _ = identity.faces.take(template, measures.quality.score);
                    }
                    None => identity.faces.pass_frame(),
                    // Too small to recognise: the next frame is asked again.
                    Some(Err(_)) => {}
                }
                match analysis.spoof_score {
                    Some(score) => identity.spoof.take(score),
                    None => identity.spoof.pass_frame(),
                }
            }
            answers::face_processed(frame, &report, &indicators, &progress)
        }
    }

    /// Once the liveness verdict is in (or the face changed), the session ends: the answers
    /// already made go out, then the verdict's message (after the identity step's decision,
    /// in an issued session), then the close. Frames still waiting cannot change the verdict
    /// and are dropped.
    async fn conclude(&mut self) {
        if matches!(self.ending, Ending::Concluded(_) | Ending::Closing(_)) {
            return;
        }
        let progress = self.liveness.progress();
        let frames = self.frames_processed;
        let face_changed = self
            .identity
            .as_ref()
            .is_some_and(|identity| identity.faces.changed().is_some());
        let decides = face_changed || progress.verdict == Verdict::Passed;
        let (message, close) = match &self.identity {
            Some(identity) if decides => {
                let conclusion = identity
                    .service
                    .conclude(&identity.request, &identity.faces, &identity.spoof)
                    .await;
                let message =
                    answers::identity_concluded(&self.token, frames, &progress, &conclusion);
                let close = Close::after(&conclusion.decision);
                self.metrics.decided(&conclusion.decision);
                self.conclusion = Some(conclusion);
                (message, close)
            }
            _ => match progress.verdict {
                Verdict::InProgress => return,
                Verdict::Passed => (
                    answers::liveness_passed(&self.token, self.liveness.kind(), frames, &progress),
                    Close::LivenessPassed,
                ),
                Verdict::TimedOut => (
                    answers::authentication_timeout(
                        &self.token,
                        self.liveness.timeout().unwrap_or_default().as_secs(),
                        frames,
                        &progress,
                    ),
                    Close::AuthenticationTimedOut,
                ),
            },
        };
        let answered = self
            .owed
            .iter()
            .take_while(|slot| matches!(slot, Slot::Ready(_)))
            .count();
        self.owed.truncate(answered);
        self.in_flight = None;
        self.owed.push_back(Slot::Ready(Answer::message(message)));
        self.ending = Ending::Concluded(close);
        match progress.verdict {
            Verdict::Passed => self.metrics.liveness_passed.fetch_add(1, Ordering::Relaxed),
            Verdict::TimedOut => self
                .metrics
                .liveness_timed_out
                .fetch_add(1, Ordering::Relaxed),
            Verdict::InProgress => 0,
        };
        tracing::info!(verdict = ?progress.verdict, score = progress.liveness_score, "liveness concluded");
    }
}

/// Waits until `deadline`, or forever when there is none.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Sends one answer, counting frame outcomes as it goes; false when the socket is gone or the
/// client has not taken it within `timeout` (it stopped reading).
async fn send<W: Sink<Message> + Unpin>(
    sink: &mut W,
    answer: Answer,
    metrics: &Metrics,
    timeout: Duration,
) -> bool {
    if let Some(outcome) = answer.outcome {
        metrics.answered(outcome);
    }
    let sent = tokio::time::timeout(timeout, sink.send(Message::Text(answer.json.into()))).await;
    match sent {
        Ok(result) => result.is_ok(),
        Err(_) => {
            tracing::info!("the client stopped reading: dropping the session");
            false
        }
    }
}

/// How long a closing session waits for the client to answer its close frame.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);

/// Sends `close` and lets the client answer it (reading and dropping whatever else comes
/// first), so that the client has read every message before the close when TCP goes.
pub async fn close<W, R, X>(sink: &mut W, stream: &mut R, close: Close)
where
    W: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, X>> + Unpin,
{
    let frame = CloseFrame {
        code: close.code(),
        reason: Utf8Bytes::from_static(close.reason()),
    };
    let handshake = async {
        if close == Close::ClientClosed {
            // The client's close came first. The WebSocket library has queued its answer, sent
            // on the next flush, and refuses a close of ours after it; a plain sink takes ours.
            let _ = sink.flush().await;
            let _ = sink.send(Message::Close(Some(frame))).await;
            return;
        }
        if sink.send(Message::Close(Some(frame))).await.is_ok() {
            while let Some(Ok(message)) = stream.next().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE, handshake).await;
}

/// Why reading the socket failed, as far as the close goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFault {
    TooBig,
    Protocol,
    InvalidUtf8,
    /// The connection itself failed: nobody is left to tell.
    Gone,
}

impl ReadFault {
    fn close(self) -> Option<Close> {
        match self {
            ReadFault::TooBig => Some(Close::MessageTooBig),
            ReadFault::Protocol => Some(Close::ProtocolError),
            ReadFault::InvalidUtf8 => Some(Close::InvalidUtf8),
            ReadFault::Gone => None,
        }
    }
}

impl From<axum::Error> for ReadFault {
    fn from(error: axum::Error) -> ReadFault {
        use tokio_tungstenite::tungstenite::Error;
        match error.into_inner().downcast::<Error>().map(|e| *e) {
            Ok(Error::Capacity(_)) => ReadFault::TooBig,
            Ok(Error::Protocol(_)) => ReadFault::Protocol,
            Ok(Error::Utf8(_)) => ReadFault::InvalidUtf8,
            _ => ReadFault::Gone,
        }
    }
}

impl From<std::convert::Infallible> for ReadFault {
    fn from(never: std::convert::Infallible) -> ReadFault {
        match never {}
    }
}

#[cfg(test)]
mod tests;
