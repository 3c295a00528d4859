//! The socket's edges, as a hostile or careless client meets them: clients that stop reading,
//! messages of every size, every way a session closes (each with its close frame), bursts, and
//! the images and encodings the seed accepts. Raw TCP where the WebSocket client library would
//! hide the behaviour.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use face_service::server::ServeConfig;
use face_service::server::session::limits::SessionLimits;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_tungstenite::tungstenite::Message;

use common::client::*;

fn with_limits(limits: SessionLimits) -> ServeConfig {
    ServeConfig { limits, ..config() }
}

async fn status(address: SocketAddr) -> Value {
    serde_json::from_str(&get_text(address, "/api/status/").await).unwrap()
}

/// Waits up to `seconds` for the server to have `sessions` open.
async fn wait_for_open_sessions(address: SocketAddr, sessions: u64, seconds: u64) {
    for _ in 0..seconds * 10 {
        if status(address).await["open_sessions"] == sessions {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "still {} sessions open",
        status(address).await["open_sessions"]
    );
}

/// A WebSocket opened by hand over raw TCP, past the server's `connection_established`.
struct RawSocket {
    read: OwnedReadHalf,
    write: OwnedWriteHalf,
}

impl RawSocket {
    async fn open(address: SocketAddr, token: &str) -> RawSocket {
        let mut tcp = TcpStream::connect(address).await.unwrap();
        let request = format!(
            "GET /ws/auth/process-image/{token}/ HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(tcp.read_u8().await.unwrap());
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        let (read, write) = tcp.into_split();
        let mut socket = RawSocket { read, write };
        let (opcode, hello) = read_frame(&mut socket.read).await;
        assert_eq!(opcode, 1, "{}", String::from_utf8_lossy(&hello));
        socket
    }

    async fn send(&mut self, frame: Vec<u8>) {
        self.write.write_all(&frame).await.unwrap();
    }

    /// Reads until the server's close frame; its code.
    async fn close_code(&mut self) -> u16 {
        close_code_from(&mut self.read).await
    }
}

/// One frame as a client writes it: masked (as a client must) unless `masked` is false, the
/// last of its message when `fin`.
fn frame_bytes(opcode: u8, payload: &[u8], fin: bool, masked: bool) -> Vec<u8> {
    let mut frame = vec![if fin { 0x80 } else { 0 } | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => frame.push(mask_bit | n as u8),
        n if n <= 0xFFFF => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(mask_bit | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let key = [0x37, 0xfa, 0x21, 0x3d];
    if masked {
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        frame.extend_from_slice(payload);
    }
    frame
}

/// The next frame from the server: its opcode and payload.
async fn read_frame(read: &mut OwnedReadHalf) -> (u8, Vec<u8>) {
    let first = read.read_u8().await.unwrap();
    let len = match read.read_u8().await.unwrap() & 0x7F {
        126 => u64::from(read.read_u16().await.unwrap()),
        127 => read.read_u64().await.unwrap(),
        n => u64::from(n),
    };
    let mut payload = vec![0; len as usize];
    read.read_exact(&mut payload).await.unwrap();
    (first & 0x0F, payload)
}

async fn close_code_from(read: &mut OwnedReadHalf) -> u16 {
    loop {
        let (opcode, payload) = tokio::time::timeout(Duration::from_secs(20), read_frame(read))
            .await
            .expect("a close frame within 20 s");
        if opcode == 8 {
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_is_dropped_and_others_go_on() {
    let server = start(with_limits(SessionLimits {
        send_timeout_secs: 1,
        ..config().limits
    }))
    .await;
    // A socket with a small receive buffer that sends pings and never reads the pongs: once
    // the kernel's buffers are full, the server's sends block.
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4096).unwrap();
    let tcp = tcp.connect(server.address).await.unwrap();
    let url = format!("ws://{}/ws/auth/process-image/deaf_1/", server.address);
    let (deaf, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    let (mut deaf_sink, _deaf_stream) = deaf.split();
    let flood = tokio::spawn(async move {
        let ping = Message::text(r#"{"type":"ping"}"#);
        for _ in 0..5_000_000 {
            if deaf_sink.feed(ping.clone()).await.is_err() {
                return;
            }
        }
        let _ = deaf_sink.flush().await;
    });
    let mut reader = connect(server.address, "reader_1").await;
    wait_for_open_sessions(server.address, 1, 60).await;
    // The other session was never held up.
    send(&mut reader, frame_message(&astronaut_jpeg(), 1)).await;
    assert_eq!(next_json(&mut reader).await["success"], true);
    flood.abort();
    server.shut_down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_over_the_limit_are_refused_at_every_size() {
    let limits = SessionLimits {
        max_frame_bytes: 1 << 20,
        ..config().limits
    };
    let server = start(with_limits(limits)).await;
    let mut client = connect(server.address, "sizes_1").await;
    // Just over the frame limit but within a message: 413, and the session goes on.
    send(&mut client, Message::binary(vec![0u8; (1 << 20) + 1])).await;
    assert_eq!(next_json(&mut client).await["code"], 413);
    let base64 = "A".repeat(((1 << 20) + 3000) / 3 * 4);
    send(
        &mut client,
        Message::text(json!({ "image": base64 }).to_string()),
    )
    .await;
    assert_eq!(next_json(&mut client).await["code"], 413);
    send(&mut client, Message::text(r#"{"type":"ping"}"#)).await;
    assert_eq!(next_json(&mut client).await["type"], "pong");

    // Past what any message can hold, text or binary, in one frame or in fragments: 1009,
    // with its close frame, read while the client is still sending.
    let fragments: Vec<Vec<u8>> = (0..20)
        .map(|i| {
            frame_bytes(
                if i == 0 { 1 } else { 0 },
                &vec![b'A'; 1 << 20],
                i == 19,
                true,
            )
        })
        .collect();
    let messages = [
        vec![frame_bytes(2, &vec![0; 2 << 20], true, true)],
        vec![frame_bytes(1, &vec![b'A'; 20 << 20], true, true)],
        vec![frame_bytes(2, &vec![0; 70 << 20], true, true)],
        fragments,
    ];
    for (i, frames) in messages.into_iter().enumerate() {
        let RawSocket {
            mut read,
            mut write,
        } = RawSocket::open(server.address, &format!("big_{i}")).await;
        let writer = tokio::spawn(async move {
            for frame in frames {
                if write.write_all(&frame).await.is_err() {
                    break;
                }
            }
            write
        });
        assert_eq!(close_code_from(&mut read).await, 1009, "message {i}");
        writer.abort();
    }

    // A larger --max-frame-bytes raises the WebSocket library's limits with it.
    let raised = start(with_limits(SessionLimits {
        max_frame_bytes: 8 << 20,
        ..config().limits
    }))
    .await;
    let mut client = connect(raised.address, "raised_1").await;
    send(&mut client, Message::binary(vec![0u8; 6 << 20])).await;
    assert_eq!(next_json(&mut client).await["code"], 415);
    raised.shut_down().await.unwrap();
    server.shut_down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn every_close_is_a_close_frame_with_its_code() {
    let server = start(with_limits(SessionLimits {
        session_timeout_secs: 1,
        max_frames_per_session: 2,
        ..config().limits
    }))
    .await;
    // Idle past the session timeout: 4401.
    let mut idle = RawSocket::open(server.address, "idle_1").await;
    assert_eq!(idle.close_code().await, 4401);
    // A client frame without a mask breaks the protocol: 1002.
    let mut unmasked = RawSocket::open(server.address, "unmasked_1").await;
    unmasked
        .send(frame_bytes(1, br#"{"type":"ping"}"#, true, false))
        .await;
    assert_eq!(unmasked.close_code().await, 1002, "unmasked");
    // A text message that is not UTF-8: 1007.
    let mut latin1 = RawSocket::open(server.address, "latin1_1").await;
    latin1
        .send(frame_bytes(1, b"{\"image\":\"\xe9\"}", true, true))
        .await;
    assert_eq!(latin1.close_code().await, 1007);
    // The client's own close is answered with a close frame.
    let mut leaving = RawSocket::open(server.address, "leaving_1").await;
    leaving
        .send(frame_bytes(8, &1000u16.to_be_bytes(), true, true))
        .await;
    assert_eq!(leaving.close_code().await, 1000);
    // Malformed messages spend the frame budget as frames do: two answers, then 4429.
    let mut garbage = connect(server.address, "garbage_1").await;
    for _ in 0..3 {
        send(&mut garbage, Message::text("not json")).await;
    }
    assert_eq!(next_json(&mut garbage).await["code"], 400);
    assert_eq!(next_json(&mut garbage).await["code"], 400);
    assert_eq!(close_code(&mut garbage).await, Some(4429));
    wait_for_open_sessions(server.address, 0, 10).await;
    server.shut_down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_is_the_clients_doing_429_not_the_servers_overload() {
    let server = start(config()).await;
    let mut client = connect(server.address, "burst_1").await;
    let jpeg = astronaut_jpeg();
    for id in 0..20 {
        send(&mut client, frame_message(&jpeg, id)).await;
    }
    let mut codes = Vec::new();
    for _ in 0..20 {
        let answer = next_json(&mut client).await;
        codes.push(answer["code"].as_u64().unwrap_or(200));
    }
    assert!(codes.contains(&429), "{codes:?}");
    assert!(!codes.contains(&503), "{codes:?}");
    assert_eq!(status(server.address).await["frames_rejected_overload"], 0);
    server.shut_down().await.unwrap();
}

/// The face box the server answers for one frame message.
async fn face_box(client: &mut Client, message: Message) -> Vec<f64> {
    send(client, message).await;
    let answer = next_json(client).await;
    assert_eq!(answer["success"], true, "{answer}");
    answer["visual_data"]["face_bbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn images_and_encodings_the_seed_accepts_are_accepted() {
    let server = start(config()).await;
    let jpeg = astronaut_jpeg();
    let mut client = connect(server.address, "seedlike_1").await;
    let upright = face_box(&mut client, frame_message(&jpeg, 1)).await;

    // Base64 wrapped at 76 columns, of a JPEG with bytes after its end marker.
    let padded = [&jpeg[..], b"\r\n"].concat();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&padded);
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(76)
        .map(|line| std::str::from_utf8(line).unwrap())
        .collect();
    let wrapped = json!({ "type": "frame", "image": format!("data:image/jpeg;base64,{}", lines.join("\r\n")) });
    let mut fresh = connect(server.address, "seedlike_2").await;
    let same = face_box(&mut fresh, Message::text(wrapped.to_string())).await;
    assert_eq!(same, upright);

    // A phone photo stored on its side with Exif orientation 6 (turn 90 degrees clockwise to
    // view): the face is found where it is in the upright picture.
    let sideways = image::imageops::rotate270(&astronaut());
    let mut sideways_jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut sideways_jpeg, 90)
        .encode_image(&sideways)
        .unwrap();
    let tagged = exif_orientation_6(&sideways_jpeg);
    let mut phone = connect(server.address, "seedlike_3").await;
    let turned = face_box(&mut phone, Message::binary(tagged)).await;
    for (a, b) in turned.iter().zip(&upright) {
        assert!((a - b).abs() < 8.0, "{turned:?} vs {upright:?}");
    }
    server.shut_down().await.unwrap();
}

/// `jpeg` with an Exif APP1 segment saying orientation 6.
fn exif_orientation_6(jpeg: &[u8]) -> Vec<u8> {
    let mut tiff = b"II*\0\x08\0\0\0".to_vec();
    for field in [
        &1u16.to_le_bytes()[..],
        &0x0112u16.to_le_bytes(),
        &3u16.to_le_bytes(),
    ] {
        tiff.extend_from_slice(field);
    }
    tiff.extend_from_slice(&1u32.to_le_bytes());
    tiff.extend_from_slice(&[6, 0, 0, 0]);
    tiff.extend_from_slice(&0u32.to_le_bytes());
    let segment = [&b"Exif\0\0"[..], &tiff].concat();
    let length = ((segment.len() + 2) as u16).to_be_bytes();
    [&jpeg[..2], &[0xFF, 0xE1], &length, &segment, &jpeg[2..]].concat()
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_request_heads_are_cut_off_and_crowd_nobody_out() {
    let mut serve = config();
    serve.connections.header_timeout_secs = 1;
    serve.connections.max_pending_connections = 64;
    let server = start(serve).await;
    // Slowloris: 300 connections that start a request and never finish its head.
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut tcp = TcpStream::connect(server.address).await.unwrap();
        tcp.write_all(b"GET /api/health/ HTTP/1.1\r\nHost: slow\r\n")
            .await
            .unwrap();
        slow.push(tcp);
    }
    // Meanwhile real clients get through.
    let health = get_text(server.address, "/api/health/").await;
    assert!(health.contains("healthy"), "{health}");
    let mut client = connect(server.address, "under_attack").await;
    send(&mut client, Message::text(r#"{"type":"ping"}"#)).await;
    assert_eq!(next_json(&mut client).await["type"], "pong");
    // And every slow connection is closed: crowded out, or past its deadline.
    for mut tcp in slow {
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "a slow connection still open after 5 s");
    }
    server.shut_down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn frames_dear_to_decode_are_held_to_the_sessions_pixels_per_second() {
    // Two 512x512 frames a second at most.
    let server = start(with_limits(SessionLimits {
        max_pixels_per_second: 2 * 512 * 512,
        ..config().limits
    }))
    .await;
    let jpeg = astronaut_jpeg();
    let mut costly = connect(server.address, "costly_1").await;
    for id in 0..3 {
        send(&mut costly, frame_message(&jpeg, id)).await;
    }
    let answers = [
        next_json(&mut costly).await,
        next_json(&mut costly).await,
        next_json(&mut costly).await,
    ];
    assert_eq!(answers[0]["success"], true);
    assert_eq!(answers[1]["success"], true);
    assert_eq!(answers[2]["code"], 429);
    assert!(
        answers[2]["error"].as_str().unwrap().contains("pixels"),
        "{}",
        answers[2]
    );
    // Another session has its own allowance.
    let mut other = connect(server.address, "costly_2").await;
    send(&mut other, frame_message(&jpeg, 9)).await;
    assert_eq!(next_json(&mut other).await["success"], true);
    server.shut_down().await.unwrap();
}
