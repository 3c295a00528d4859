//! Liveness end to end, as a seed client sees it: real footage streamed through a real
//! WebSocket to `face-service serve` on the CPU backend.
//!
//! Footage: the carphone clip (a real person talking: three blinks and three mouth openings)
//! and the astronaut photo. No real footage of deliberate head turns ships in the packages at
//! hand, so turns are built from the photo by a geometric transform: a smooth sideways
//! displacement of the face inside its own outline (nose, eyes and mouth move, the jaw line
//! stays), which MediaPipe's own model reads as a yaw of about 10.5 degrees either way (checked
//! with mediapipe 0.10.21 while writing this test). Real turns go further; these tests set the
//! turn threshold to 8 degrees so that the synthetic ones count.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use face_service::bench::footage::carphone_clip;
use face_service::server::config::{LivenessConfig, ServeConfig};
use image::RgbImage;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use common::client::*;
use common::fixtures;

/// The astronaut's face box as MediaPipe finds it: centre and size in pixels.
const FACE_CENTRE: (f32, f32) = (225.1, 123.7);
const FACE_SIZE: (f32, f32) = (93.6, 103.5);

/// The astronaut with her face turned: features pushed sideways by `shift` face widths at the
/// centre, fading out (Gaussian) towards the face's outline. Positive `shift` moves the nose
/// to the right of the image: a turn to her own left.
fn turned(photo: &RgbImage, shift: f32) -> RgbImage {
    let (cx, cy) = FACE_CENTRE;
    let (fw, fh) = FACE_SIZE;
    RgbImage::from_fn(photo.width(), photo.height(), |x, y| {
        let (x, y) = (x as f32, y as f32);
        let fade =
            (-(((x - cx) / (0.35 * fw)).powi(2) + ((y - cy) / (0.5 * fh)).powi(2)) / 2.0).exp();
        bilinear(photo, x - shift * fw * fade, y)
    })
}

/// The photo moved by whole pixels, edges repeated: a printed photo waved about.
fn moved(photo: &RgbImage, dx: i64, dy: i64) -> RgbImage {
    let clamp = |v: i64, size: u32| v.clamp(0, size as i64 - 1) as u32;
    RgbImage::from_fn(photo.width(), photo.height(), |x, y| {
        *photo.get_pixel(
            clamp(x as i64 - dx, photo.width()),
            clamp(y as i64 - dy, photo.height()),
        )
    })
}

fn bilinear(image: &RgbImage, x: f32, y: f32) -> image::Rgb<u8> {
    let max_x = image.width() as f32 - 1.0;
    let max_y = image.height() as f32 - 1.0;
    let (x, y) = (x.clamp(0.0, max_x), y.clamp(0.0, max_y));
    let (x0, y0) = (x.floor(), y.floor());
    let (x1, y1) = ((x0 + 1.0).min(max_x), (y0 + 1.0).min(max_y));
    let (fx, fy) = (x - x0, y - y0);
    let at = |x: f32, y: f32| image.get_pixel(x as u32, y as u32).0.map(f32::from);
    let (a, b, c, d) = (at(x0, y0), at(x1, y0), at(x0, y1), at(x1, y1));
    image::Rgb(std::array::from_fn(|i| {
        let top = a[i] + (b[i] - a[i]) * fx;
        let bottom = c[i] + (d[i] - c[i]) * fx;
        (top + (bottom - top) * fy).round() as u8
    }))
}

/// Sends one frame as a seed client does (JSON, base64 data URL) and returns every message
/// up to and including its answer, and the close code if the server then closed.
async fn exchange(client: &mut Client, jpeg: &[u8], id: u64) -> (Vec<Value>, Option<u16>) {
    send(client, frame_message(jpeg, id)).await;
    let mut messages = vec![next_json(client).await];
    if let Some(kind @ ("liveness_passed" | "authentication_timeout")) =
        messages[0]["type"].as_str().map(str::to_owned).as_deref()
    {
        unreachable!("{kind} came before the frame's answer");
    }
    // A verdict follows the answer that reached it, then the close.
    if messages[0]["liveness_verified"] == true {
        messages.push(next_json(client).await);
        return (messages, close_code(client).await);
    }
    (messages, None)
}

