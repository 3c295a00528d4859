//! The session loop's rules, over channels instead of a socket and with an engine whose
//! replies the test gives by hand: the order of answers, limits, draining, replacement and the
//! verdict, without models.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Message;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};

use super::limits::{MAX_WAITING_FRAMES, SessionLimits};
use super::{SessionSetup, run};
use crate::engine::{
    Analysis, Analyze, FaceMeasures, Frame, FrameJob, NotPrepared, Outcome, Reply,
};
use crate::frame::{FrameError, Header};
use crate::liveness::check::{LivenessRules, SessionKind};
use crate::liveness::pose::head_pose;
use crate::liveness::quality::Quality;
use crate::liveness::synthetic::{self, Pose, REST};
use crate::pipeline::face_mesh::FaceLandmarks;
use crate::server::metrics::Metrics;

/// An engine that hands each job to the test, which answers it when it likes. Frames whose
/// bytes are `b"bad"` fail to decode, and `b"busy"` find the decode memory in use.
struct HandEngine {
    jobs: mpsc::UnboundedSender<(FrameJob, oneshot::Sender<Reply>)>,
}

impl Analyze for HandEngine {
    async fn prepare(&self, bytes: Vec<u8>, _: Option<Header>) -> Result<Frame, NotPrepared> {
        match bytes.as_slice() {
            b"bad" => Err(NotPrepared::Undecodable(FrameError::NotAnImage)),
            b"busy" => Err(NotPrepared::DecodeMemoryBusy),
            _ => Ok(Frame::Encoded(bytes)),
        }
    }

    fn analyze(&self, job: FrameJob) -> oneshot::Receiver<Reply> {
        let (reply, receiver) = oneshot::channel();
        let _ = self.jobs.send((job, reply));
        receiver
    }

    fn max_frame_side(&self) -> u32 {
        crate::frame::DEFAULT_MAX_SIDE
    }
}

/// A session running on its own task, and the test's ends of its socket and engine.
struct Harness {
    to_session: mpsc::UnboundedSender<Message>,
    from_session: mpsc::UnboundedReceiver<Message>,
    jobs: mpsc::UnboundedReceiver<(FrameJob, oneshot::Sender<Reply>)>,
    shutdown: watch::Sender<bool>,
    replace: Option<oneshot::Sender<()>>,
    metrics: Arc<Metrics>,
    task: tokio::task::JoinHandle<()>,
}

fn start(kind: SessionKind, limits: SessionLimits, rules: LivenessRules) -> Harness {
    let (to_session, incoming) = mpsc::unbounded_channel::<Message>();
    let (outgoing, from_session) = mpsc::unbounded_channel::<Message>();
    let (jobs_in, jobs) = mpsc::unbounded_channel();
    let (shutdown, shutdown_seen) = watch::channel(false);
    let (replace, replaced) = oneshot::channel();
    let metrics = Arc::new(Metrics::new(Arc::default()));
    let session_metrics = metrics.clone();
    let task = tokio::spawn(async move {
        let engine = HandEngine { jobs: jobs_in };
        let stream = futures_util::stream::unfold(incoming, |mut incoming| async move {
            incoming
                .recv()
                .await
                .map(|m| (Ok::<_, std::convert::Infallible>(m), incoming))
        });
        let sink = futures_util::sink::unfold(outgoing, |outgoing, message: Message| async move {
            outgoing.send(message).map(|()| outgoing)
        });
        let setup = SessionSetup {
            token: "hand_1".into(),
            id: 1,
            kind,
            limits: &limits,
            rules,
            engine: &engine,
            metrics: &session_metrics,
            shutdown: shutdown_seen,
            replaced,
            identity: None,
        };
        run(Box::pin(sink), Box::pin(stream), setup).await;
    });
    Harness {
        to_session,
        from_session,
        jobs,
        shutdown,
        replace: Some(replace),
        metrics,
        task,
    }
}

fn frame(id: u64) -> Message {
    Message::text(json!({ "type": "frame", "image": "aGVsbG8=", "id": id }).to_string())
}

impl Harness {
    fn send(&self, message: Message) {
        self.to_session
            .send(message)
            .expect("the session is running");
    }

    async fn next(&mut self) -> Message {
        tokio::time::timeout(Duration::from_secs(10), self.from_session.recv())
            .await
            .expect("an answer within 10 s")
            .expect("the session has not closed its socket")
    }

    async fn next_json(&mut self) -> Value {
        match self.next().await {
            Message::Text(text) => serde_json::from_str(&text).unwrap(),
            other => panic!("expected a text answer, got {other:?}"),
        }
    }

