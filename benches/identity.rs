//! The device time an identity session costs over a liveness-only one. A real server on
//! loopback (CPU backend, one worker, SQLite) gets the carphone clip, 640x480 JPEG, as an
//! issued enrollment and an issued verification, each until its verdict; then the same frames
//! as an open-mode (liveness-only) session. Per session: the sum of its frames'
//! `timings.inference_ms` (the device's time on each frame: the face mesh, and the template
//! on the frames that ask one), the best of `RUNS`; the liveness-only figure is its mean per
//! frame times the identity session's frames (an open session may pass, and end, sooner).
//!
//! Then what the anti-spoofing check adds to a verification: the same clip through the engine
//! directly (one CPU worker), each frame asking a template as a session does (every
//! `TEMPLATE_EVERY`th), without and with the anti-spoofing scores a session asks for
//! (`SpoofScores`: the first frame, then one in `CHECK_EVERY`), over the frames the
//! verification took; each frame's best time over seven runs of each.
//!
//!     cargo bench --bench identity

use face_service::bench::footage::carphone_jpegs;
use face_service::device::ComputeDevice;
use face_service::engine::{Analyze, Engine, EngineConfig, Frame, FrameJob, Outcome, Tracking};
use face_service::identity::session_faces::TEMPLATE_EVERY;
use face_service::identity::spoof_scores::SpoofScores;
use face_service::models::{FaceModels, ModelOptions};
use face_service::server::session::limits::SessionLimits;
use face_service::server::{self, ServeConfig};
use face_service::store::StoreConfig;
use face_service::tenants::NewClient;
use face_service::tenants::tiers::Tier;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const RUNS: usize = 3;

/// What one session cost: frames answered, and the device's milliseconds over them.
struct Cost {
    frames: usize,
    device_ms: f64,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next JSON message; `None` once the socket closes.
async fn next_message(socket: &mut Socket) -> Option<Value> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => return Some(serde_json::from_str(&text).unwrap()),
            Some(Ok(Message::Close(_)) | Err(_)) | None => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// Streams `frames`, each after the last one's answer, until the server's verdict (returned)
/// or the end of the frames.
async fn stream(url: &str, frames: &[Vec<u8>]) -> (Cost, Option<Value>) {
    use base64::Engine as _;
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    next_message(&mut socket)
        .await
        .expect("connection_established");
    let mut cost = Cost {
        frames: 0,
        device_ms: 0.0,
    };
    for frame in frames {
        let data = base64::engine::general_purpose::STANDARD.encode(frame);
        let message = json!({ "type": "frame", "image": format!("data:image/jpeg;base64,{data}") });
        if socket
            .send(Message::text(message.to_string()))
            .await
            .is_err()
        {
            break;
        }
        let Some(answer) = next_message(&mut socket).await else {
            break;
        };
        match answer["timings"]["inference_ms"].as_f64() {
            Some(ms) => {
                cost.frames += 1;
                cost.device_ms += ms;
            }
            None => return (cost, Some(answer)),
        }
    }
    (cost, None)
}

#[tokio::main]
async fn main() {
    let data_dir = std::env::temp_dir().join(format!("identity-bench-{}", uuid::Uuid::new_v4()));
    let config = ServeConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        engine: EngineConfig {
            cpu_workers: 1,
            ..EngineConfig::default()
        },
        // Frames go as fast as they are answered.
        limits: SessionLimits {
            max_fps: 1000.0,
            max_pixels_per_second: u64::MAX,
            ..SessionLimits::default()
        },
        store: StoreConfig {
            data_dir: data_dir.clone(),
            ..StoreConfig::default()
        },
        ..ServeConfig::default()
    };
    let models = FaceModels::load(ComputeDevice::cpu(), &ModelOptions::default())
        .and_then(|models| models.with_identity_models(&ModelOptions::default()))
        .unwrap();
    let running = server::start(config, models.clone()).await.unwrap();
    let client = running
        .tenants
        .create_client(&NewClient {
            name: "bench".into(),
            tier: Tier::Enterprise,
            per_hour: None,
            per_day: None,
        })
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://{}", running.address);
    let post = |path: &str, body: Value| {
        http.post(format!("{base}{path}"))
            .header("X-API-Key", &client.api_key)
            .json(&body)
            .send()
    };
    let clip = carphone_jpegs(640, 480, 90).unwrap();
    let socket_url =
        |token: &str| format!("ws://{}/ws/auth/process-image/{token}/", running.address);