#[tokio::test(flavor = "multi_thread")]
async fn carphone_blinks_over_a_websocket_match_the_seed_rule_on_mediapipes_landmarks() {
    let reference: Value = serde_json::from_slice(
        &std::fs::read(fixtures().join("liveness/carphone_blinks.json")).unwrap(),
    )
    .unwrap();
    let server = start(config()).await;
    let mut client = connect(server.address, "carphone").await;
    // Lossless frames, so that the server sees the pixels MediaPipe saw.
    for (index, frame) in carphone_clip(640, 480).unwrap().into_iter().enumerate() {
        send(&mut client, Message::binary(png(frame))).await;
        let answer = next_json(&mut client).await;
        let expected = &reference["frames"][index];
        assert_eq!(answer["type"], "frame_processed", "frame {index}: {answer}");
        assert_eq!(
            (
                &answer["indicators"]["eyes_closed"],
                &answer["blinks_detected"]
            ),
            (&expected["eyes_closed"], &expected["blinks"]),
            "frame {index}: (eyes closed, blinks so far)"
        );
        assert_eq!(
            answer["mouth_openings"], expected["mouth_openings"],
            "frame {index}"
        );
    }
    assert_eq!(reference["blinks"], 3);
    server.shut_down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_seed_client_enrolls_end_to_end() {
    let server = start(ServeConfig {
        liveness: LivenessConfig {
            turn_degrees: 8.0,
            centre_degrees: 4.0,
            ..config().liveness
        },
        ..config()
    })
    .await;
    let (mut client, hello) = connect_with(server.address, "enroll_1", "").await;
    assert_eq!(hello["session_type"], "enrollment");
    let sequence = [
        "blink",
        "open_mouth",
        "turn_left",
        "turn_right",
        "hold_still",
    ];
    assert_eq!(hello["challenges"], serde_json::json!(sequence));

    // The person blinks and talks (the clip), turns left, comes back, turns right, comes
    // back, and looks at the camera.
    let photo = astronaut();
    let mut frames: Vec<RgbImage> = carphone_clip(640, 480).unwrap();
    let stills = |n| std::iter::repeat_n(photo.clone(), n);
    frames.extend(stills(3));
    frames.extend(std::iter::repeat_n(turned(&photo, 0.3), 4));
    frames.extend(stills(3));
    frames.extend(std::iter::repeat_n(turned(&photo, -0.3), 4));
    frames.extend(stills(12));

    let mut completed_before: Vec<Value> = Vec::new();
    let mut score_before = 0.0;
    let mut verdict = None;
    for (index, frame) in frames.iter().enumerate() {
        let (messages, closed) = exchange(&mut client, &jpeg(frame, 95), index as u64).await;
        let answer = &messages[0];
        assert_eq!(answer["id"], index as u64);
        if answer["success"] == true {
            // Progress only grows, challenge by challenge, in the seed's order.
            let completed = answer["challenge"]["completed"].as_array().unwrap().clone();
            assert!(
                completed.starts_with(&completed_before),
                "frame {index}: {answer}"
            );
            assert_eq!(completed, sequence[..completed.len()], "frame {index}");
            let score = answer["liveness_score"].as_f64().unwrap();
            assert!(score >= score_before, "frame {index}: the score fell");
            (completed_before, score_before) = (completed, score);
        }
        if let Some(code) = closed {
            verdict = Some((index, messages[1].clone(), code));
            break;
        }
    }
    let (index, passed, code) = verdict.expect("the enrollment passed");
    assert_eq!(passed["type"], "liveness_passed");
    assert_eq!(passed["session_token"], "enroll_1");
    assert!((passed["liveness_score"].as_f64().unwrap() - 1.0).abs() < 1e-6);
    assert!(passed["blinks_detected"].as_u64().unwrap() >= 1);
    assert_eq!(code, 1000);
    // It passed on holding still: eight still frames after the last turn's return.
    assert!(index >= frames.len() - 12 + 7, "passed at frame {index}");
    let status: Value =
        serde_json::from_str(&get_text(server.address, "/api/status/").await).unwrap();
    assert_eq!(status["liveness_passed"], 1);
    let metrics = get_text(server.address, "/metrics").await;
    assert!(metrics.contains("face_service_liveness_sessions_total{verdict=\"passed\"} 1\n"));
    server.shut_down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unusable_frame_is_rejected_with_its_reason() {
    let server = start(config()).await;
    let mut client = connect(server.address, "dark_1").await;
    let photo = astronaut();
    let dark = RgbImage::from_fn(photo.width(), photo.height(), |x, y| {
        image::Rgb(photo.get_pixel(x, y).0.map(|v| (v as f32 * 0.15) as u8))
    });
    send(&mut client, frame_message(&jpeg(&dark, 95), 1)).await;
    let rejected = next_json(&mut client).await;
    assert_eq!(
        (
            rejected["type"].as_str(),
            rejected["success"].as_bool(),
            rejected["reason"].as_str()
        ),
        (Some("frame_rejected"), Some(false), Some("too_dark")),
        "{rejected}"
    );
    assert!(rejected["error"].as_str().unwrap().contains("dark"));
    assert_eq!(
        rejected["visual_data"]["landmarks"]
            .as_array()
            .unwrap()
            .len(),
        468
    );
    // The session goes on: the same photo, well lit, is a face.
    send(&mut client, frame_message(&jpeg(&photo, 95), 2)).await;
    let answer = next_json(&mut client).await;
    assert_eq!(answer["success"], true, "{answer}");
    assert!(answer["quality_score"].as_f64().unwrap() > 0.5);
    server.shut_down().await.unwrap();
}

/// Streams `frames` at 9.5 fps (just under the seed's 10) for as long as they last, one
/// answer per frame, until the server ends the session on its own (an authentication's time
/// running out may come between frames); returns every message and the close code if any.
async fn stream_at_camera_rate(
    address: SocketAddr,
    token: &str,
    query: &str,
    frames: Vec<Vec<u8>>,
) -> (Vec<Value>, Option<u16>) {
    use futures_util::SinkExt;
    let (mut client, _) = connect_with(address, token, query).await;
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / 9.5));
    let mut messages = Vec::new();
    for (index, frame) in frames.iter().enumerate() {
        tokio::select! {
            _ = ticks.tick() => {}
            unasked = next_json(&mut client) => {
                messages.push(unasked);
                break;
            }
        }
        if client
            .send(frame_message(frame, index as u64))
            .await
            .is_err()
        {
            break;
        }
        let answer = next_json(&mut client).await;
        let ends = answer["type"] == "authentication_timeout";
        messages.push(answer);
        if ends {
            break;
        }
    }
    let (rest, closed) = until_closed(&mut client).await;
    messages.extend(rest);
    (messages, closed)
}