    /// The close frame's code, after which the session has ended.
    async fn close_code(&mut self) -> u16 {
        match self.next().await {
            Message::Close(Some(frame)) => frame.code,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }

    async fn job(&mut self) -> (FrameJob, oneshot::Sender<Reply>) {
        tokio::time::timeout(Duration::from_secs(10), self.jobs.recv())
            .await
            .expect("a job within 10 s")
            .expect("the session is running")
    }

    /// Answers the next job the engine got with `outcome`.
    async fn answer(&mut self, outcome: Outcome) {
        let (job, reply) = self.job().await;
        let _ = reply.send(Reply {
            tracking: job.tracking,
            outcome,
        });
    }

    /// Answers the next job with the synthetic face in `pose`.
    async fn answer_face(&mut self, pose: Pose) {
        self.answer(Outcome::Done(face_analysis(pose))).await;
    }
}

fn no_face() -> Outcome {
    Outcome::Done(Analysis {
        faces: Vec::new(),
        first_face: None,
        template: None,
        spoof_score: None,
        queue_wait: Duration::ZERO,
        inference: Duration::from_millis(3),
        batch_size: 1,
    })
}

fn face_analysis(pose: Pose) -> Analysis {
    let (points, face_box) = synthetic::face(pose);
    let measures = FaceMeasures {
        face_box,
        pose: head_pose(&points).expect("the synthetic face has axes"),
        quality: Quality {
            score: 0.9,
            size: 1.0,
            sharpness: 1.0,
            brightness: 1.0,
            centring: 1.0,
            frontal: 1.0,
            face_fraction: 0.4,
            laplacian_variance: 200.0,
            mean_luma: 120.0,
            rejection: None,
        },
    };
    Analysis {
        faces: vec![FaceLandmarks {
            presence: 0.99,
            points,
        }],
        first_face: Some(measures),
        template: None,
        spoof_score: None,
        queue_wait: Duration::ZERO,
        inference: Duration::from_millis(3),
        batch_size: 1,
    }
}

fn open_limits() -> SessionLimits {
    SessionLimits {
        max_fps: 1000.0,
        max_frames_per_session: 0,
        ..SessionLimits::default()
    }
}

async fn started(kind: SessionKind, limits: SessionLimits) -> Harness {
    let mut harness = start(kind, limits, LivenessRules::default());
    assert_eq!(harness.next_json().await["type"], "connection_established");
    harness
}

#[tokio::test]
async fn a_frame_without_decode_memory_is_refused_503_and_the_session_goes_on() {
    let mut session = started(SessionKind::Enrollment, open_limits()).await;
    session.send(Message::text(
        json!({ "image": base64_of(b"busy"), "id": 1 }).to_string(),
    ));
    let refused = session.next_json().await;
    assert_eq!(
        (refused["id"].as_u64(), refused["code"].as_u64()),
        (Some(1), Some(503))
    );
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("memory for decoding"),
        "{refused}"
    );
    session.send(frame(2));
    session.answer(no_face()).await;
    assert_eq!(session.next_json().await["id"], 2);
}