    let mut verification_frames = 0;
    println!("| session | frames | liveness only, device ms | with identity, device ms | extra |");
    println!("|---|---:|---:|---:|---:|");
    for (kind, path) in [
        ("enrollment", "/api/auth/enrollment/"),
        ("verification", "/api/auth/authentication/"),
    ] {
        let (mut best_identity, mut best_liveness) = (f64::MAX, f64::MAX);
        let mut frames = 0;
        for run in 0..RUNS {
            let user = format!("{kind}-{run}");
            let created = post("/api/clients/users/", json!({ "external_user_id": user }))
                .await
                .unwrap();
            assert_eq!(created.status(), 201);
            if kind == "verification" {
                let session: Value = post("/api/auth/enrollment/", json!({ "user_id": user }))
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let (_, verdict) = stream(
                    &socket_url(session["session_token"].as_str().unwrap()),
                    &clip,
                )
                .await;
                assert_eq!(verdict.unwrap()["type"], "enrollment_complete");
            }
            let session: Value = post(path, json!({ "user_id": user }))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let token = session["session_token"].as_str().unwrap();
            let (identity, verdict) = stream(&socket_url(token), &clip).await;
            let verdict = verdict.expect("a verdict");
            assert!(
                verdict["type"] == "enrollment_complete" || verdict["authenticated"] == true,
                "{verdict}"
            );
            // The same frames, liveness alone: an open-mode enrollment, whose challenges the
            // clip (no head turns) never completes, so that it runs them all.
            let open = socket_url(&format!("bench_{kind}_{run}"));
            let (liveness, _) = stream(&open, &clip[..identity.frames]).await;
            frames = identity.frames;
            best_identity = best_identity.min(identity.device_ms);
            let per_frame = liveness.device_ms / liveness.frames as f64;
            best_liveness = best_liveness.min(per_frame * identity.frames as f64);
            // Gone with its templates, so that the next run's face is nobody's duplicate.
            let deleted = http
                .delete(format!("{base}/api/clients/users/{user}/"))
                .header("X-API-Key", &client.api_key)
                .send()
                .await
                .unwrap();
            assert_eq!(deleted.status(), 204);
        }
        println!(
            "| {kind} | {frames} | {best_liveness:.0} | {best_identity:.0} | {:+.0}% |",
            100.0 * (best_identity / best_liveness - 1.0)
        );
        verification_frames = frames;
    }
    running.shut_down().await.unwrap();
    spoof_check_cost(models, &clip[..verification_frames]).await;
    let _ = std::fs::remove_dir_all(data_dir);
}

/// The device's milliseconds on each of `frames`, templates asked as a session asks them, and
/// anti-spoofing scores too where `spoof_check`; and the scores taken.
async fn engine_times(engine: &Engine, frames: &[Vec<u8>], spoof_check: bool) -> (Vec<f64>, usize) {
    let mut tracking = Tracking::default();
    let mut spoof = SpoofScores::default();
    let mut device_ms = Vec::with_capacity(frames.len());
    for (index, bytes) in frames.iter().enumerate() {
        let wants_spoof_score = spoof_check && spoof.wants_score();
        let reply = engine
            .analyze(FrameJob {
                frame: Frame::Encoded(bytes.clone()),
                tracking,
                session: 1,
                received: std::time::Instant::now(),
                wants_template: index % TEMPLATE_EVERY == 0,
                wants_spoof_score,
            })
            .await
            .unwrap();
        tracking = reply.tracking;
        let Outcome::Done(analysis) = reply.outcome else {
            panic!("the clip's frames all run");
        };
        device_ms.push(analysis.inference.as_secs_f64() * 1e3);
        match analysis.spoof_score {
            Some(score) => spoof.take(score),
            None => spoof.pass_frame(),
        }
    }
    (device_ms, spoof.count())
}

/// Both ways `SPOOF_RUNS` times, alternating; each frame's time is its best over the runs, so
/// that what another process takes of the core now and then is left out of both.
async fn spoof_check_cost(models: FaceModels, frames: &[Vec<u8>]) {
    const SPOOF_RUNS: usize = 7;
    let engine = Engine::start(
        models,
        &EngineConfig {
            cpu_workers: 1,
            ..EngineConfig::default()
        },
    );
    let mut without = vec![f64::MAX; frames.len()];
    let mut with = vec![f64::MAX; frames.len()];
    let mut checks = 0;
    for _ in 0..SPOOF_RUNS {
        for (best, spoof_check) in [(&mut without, false), (&mut with, true)] {
            let (times, count) = engine_times(&engine, frames, spoof_check).await;
            for (best, time) in best.iter_mut().zip(times) {
                *best = best.min(time);
            }
            if spoof_check {
                checks = count;
            }
        }
    }
    let (without, with): (f64, f64) = (without.iter().sum(), with.iter().sum());
    println!();
    println!(
        "| verification frames | frames judged | device ms, templates only | with anti-spoofing | extra |"
    );
    println!("|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {checks} | {without:.0} | {with:.0} | {:+.1}% |",
        frames.len(),
        100.0 * (with / without - 1.0)
    );
}
