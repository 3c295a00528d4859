//! The device time an identity session costs over a liveness-only one. A real server on
//! loopback (CPU backend, one worker, SQLite) gets the carphone clip, 640x480 JPEG, as an
//! issued enrollment and an issued verification, each until its verdict; then the same frames
//! as an open-mode (liveness-only) session. Per session: the sum of its frames'
//! `timings.inference_ms` (the device's time on each frame: the face mesh, and the template
//! on the frames that ask one), the best of `RUNS`; the liveness-only figure is its mean per
//! frame times the identity session's frames (an open session may pass, and end, sooner).
//!
//!     cargo bench --bench identity

use face_service::bench::footage::carphone_jpegs;
use face_service::device::ComputeDevice;
use face_service::engine::EngineConfig;
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
        .and_then(|models| models.with_recognizer(&ModelOptions::default()))
        .unwrap();
    let running = server::start(config, models).await.unwrap();
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
    }
    running.shut_down().await.unwrap();
    let _ = std::fs::remove_dir_all(data_dir);
}