/// Whatever the server still sends, up to its close frame (`None` if it did not close).
async fn until_closed(client: &mut Client) -> (Vec<Value>, Option<u16>) {
    use futures_util::StreamExt;
    let mut messages = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_millis(500), client.next()).await;
        match next {
            Ok(Some(Ok(Message::Text(text)))) => {
                messages.push(serde_json::from_str(&text).unwrap())
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                return (messages, frame.map(|f| u16::from(f.code)));
            }
            Ok(Some(Ok(_))) => {}
            _ => return (messages, None),
        }
    }
}

/// A printed photo held up to the camera for ten seconds: held still for an enrollment,
/// waved about for an authentication. Neither ever passes.
#[tokio::test(flavor = "multi_thread")]
async fn a_printed_photo_never_passes_liveness() {
    let server = start(ServeConfig {
        liveness: LivenessConfig {
            authentication_timeout_secs: 8,
            ..config().liveness
        },
        ..config()
    })
    .await;
    let photo = astronaut();
    let still = vec![jpeg(&photo, 90); 95];
    let offsets = [(0, 0), (24, 0), (24, 24), (0, 24)];
    let waved: Vec<Vec<u8>> = (0..95)
        .map(|i| {
            let (dx, dy) = offsets[i % offsets.len()];
            jpeg(&moved(&photo, dx, dy), 90)
        })
        .collect();
    let address = server.address;
    let enrollment =
        tokio::spawn(async move { stream_at_camera_rate(address, "photo_still", "", still).await });
    let authentication = tokio::spawn(async move {
        stream_at_camera_rate(
            address,
            "photo_waved",
            "?session_type=authentication",
            waved,
        )
        .await
    });

    let (answers, closed) = enrollment.await.unwrap();
    assert_eq!((answers.len(), closed), (95, None));
    for answer in &answers {
        assert_eq!(answer["type"], "frame_processed", "{answer}");
        assert_eq!(answer["liveness_verified"], false);
        assert_eq!(answer["blinks_detected"], 0);
        assert_eq!(answer["challenge"]["current"], "blink");
    }

    let (answers, closed) = authentication.await.unwrap();
    let last = answers.last().unwrap();
    assert_eq!(last["type"], "authentication_timeout", "{last}");
    assert_eq!(
        (last["liveness_verified"].as_bool(), closed),
        (Some(false), Some(4401))
    );
    assert_eq!(last["blinks_detected"], 0);
    assert!(
        last["motion_events"].as_u64().unwrap() >= 2,
        "the waving was seen as motion: {last}"
    );
    // It ran out at 8 s: about 76 frames in, not before.
    assert!(
        (70..=85).contains(&answers.len()),
        "{} answers",
        answers.len()
    );
    assert!(answers.iter().all(|a| a["liveness_verified"] != true));
    let status: Value =
        serde_json::from_str(&get_text(server.address, "/api/status/").await).unwrap();
    assert_eq!(
        (
            status["liveness_passed"].as_u64(),
            status["liveness_timed_out"].as_u64()
        ),
        (Some(0), Some(1))
    );
    server.shut_down().await.unwrap();
}
