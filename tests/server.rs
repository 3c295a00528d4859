//! The seed's protocol end to end: a real server on port 0, real WebSocket clients, real
//! images. Runs on the CPU backend.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use face_service::models::ModelOptions;
use face_service::server::config::{AccessConfig, ServeConfig};
use face_service::server::session::limits::SessionLimits;
use image::RgbImage;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use common::client::*;

async fn get(address: SocketAddr, path: &str) -> Value {
    serde_json::from_str(&get_text(address, path).await).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_message_gets_its_answer_in_order() {
    let server = start(config()).await;
    let mut client = connect(server.address, "test_1").await;
    let jpeg = astronaut_jpeg();
    send(&mut client, Message::text(r#"{"type":"ping"}"#)).await;
    send(&mut client, frame_message(&jpeg, 1)).await;
    send(&mut client, Message::text("not json")).await;
    send(&mut client, Message::binary(jpeg.clone())).await;
    send(
        &mut client,
        Message::text(r#"{"type":"frame","image":"%%%"}"#),
    )
    .await;
    send(
        &mut client,
        frame_message(
            &png(RgbImage::from_pixel(64, 48, image::Rgb([90, 90, 90]))),
            2,
        ),
    )
    .await;
    send(&mut client, frame_message(&jpeg[..jpeg.len() / 3], 3)).await;
    send(&mut client, frame_message(b"this is not an image", 4)).await;

    assert_eq!(next_json(&mut client).await["type"], "pong");
    let face = next_json(&mut client).await;
    assert_eq!(
        (
            face["type"].as_str(),
            face["success"].as_bool(),
            face["id"].as_u64()
        ),
        (Some("frame_processed"), Some(true), Some(1))
    );
    let bbox: Vec<f64> = serde_json::from_value(face["visual_data"]["face_bbox"].clone()).unwrap();
    // MediaPipe's face box on the astronaut photo is about (178, 72, 94, 103).
    assert!(
        (bbox[0] - 178.0).abs() < 4.0 && (bbox[1] - 72.0).abs() < 4.0,
        "{bbox:?}"
    );
    assert_eq!(
        face["visual_data"]["landmarks"].as_array().unwrap().len(),
        468
    );
    assert_eq!(next_json(&mut client).await["code"], 400);
    let binary = next_json(&mut client).await;
    assert_eq!(
        (
            binary["success"].as_bool(),
            binary["frames_processed"].as_u64()
        ),
        (Some(true), Some(2))
    );
    assert_eq!(next_json(&mut client).await["code"], 400);
    let blank = next_json(&mut client).await;
    assert_eq!(
        (blank["success"].as_bool(), blank["error"].as_str()),
        (Some(false), Some("No face detected"))
    );
    let truncated = next_json(&mut client).await;
    assert_eq!(
        (truncated["code"].as_u64(), truncated["id"].as_u64()),
        (Some(415), Some(3))
    );
    assert_eq!(next_json(&mut client).await["code"], 415);
    server.shut_down().await.unwrap();
}

/// With `refine_landmarks` (the attention model) a frame is answered with 478 points, the
/// irises last, and the status says which landmark model runs.
#[tokio::test(flavor = "multi_thread")]
async fn refined_sessions_answer_478_points_with_irises() {
    let options = ModelOptions {
        refine_landmarks: true,
        ..ModelOptions::default()
    };
    let server = start_with_models(config(), &options).await;
    let mut client = connect(server.address, "refined_1").await;
    send(&mut client, frame_message(&astronaut_jpeg(), 1)).await;
    let face = next_json(&mut client).await;
    assert_eq!(face["type"], "frame_processed", "{face}");
    let points: Vec<[f64; 3]> =
        serde_json::from_value(face["visual_data"]["landmarks"].clone()).unwrap();
    assert_eq!(points.len(), 478);
    // Each iris centre lies between the corners of its eye (33/133 and 362/263).
    for (iris, [corner_a, corner_b]) in [(468, [33, 133]), (473, [362, 263])] {
        let (low, high) = (
            points[corner_a][0].min(points[corner_b][0]),
            points[corner_a][0].max(points[corner_b][0]),
        );
        assert!(
            (low..high).contains(&points[iris][0]),
            "iris {iris} at {:?}, eye corners {low}..{high}",
            points[iris]
        );
    }
    let status = get(server.address, "/api/status/").await;
    assert_eq!(status["models"][1], "landmarks_with_attention");
    assert_eq!(status["refine_landmarks"], true);
    server.shut_down().await.unwrap();
}

/// A small real PNG whose header is patched to claim `width` x `height`.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut file = png(RgbImage::from_pixel(64, 48, image::Rgb([90, 90, 90])));
    // Signature (8), IHDR length (4), then "IHDR", width, height, ..., and the CRC of the
    // 17 bytes from "IHDR" on.
    assert_eq!(&file[12..16], b"IHDR");
    file[16..20].copy_from_slice(&width.to_be_bytes());
    file[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = file[12..29].iter().fold(!0u32, |crc, &byte| {
        (0..8).fold(crc ^ u32::from(byte), |c, _| {
            if c & 1 == 1 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            }
        })
    });
    file[29..33].copy_from_slice(&(!crc).to_be_bytes());
    file
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_frames_are_refused_before_they_cost_anything() {
    let server = start(ServeConfig {
        limits: SessionLimits {
            max_frame_bytes: 100_000,
            ..config().limits
        },
        ..config()
    })
    .await;
    let mut client = connect(server.address, "test_2").await;
    // A real JPEG whose header claims 20000x20000 pixels (its SOF0 segment patched): refused
    // from the header, before a byte of pixels is allocated (413).
    let mut bomb = astronaut_jpeg();
    let sof = bomb
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("a baseline JPEG");
    bomb[sof + 5..sof + 9].copy_from_slice(&[0x4e, 0x20, 0x4e, 0x20]);
    send(&mut client, Message::binary(bomb)).await;
    // The same with a PNG: a real one whose IHDR claims 20000x20000 (its CRC recomputed, so
    // the file is well formed up to its pixels).
    send(&mut client, Message::binary(png_claiming(20_000, 20_000))).await;
    // More bytes than the limit: refused before decoding (413).
    send(&mut client, Message::binary(vec![0u8; 100_001])).await;
    for _ in 0..3 {
        assert_eq!(next_json(&mut client).await["code"], 413);
    }
    // The session goes on.
    send(&mut client, Message::text(r#"{"type":"ping"}"#)).await;
    assert_eq!(next_json(&mut client).await["type"], "pong");
    server.shut_down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_and_budget_limits_hold_per_session() {
    let server = start(ServeConfig {
        limits: SessionLimits {
            max_fps: 2.0,
            max_frames_per_session: 3,
            ..config().limits
        },
        ..config()
    })
    .await;
    let jpeg = astronaut_jpeg();
    let mut fast = connect(server.address, "fast").await;
    for id in 0..3 {
        send(&mut fast, frame_message(&jpeg, id)).await;
    }
    let answers = [
        next_json(&mut fast).await,
        next_json(&mut fast).await,
        next_json(&mut fast).await,
    ];
    assert_eq!(answers[0]["success"], true);
    assert_eq!(answers[1]["success"], true);
    assert_eq!(
        (answers[2]["code"].as_u64(), answers[2]["id"].as_u64()),
        (Some(429), Some(2))
    );

    // Another session is not slowed by the first one's limit.
    let mut other = connect(server.address, "other").await;
    send(&mut other, frame_message(&jpeg, 9)).await;
    assert_eq!(next_json(&mut other).await["success"], true);

    // The first session's budget of three accepted frames: the fourth closes it with 4429.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    send(&mut fast, frame_message(&jpeg, 3)).await;
    assert_eq!(next_json(&mut fast).await["success"], true);
    send(&mut fast, frame_message(&jpeg, 4)).await;
    let closed = close_code(&mut fast).await;
    assert_eq!(closed, Some(4429));
    server.shut_down().await.unwrap();
}

/// The close code the server answers a connection with, before any other message.
async fn refused_with(address: SocketAddr, token: &str) -> u16 {
    let url = format!("ws://{address}/ws/auth/process-image/{token}/");
    let (mut client, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    close_code(&mut client).await.expect("a close code")
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_unknown_tokens_are_refused() {
    let server = start(config()).await;
    assert_eq!(refused_with(server.address, "bad%20token").await, 4400);
    server.shut_down().await.unwrap();

    let server = start(ServeConfig {
        access: AccessConfig {
            open_sessions: false,
            ..config().access
        },
        ..config()
    })
    .await;
    // Issued sessions open these sockets: `tests/rest.rs`.
    assert_eq!(refused_with(server.address, "never_issued").await, 4404);
    server.shut_down().await.unwrap();
}

/// Shutting down (SIGTERM in `serve`) answers the frames already taken, then tells open
/// sessions 1001 and stops accepting.
#[tokio::test(flavor = "multi_thread")]
async fn shutdown_finishes_frames_in_flight_then_closes_with_1001() {
    let server = start(config()).await;
    let address = server.address;
    let mut client = connect(address, "until_shutdown").await;
    let jpeg = astronaut_jpeg();
    send(&mut client, frame_message(&jpeg, 1)).await;
    send(&mut client, frame_message(&jpeg, 2)).await;
    // Let the server take both frames before it is told to stop.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = tokio::spawn(server.shut_down());
    for id in 1..=2 {
        let answer = next_json(&mut client).await;
        assert_eq!(
            (answer["success"].as_bool(), answer["id"].as_u64()),
            (Some(true), Some(id))
        );
    }
    assert_eq!(close_code(&mut client).await, Some(1001));
    stopping.await.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(address).await.is_err(),
        "still accepting"
    );
}

/// Sessions that send at the same time share device batches; a client that vanishes with a
/// frame queued costs the others nothing.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_sessions_share_batches_and_survive_a_vanishing_client() {
    let server = start(config()).await;
    let jpeg = astronaut_jpeg();
    let vanishing = {
        let mut client = connect(server.address, "vanishing").await;
        send(&mut client, frame_message(&jpeg, 0)).await;
        client
    };
    drop(vanishing);
    let mut sessions = Vec::new();
    for i in 0..8 {
        let address = server.address;
        let jpeg = jpeg.clone();
        sessions.push(tokio::spawn(async move {
            let mut client = connect(address, &format!("load_{i}")).await;
            for id in 0..4 {
                send(&mut client, frame_message(&jpeg, id)).await;
            }
            for id in 0..4 {
                let answer = next_json(&mut client).await;
                assert_eq!(
                    (answer["success"].as_bool(), answer["id"].as_u64()),
                    (Some(true), Some(id))
                );
            }
        }));
    }
    for session in sessions {
        session.await.unwrap();
    }
    let status = get(server.address, "/api/status/").await;
    assert!(
        status["mean_batch_size"].as_f64().unwrap() > 1.0,
        "{status}"
    );
    assert!(status["largest_batch"].as_u64().unwrap() >= 2, "{status}");
    assert_eq!(
        get(server.address, "/api/health/").await["status"],
        "healthy"
    );
    server.shut_down().await.unwrap();
}

/// A thousand connected clients that send nothing cost no device time and do not stop a
/// working session from being served; when they leave, the server forgets them.
#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_idle_connections_leave_the_server_responsive() {
    let server = start(config()).await;
    let mut idle = Vec::with_capacity(1000);
    for i in 0..1000 {
        idle.push(connect(server.address, &format!("idle_{i}")).await);
    }
    let mut working = connect(server.address, "working").await;
    send(&mut working, frame_message(&astronaut_jpeg(), 1)).await;
    assert_eq!(next_json(&mut working).await["success"], true);
    assert_eq!(
        get(server.address, "/api/status/").await["open_sessions"],
        1001
    );
    drop(idle);
    drop(working);
    let mut open = u64::MAX;
    for _ in 0..100 {
        open = get(server.address, "/api/status/").await["open_sessions"]
            .as_u64()
            .unwrap();
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        open, 0,
        "sessions still counted as open after their clients left"
    );
    server.shut_down().await.unwrap();
}

/// The load harness against a live server: the counts it reports add up.
#[tokio::test(flavor = "multi_thread")]
async fn the_load_harness_reports_counts_that_add_up() {
    let server = start(config()).await;
    let blank = png(RgbImage::from_pixel(64, 48, image::Rgb([90, 90, 90])));
    let report = face_service::bench::run(face_service::bench::BenchConfig {
        url: format!("ws://{}", server.address),
        sessions: 3,
        fps: Some(8.0),
        duration: Duration::from_secs(2),
        warmup: Duration::from_millis(300),
        frames: vec![astronaut_jpeg(), blank, b"not an image".to_vec()],
        binary: false,
        progress: false,
        api_key: None,
    })
    .await
    .unwrap();
    eprintln!("{}", report.summary());
    assert!(report.frames_sent >= 30, "{report:?}");
    // Each lane ran one session, none concluded (enrollment challenges need head turns).
    assert_eq!(report.sessions_opened, 3, "{report:?}");
    assert_eq!((report.sessions_cut, report.open_failures), (0, 0));
    let processed: u64 = report.records.iter().map(|r| r.frames_processed).sum();
    assert!(processed >= report.faces + report.no_face, "{report:?}");
    assert_eq!(report.frames_answered, report.frames_sent, "{report:?}");
    let errors: u64 = report.errors.values().sum();
    assert_eq!(
        report.faces + report.no_face + report.quality_rejected + errors,
        report.frames_answered
    );
    assert!(
        report.faces > 0 && report.no_face > 0 && report.errors.contains_key(&415),
        "{report:?}"
    );
    assert!(report.latency_ms_p50 > 0.0 && report.latency_ms_p50 <= report.latency_ms_max);
    // The server's own account of the same stretch, from its /metrics.
    let measured = report
        .server
        .as_ref()
        .expect("face-service exposes its metrics");
    assert!(
        measured.batches > 0 && measured.mean_batch_size >= 1.0,
        "{measured:?}"
    );
    let bucketed: u64 = measured.batch_sizes.iter().map(|(_, n)| n).sum();
    assert_eq!(bucketed, measured.batches);
    server.shut_down().await.unwrap();
}

/// The sweep raises sessions step by step and reports the largest load served.
#[tokio::test(flavor = "multi_thread")]
async fn a_sweep_reports_the_largest_load_served() {
    use face_service::bench::{BenchConfig, sweep};
    let server = start(config()).await;
    let config = BenchConfig {
        url: format!("ws://{}", server.address),
        sessions: 0,
        fps: Some(5.0),
        duration: Duration::from_secs(1),
        warmup: Duration::from_millis(300),
        frames: vec![astronaut_jpeg()],
        binary: true,
        progress: false,
        api_key: None,
    };
    let report = sweep::sweep(&config, &[1, 2], 10_000.0).await.unwrap();
    assert_eq!(report.steps.len(), 2);
    assert_eq!(report.largest_sessions_served, Some(2));
    let sent = report.steps[1].frames_sent as f64 / report.steps[1].seconds;
    assert_eq!(report.largest_load_served_fps, Some(sent));
    assert!(sweep::svg(&report, "test").contains("largest served: 2 sessions"));
    // A bound no server meets stops the sweep at its first step.
    let strict = sweep::sweep(&config, &[1, 2], 0.0).await.unwrap();
    assert_eq!(
        (strict.steps.len(), strict.largest_sessions_served),
        (1, None)
    );
    server.shut_down().await.unwrap();
}

/// With allowed origins set, a browser page from elsewhere cannot open a session (403); the
/// allowed origin and clients without an Origin header can.
#[tokio::test(flavor = "multi_thread")]
async fn only_allowed_origins_open_sessions() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let allowed = vec!["https://app.example.com".to_owned()];
    let server = start(ServeConfig {
        access: AccessConfig {
            allowed_origins: allowed,
            ..config().access
        },
        ..config()
    })
    .await;
    let url = format!("ws://{}/ws/auth/process-image/origin_test/", server.address);
    let with_origin = |origin: &str| {
        let mut request = url.clone().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("Origin", origin.parse().unwrap());
        request
    };
    let refused = tokio_tungstenite::connect_async(with_origin("https://evil.example.org")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("expected 403, got {:?}", other.map(|_| ())),
    }
    assert!(
        tokio_tungstenite::connect_async(with_origin("https://app.example.com"))
            .await
            .is_ok()
    );
    connect(server.address, "no_origin_header").await;
    server.shut_down().await.unwrap();
}

/// A client reconnecting with its session token (a reloaded page) takes the session over: the
/// old socket is closed normally, the new one is served.
#[tokio::test(flavor = "multi_thread")]
async fn a_duplicate_token_replaces_the_older_connection() {
    let server = start(config()).await;
    let mut old = connect(server.address, "same_token").await;
    let mut new = connect(server.address, "same_token").await;
    assert_eq!(close_code(&mut old).await, Some(1000));
    send(&mut new, Message::text(r#"{"type":"ping"}"#)).await;
    assert_eq!(next_json(&mut new).await["type"], "pong");
    server.shut_down().await.unwrap();
}