#[tokio::test]
async fn answers_keep_the_order_of_their_messages_while_a_frame_runs() {
    let mut session = started(SessionKind::Enrollment, open_limits()).await;
    session.send(frame(1));
    let (job, reply) = session.job().await;
    // Sent while frame 1 is in the engine: each answer still waits for the ones before it.
    session.send(Message::text(r#"{"type":"ping"}"#));
    session.send(Message::text("not json"));
    session.send(frame(2));
    session.send(Message::text(
        json!({ "image": base64_of(b"bad"), "id": 3 }).to_string(),
    ));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        session.from_session.try_recv().is_err(),
        "nothing overtakes frame 1"
    );
    let _ = reply.send(Reply {
        tracking: job.tracking,
        outcome: no_face(),
    });
    let first = session.next_json().await;
    assert_eq!(
        (first["id"].as_u64(), first["error"].as_str()),
        (Some(1), Some("No face detected"))
    );
    assert_eq!(session.next_json().await["type"], "pong");
    assert_eq!(session.next_json().await["code"], 400);
    session.answer(Outcome::Overloaded).await;
    let second = session.next_json().await;
    assert_eq!(
        (second["id"].as_u64(), second["code"].as_u64()),
        (Some(2), Some(503))
    );
    let third = session.next_json().await;
    assert_eq!(
        (third["id"].as_u64(), third["code"].as_u64()),
        (Some(3), Some(415))
    );
    session.send(Message::Close(None));
    assert_eq!(session.close_code().await, 1000);
    session.task.await.unwrap();
    assert_eq!(
        session
            .metrics
            .open_sessions
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn frames_beyond_the_backlog_are_refused_at_once() {
    let mut session = started(SessionKind::Enrollment, open_limits()).await;
    session.send(frame(0));
    let running = session.job().await;
    for id in 1..=MAX_WAITING_FRAMES as u64 + 1 {
        session.send(frame(id));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Nothing is sent before frame 0's answer, so the refusal of the one too many waits too.
    assert!(session.from_session.try_recv().is_err());
    let (job, reply) = running;
    let _ = reply.send(Reply {
        tracking: job.tracking,
        outcome: no_face(),
    });
    assert_eq!(session.next_json().await["id"], 0);
    for id in 1..=MAX_WAITING_FRAMES as u64 {
        session.answer(no_face()).await;
        let answer = session.next_json().await;
        assert_eq!(answer["id"], id);
        assert_eq!(answer["frames_processed"], id + 1);
    }
    // The refusal keeps its place in line, behind the frames taken before it. The client sent
    // faster than it was answered: 429, its own doing, not the server's overload (503).
    let refused = session.next_json().await;
    let too_many = MAX_WAITING_FRAMES as u64 + 1;
    assert_eq!(
        (refused["id"].as_u64(), refused["code"].as_u64()),
        (Some(too_many), Some(429))
    );
}

#[tokio::test]
async fn the_frame_budget_closes_the_session_with_4429() {
    let limits = SessionLimits {
        max_frames_per_session: 2,
        ..open_limits()
    };
    let mut session = started(SessionKind::Enrollment, limits).await;
    for id in 0..2 {
        session.send(frame(id));
        session.answer(no_face()).await;
        assert_eq!(session.next_json().await["id"], id);
    }
    session.send(frame(2));
    assert_eq!(session.close_code().await, 4429);
    session.task.await.unwrap();
}

#[tokio::test]
async fn shutdown_answers_the_frames_taken_then_closes_with_1001() {
    let mut session = started(SessionKind::Enrollment, open_limits()).await;
    session.send(frame(0));
    session.send(frame(1));
    let running = session.job().await;
    // Time for the session to take frame 1 before it hears of the shutdown.
    tokio::time::sleep(Duration::from_millis(50)).await;
    session.shutdown.send(true).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Read no more: this frame is never taken.
    session.send(frame(2));
    let (job, reply) = running;
    let _ = reply.send(Reply {
        tracking: job.tracking,
        outcome: no_face(),
    });
    assert_eq!(session.next_json().await["id"], 0);
    session.answer(no_face()).await;
    assert_eq!(session.next_json().await["id"], 1);
    assert_eq!(session.close_code().await, 1001);
    session.task.await.unwrap();
    assert!(
        session.jobs.try_recv().is_err(),
        "frame 2 never reached the engine"
    );
}

#[tokio::test]
async fn a_newer_connection_replaces_the_session_with_1000() {
    let mut session = started(SessionKind::Enrollment, open_limits()).await;
    let _ = session.replace.take().unwrap().send(());
    assert_eq!(session.close_code().await, 1000);
    session.task.await.unwrap();
}

#[tokio::test]
async fn an_authentication_that_runs_out_of_time_ends_with_4401() {
    let rules = LivenessRules {
        authentication_timeout: Duration::from_millis(300),
        ..LivenessRules::default()
    };
    let mut session = start(SessionKind::Authentication, open_limits(), rules);
    assert_eq!(session.next_json().await["type"], "connection_established");
    // A frame still in the engine when time runs out is dropped: the verdict stands.
    session.send(frame(0));
    let _still_running = session.job().await;
    let timeout = session.next_json().await;
    assert_eq!(timeout["type"], "authentication_timeout");
    assert_eq!(timeout["liveness_verified"], false);
    assert_eq!(session.close_code().await, 4401);
    session.task.await.unwrap();
}

#[tokio::test]
async fn an_authentication_that_shows_blinks_and_motion_passes_and_closes_with_1000() {
    let mut session = started(SessionKind::Authentication, open_limits()).await;
    let closed = Pose { eyes: 0.05, ..REST };
    let blink = [[REST; 10].as_slice(), &[closed; 2], &[REST]].concat();
    let mut id = 0;
    for pose in blink.iter().chain(&blink) {
        session.send(frame(id));
        session.answer_face(*pose).await;
        assert_eq!(session.next_json().await["type"], "frame_processed");
        id += 1;
    }
    let mut verified = false;
    for shift in [10.0, 20.0, 30.0, 40.0] {
        // Motion events count at most one per 0.2 s of the session's own clock.
        tokio::time::sleep(Duration::from_millis(250)).await;
        session.send(frame(id));
        session.answer_face(Pose { shift, ..REST }).await;
        let answer = session.next_json().await;
        assert_eq!(answer["type"], "frame_processed");
        id += 1;
        if answer["liveness_verified"] == true {
            verified = true;
            break;
        }
    }
    assert!(verified, "two blinks and two motion events pass");
    let verdict = session.next_json().await;
    assert_eq!(verdict["type"], "liveness_passed", "{verdict}");
    assert_eq!(verdict["blinks_detected"], 2);
    assert_eq!(session.close_code().await, 1000);
    session.task.await.unwrap();
}
