//! A seed client's side of the protocol for tests: a real server on port 0 with the CPU
//! backend, real WebSocket clients, and real images encoded as clients send them.

use std::io::Cursor;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use face_service::device::ComputeDevice;
use face_service::engine::EngineConfig;
use face_service::models::{FaceModels, ModelOptions};
use face_service::server::session::limits::SessionLimits;
use face_service::server::{self, Running, ServeConfig};
use face_service::store::StoreConfig;
use image::{ImageFormat, RgbImage};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use super::fixtures;

pub type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A server for tests: any free port, one CPU worker, frames that never miss their deadline,
/// no rate or budget limit, and a store of its own in cargo's scratch directory for tests;
/// the rest as `serve`'s defaults.
pub fn config() -> ServeConfig {
    let data_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("server-{}", uuid::Uuid::new_v4()));
    ServeConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        engine: EngineConfig {
            max_batch: 16,
            cpu_workers: 1,
            max_queue_delay_ms: 20,
            queue_capacity: 64,
            frame_deadline_ms: 30_000,
            ..EngineConfig::default()
        },
        limits: SessionLimits {
            max_fps: 1000.0,
            max_frames_per_session: 0,
            session_timeout_secs: 60,
            ..SessionLimits::default()
        },
        store: StoreConfig {
            data_dir,
            ..StoreConfig::default()
        },
        ..ServeConfig::default()
    }
}

pub async fn start(config: ServeConfig) -> Running {
    start_with_models(config, &ModelOptions::default()).await
}

pub async fn start_with_models(config: ServeConfig, options: &ModelOptions) -> Running {
    let models = FaceModels::load(ComputeDevice::cpu(), options)
        .and_then(|models| models.with_identity_models(options))
        .unwrap();
    server::start(config, models).await.unwrap()
}

/// The astronaut photo (512x512, one face).
pub fn astronaut() -> RgbImage {
    let path = fixtures().join("face_mesh/astronaut.png");
    image::open(path).unwrap().to_rgb8()
}

pub fn astronaut_jpeg() -> Vec<u8> {
    let mut bytes = Vec::new();
    astronaut()
        .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Jpeg)
        .unwrap();
    bytes
}

pub fn png(image: RgbImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
        .unwrap();
    bytes
}

pub fn frame_message(image: &[u8], id: u64) -> Message {
    let data = base64::engine::general_purpose::STANDARD.encode(image);
    Message::text(
        json!({ "type": "frame", "image": format!("data:image/jpeg;base64,{data}"), "id": id })
            .to_string(),
    )
}

pub async fn connect(address: SocketAddr, token: &str) -> Client {
    connect_with(address, token, "").await.0
}

/// Opens a session with `query` on the URL (`""` or e.g. `"?session_type=authentication"`);
/// returns the client and the server's `connection_established`.
pub async fn connect_with(address: SocketAddr, token: &str, query: &str) -> (Client, Value) {
    let url = format!("ws://{address}/ws/auth/process-image/{token}/{query}");
    let (mut client, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let hello = next_json(&mut client).await;
    assert_eq!(hello["type"], "connection_established");
    assert_eq!(hello["session_token"], token);
    (client, hello)
}

/// `image` as a JPEG of the given quality.
pub fn jpeg(image: &RgbImage, quality: u8) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality)
        .encode_image(image)
        .unwrap();
    bytes
}

pub async fn next_json(client: &mut Client) -> Value {
    use futures_util::StreamExt;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(60), client.next())
            .await
            .expect("an answer within a minute")
            .expect("the socket is open")
            .unwrap();
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

pub async fn send(client: &mut Client, message: Message) {
    use futures_util::SinkExt;
    client.send(message).await.unwrap();
}

/// Reads until the server's close frame and returns its code.
pub async fn close_code(client: &mut Client) -> Option<u16> {
    use futures_util::StreamExt;
    loop {
        match client.next().await {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// The body of a plain HTTP/1.1 GET.
pub async fn get_text(address: SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response.split_once("\r\n\r\n").unwrap().1.to_owned()
}

/// The messages that end a session issued over REST.
pub const VERDICTS: [&str; 4] = [
    "enrollment_complete",
    "enrollment_failed",
    "authentication_complete",
    "authentication_timeout",
];

/// Streams `frames` to the session at `url` (JSON frames, as the seed's clients send them),
/// each after the last one's answer and at most one per `pace`, until the session's verdict;
/// returns it and the close code. A refused frame fails the test.
pub async fn run_until_verdict(
    url: &str,
    frames: &[Vec<u8>],
    pace: Option<Duration>,
) -> (Value, Option<u16>) {
    use futures_util::SinkExt;
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(
        next_json(&mut socket).await["type"],
        "connection_established"
    );
    // After a slow answer the next frame waits a whole `pace` again: tokio's default would
    // send the ticks missed meanwhile in a burst, faster than the pace (and the server's
    // rate limit), where a camera page sends at most its frame rate.
    let mut ticks = pace.map(|pace| {
        let mut ticks = tokio::time::interval(pace);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks
    });
    let is_verdict =
        |message: &Value| VERDICTS.contains(&message["type"].as_str().unwrap_or_default());
    for (id, frame) in frames.iter().enumerate() {
        if let Some(ticks) = &mut ticks {
            ticks.tick().await;
        }
        // The server stops reading once it has a verdict: a frame sent then goes unread.
        let _ = socket.send(frame_message(frame, id as u64)).await;
        let message = next_json(&mut socket).await;
        if is_verdict(&message) {
            return (message, close_code(&mut socket).await);
        }
        assert_ne!(message["type"], "error", "frame {id}: {message}");
    }
    let message = next_json(&mut socket).await;
    assert!(
        is_verdict(&message),
        "the frames ran out before a verdict: {message}"
    );
    (message, close_code(&mut socket).await)
}
