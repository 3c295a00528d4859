//! Identity end to end, on both store engines: sessions issued over REST, real footage over a
//! real WebSocket to a real server, templates in a real store. The live face is the carphone
//! clip's (a real person who blinks and talks); other people are the labelled photos of
//! `tests/photos/`, moved about to give motion.

mod common;

use std::process::Command;

use face_service::bench::footage::{carphone_frames, carphone_jpegs};
use face_service::device::ComputeDevice;
use face_service::models::{FaceModels, ModelOptions};
use face_service::pipeline::recognition::FaceRecognition;
use image::RgbImage;
use reqwest::StatusCode;
use serde_json::{Value, json};

use common::client::{jpeg, run_until_verdict};
use common::rest::{Api, Auth, Backing, Engine, config, on_both_engines};

on_both_engines!(
    an_enrolled_face_authenticates_and_only_as_its_own_user,
    a_face_that_changes_during_a_session_fails_it,
    a_replay_on_a_phone_fails_as_a_spoof_though_it_blinks,
    other_people_are_never_authenticated,
    a_face_enrolled_under_one_client_is_never_matched_under_another,
    a_second_server_on_the_same_store_sees_the_enrollment_and_its_deletion,
    identification_over_several_users_picks_the_right_one_and_refuses_strangers,
    reference_photos_are_checked_and_never_kept,
    webhooks_arrive_once_each_signed_through_failures_and_a_restart,
);

/// A server whose sessions skip the anti-spoofing check: the waved photos stand in for other
/// live people in the matching tests, and a print's edges on a grey canvas would (rightly)
/// fail them as spoofs first. The check itself is tested in `tests/anti_spoofing.rs` and below.
fn matching_only(backing: &Backing) -> face_service::server::ServeConfig {
    let mut config = config(backing);
    config.identity.anti_spoofing_threshold = Some(0.0);
    config
}

/// The carphone clip replayed on the phone of Silent-Face-Anti-Spoofing's screen sample
/// (`tests/photos/silent_face_F2_screen.jpg`): each frame letterboxed onto the phone's
/// portrait display, warped onto the screen as it lies in the photo, dimmed as a display
/// shows it and under the screen's own glare (part of the photo's screen left over it).
fn replayed_on_a_phone() -> Vec<Vec<u8>> {
    // Decoded as frames are, so that its Exif orientation stands it upright.
    let photo = face_service::frame::decode(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/photos/silent_face_F2_screen.jpg"
        ))
        .unwrap(),
        face_service::frame::DEFAULT_MAX_SIDE,
    )
    .unwrap();
    // The display, in its own pixels, and where its corners are in the photo.
    let (width, height) = (330.0, 540.0);
    let corners = [[138.0, 95.0], [463.0, 108.0], [400.0, 640.0], [78.0, 570.0]];
    let (glare, brightness) = (0.3, 0.8);
    carphone_frames()
        .unwrap()
        .iter()
        .map(|frame| {
            let shown = (width * 144.0 / 176.0) as u32;
            let video = image::imageops::resize(
                frame,
                width as u32,
                shown,
                image::imageops::FilterType::Triangle,
            );
            let mut display = RgbImage::new(width as u32, height as u32);
            image::imageops::overlay(
                &mut display,
                &video,
                0,
                i64::from((height as u32 - shown) / 2),
            );
            let mut out = photo.clone();
            for (x, y, pixel) in out.enumerate_pixels_mut() {
                let Some([u, v]) = onto_display(corners, [width, height], [x as f64, y as f64])
                else {
                    continue;
                };
                let shown =
                    display.get_pixel(u.min(width - 1.0) as u32, v.min(height - 1.0) as u32);
                for c in 0..3 {
                    let value = brightness * f64::from(shown[c]) + glare * f64::from(pixel[c]);
                    pixel[c] = value.min(255.0) as u8;
                }
            }
            jpeg(&out, 90)
        })
        .collect()
}

/// Where frame pixel `point` falls on a display whose corners (top-left, top-right,
/// bottom-right, bottom-left) lie at `corners` in the frame, in the display's pixels; `None`
/// off the display. Inverts the bilinear map of the quadrilateral by Newton's method, which a
/// screen's mild perspective needs only a few steps of.
fn onto_display(
    corners: [[f64; 2]; 4],
    [width, height]: [f64; 2],
    point: [f64; 2],
) -> Option<[f64; 2]> {
    let at = |s: f64, t: f64| {
        let mut p = [0.0; 2];
        for (axis, value) in p.iter_mut().enumerate() {
            let top = corners[0][axis] * (1.0 - s) + corners[1][axis] * s;
            let bottom = corners[3][axis] * (1.0 - s) + corners[2][axis] * s;
            *value = top * (1.0 - t) + bottom * t;
        }
        p
    };
    let (mut s, mut t) = (0.5, 0.5);
    for _ in 0..8 {
        let p = at(s, t);
        let (e, h) = (1e-4, [p[0] - point[0], p[1] - point[1]]);
        let (ps, pt) = (at(s + e, t), at(s, t + e));
        let j = [
            [(ps[0] - p[0]) / e, (pt[0] - p[0]) / e],
            [(ps[1] - p[1]) / e, (pt[1] - p[1]) / e],
        ];
        let det = j[0][0] * j[1][1] - j[0][1] * j[1][0];
        s -= (j[1][1] * h[0] - j[0][1] * h[1]) / det;
        t -= (j[0][0] * h[1] - j[1][0] * h[0]) / det;
    }
    ((0.0..1.0).contains(&s) && (0.0..1.0).contains(&t)).then_some([s * width, t * height])
}

/// Streams `frames` over the session's socket until its verdict; the verdict and the close.
async fn run_session(api: &Api, token: &str, frames: &[Vec<u8>]) -> (Value, Option<u16>) {
    let url = format!("ws://{}/ws/auth/process-image/{token}/", api.server.address);
    run_until_verdict(&url, frames, None).await
}

/// The carphone clip as a webcam page sends it.
fn live_face() -> Vec<Vec<u8>> {
    carphone_jpegs(640, 480, 90).unwrap()
}

/// The labelled photos of `tests/photos/`, each cropped around its face (found by our own
/// pipeline) as a printed portrait would be, and moved about on a 640x480 canvas: a photo
/// waved at the camera, `frames` frames of it.
fn waved_photos(names: &[&str], frames: usize) -> Vec<Vec<Vec<u8>>> {
    let models = FaceModels::load(ComputeDevice::cpu(), &ModelOptions::default())
        .and_then(|models| models.with_identity_models(&ModelOptions::default()))
        .unwrap();
    let recognition = FaceRecognition::new(&models, 1);
    let photos = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/photos");
    names
        .iter()
        .map(|name| {
            let photo = image::open(photos.join(name)).unwrap().to_rgb8();
            let faces = recognition.faces(&photo).unwrap();
            let [x, y, w, h] = faces.first().expect("a face").bounding_box;
            // Twice the face's box, as much of it as the photo has.
            let side = w.max(h) * 2.0;
            let left = (x + w / 2.0 - side / 2.0).max(0.0) as u32;
            let top = (y + h / 2.0 - side / 2.0).max(0.0) as u32;
            let width = (side as u32).min(photo.width() - left);
            let height = (side as u32).min(photo.height() - top);
            let portrait = image::imageops::crop_imm(&photo, left, top, width, height).to_image();
            let scale = 300.0 / portrait.width().max(portrait.height()) as f32;
            let portrait = image::imageops::resize(
                &portrait,
                (portrait.width() as f32 * scale) as u32,
                (portrait.height() as f32 * scale) as u32,
                image::imageops::FilterType::Triangle,
            );
            let offsets = [(150, 80), (180, 80), (180, 110), (150, 110)];
            (0..frames)
                .map(|i| {
                    let (x, y) = offsets[i % offsets.len()];
                    let mut canvas = RgbImage::from_pixel(640, 480, image::Rgb([120, 120, 120]));
                    image::imageops::overlay(&mut canvas, &portrait, x, y);
                    jpeg(&canvas, 90)
                })
                .collect()
        })
        .collect()
}

async fn authentication(api: &Api, key: &str, user: Option<&str>, metadata: Value) -> String {
    let mut body = json!({ "session_type": "webcam", "metadata": metadata });
    if let Some(user) = user {
        body["user_id"] = json!(user);
    }
    let (status, created) = api
        .post("/api/auth/authentication/", Auth::Key(key), body)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["session_token"].as_str().unwrap().to_owned()
}

/// Enrolls `user` with `frames`; returns the verdict and the close code.
async fn enroll(api: &Api, key: &str, user: &str, frames: &[Vec<u8>]) -> (Value, Option<u16>) {
    let session = api.enrollment(key, user).await;
    run_session(api, session["session_token"].as_str().unwrap(), frames).await
}

/// Authenticates with `frames`, as `user` or as anyone.
async fn authenticate(
    api: &Api,
    key: &str,
    user: Option<&str>,
    frames: &[Vec<u8>],
) -> (Value, Option<u16>) {
    let token = authentication(api, key, user, json!({ "required_blinks": 1 })).await;
    run_session(api, &token, frames).await
}

/// Decrypts `encrypted_data` and verifies the result token as a seed client would, with
/// Python's `cryptography` and `PyJWT`: the plaintext and the token's claims.
fn opened_by_a_seed_client(api_key: &str, api_secret: &str, verdict: &Value) -> (Value, Value) {
    const SCRIPT: &str = r#"
import base64, hashlib, json, sys
import jwt
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
api_key, payload, token, secret = sys.argv[1:5]
raw = base64.b64decode(payload)
decryptor = Cipher(algorithms.AES(hashlib.sha256(api_key.encode()).digest()), modes.CBC(raw[:16])).decryptor()
padded = decryptor.update(raw[16:]) + decryptor.finalize()
unpadder = padding.PKCS7(128).unpadder()
plaintext = unpadder.update(padded) + unpadder.finalize()
claims = jwt.decode(token, secret, algorithms=["HS256"])
print(json.dumps([json.loads(plaintext), claims]))
"#;
    let output = Command::new(common::tool("python"))
        .args(["-c", SCRIPT, api_key])
        .arg(
            verdict["encrypted_data"]["encrypted_payload"]
                .as_str()
                .unwrap(),
        )
        .arg(verdict["result_token"].as_str().unwrap())
        .arg(api_secret)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let [plaintext, claims]: [Value; 2] = serde_json::from_slice(&output.stdout).unwrap();
    (plaintext, claims)
}

async fn an_enrolled_face_authenticates_and_only_as_its_own_user(engine: Engine) {
    let backing = Backing::new(engine).await;
    let api = Api::start(config(&backing)).await;
    let a = api.client("A").await;
    for user in ["alice", "bob"] {
        api.user(&a.api_key, user).await;
    }
    let clip = live_face();

    let session = api.enrollment(&a.api_key, "alice").await;
    let token = session["session_token"].as_str().unwrap();
    let (enrolled, close) = run_session(&api, token, &clip).await;
    assert_eq!(enrolled["type"], "enrollment_complete", "{enrolled}");
    assert_eq!(close, Some(1000));
    assert_eq!(enrolled["success"], true);
    assert_eq!(enrolled["enrollment_id"], session["enrollment_id"]);
    assert_eq!(enrolled["liveness_verified"], true);
    assert_eq!(enrolled["motion_verified"], true);
    assert!(enrolled["blinks_detected"].as_u64().unwrap() >= 1);
    assert!(enrolled["frames_processed"].as_u64().unwrap() >= 5);
    let stored = enrolled["templates_stored"].as_u64().unwrap();
    assert!((2..=5).contains(&stored), "{enrolled}");
    assert!(enrolled["quality_score"].as_f64().unwrap() > 0.3);
    assert!(
        enrolled["anti_spoofing_score"].as_f64().unwrap() >= 0.5,
        "{enrolled}"
    );
    // What the seed client trusts the result by, opened independently.
    let (plaintext, claims) = opened_by_a_seed_client(&a.api_key, &a.api_secret, &enrolled);
    assert_eq!(plaintext["id"], session["enrollment_id"]);
    assert_eq!(plaintext["session_type"], "enrollment");
    assert_eq!(plaintext["session_token"], token);
    assert!(plaintext["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(claims["sub"], token);
    assert_eq!(claims["client_id"], a.client_id);
    assert_eq!(claims["outcome"]["enrolled"], true);
    assert_eq!(claims["outcome"]["user_id"], "alice");

    // The store and the REST API agree; no template ever leaves the server.
    let (_, alice) = api
        .get("/api/clients/users/alice/", Auth::Key(&a.api_key))
        .await;
    assert_eq!(alice["is_enrolled"], true, "{alice}");
    assert!(alice["enrollment_completed_at"].is_string());
    let (_, enrollments) = api
        .get(
            "/api/clients/users/alice/enrollments/",
            Auth::Key(&a.api_key),
        )
        .await;
    assert_eq!(enrollments["enrollments"][0]["status"], "completed");
    let ended = api.ended_session(&a.api_key, token).await;
    assert_eq!(ended["status"], "completed");
    assert_eq!(ended["result"]["outcome"]["enrolled"], true);
    assert!(!ended.to_string().contains("template_sealed"));

    // Verification as alice, identification, and a claim to be bob: the same clip.
    let (verified, close) = authenticate(&api, &a.api_key, Some("alice"), &clip).await;
    assert_eq!(verified["type"], "authentication_complete", "{verified}");
    assert_eq!(close, Some(1000));
    assert_eq!(verified["authenticated"], true, "{verified}");
    assert_eq!(verified["user_id"], "alice");
    let confidence = verified["confidence"].as_f64().unwrap();
    assert!(confidence > 0.6, "the same clip matches well: {confidence}");
    assert!(
        verified["anti_spoofing_score"].as_f64().unwrap() >= 0.5,
        "{verified}"
    );
    let (plaintext, claims) = opened_by_a_seed_client(&a.api_key, &a.api_secret, &verified);
    assert_eq!(plaintext["id"], "alice");
    assert_eq!(plaintext["session_type"], "authentication");
    assert!((plaintext["confidence"].as_f64().unwrap() - confidence).abs() < 1e-6);
    assert_eq!(claims["outcome"]["authenticated"], true);
    let (_, alice) = api
        .get("/api/clients/users/alice/", Auth::Key(&a.api_key))
        .await;
    assert!(alice["last_recognition_at"].is_string(), "{alice}");

    let (identified, _) = authenticate(&api, &a.api_key, None, &clip).await;
    assert_eq!(identified["authenticated"], true, "{identified}");
    assert_eq!(identified["user_id"], "alice");

    let (as_bob, close) = authenticate(&api, &a.api_key, Some("bob"), &clip).await;
    assert_eq!(as_bob["type"], "authentication_complete");
    assert_eq!(close, Some(1000));
    assert_eq!(as_bob["authenticated"], false, "{as_bob}");
    assert_eq!(as_bob["reason"], "not_enrolled");
    assert!(as_bob["user_id"].is_null() && as_bob["encrypted_data"].is_null());

    // Bob cannot enroll with alice's face: a duplicate, 4001, and bob stays unenrolled.
    let (duplicate, close) = enroll(&api, &a.api_key, "bob", &clip).await;
    assert_eq!(duplicate["type"], "enrollment_failed", "{duplicate}");
    assert_eq!(duplicate["error_code"], "DUPLICATE_FACE_DETECTED");
    assert_eq!(close, Some(4001));
    assert!(duplicate["details"]["similarity_score"].as_f64().unwrap() > 0.6);
    assert!(
        duplicate["details"]["conflicting_user"].is_null(),
        "not for the browser"
    );
    let (_, bob) = api
        .get("/api/clients/users/bob/", Auth::Key(&a.api_key))
        .await;
    assert_eq!(bob["is_enrolled"], false);
    let metrics = common::client::get_text(api.server.address, "/metrics").await;
    for (decision, count) in [
        ("enrolled", 1),
        ("enrollment_failed", 1),
        ("authenticated", 2),
        ("not_authenticated", 1),
    ] {
        let line =
            format!("face_service_identity_decisions_total{{decision=\"{decision}\"}} {count}\n");
        assert!(metrics.contains(&line), "{line}");
    }

    // Disabled face authentication refuses even the right face.
    let (status, _) = api
        .call(
            reqwest::Method::PATCH,
            "/api/clients/users/alice/",
            Auth::Key(&a.api_key),
            Some(json!({ "face_auth_enabled": false })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (refused, _) = authenticate(&api, &a.api_key, Some("alice"), &clip).await;
    assert_eq!(refused["authenticated"], false);
    assert_eq!(refused["reason"], "face_auth_disabled");
    api.stop().await;
}

async fn a_face_that_changes_during_a_session_fails_it(engine: Engine) {
    let backing = Backing::new(engine).await;
    let api = Api::start(config(&backing)).await;
    let a = api.client("A").await;
    api.user(&a.api_key, "alice").await;
    let clip = live_face();
    let stranger = waved_photos(&["person_a_1.jpg"], 60).remove(0);

    // Someone else first, then the live person who blinks: the swap fails the enrollment.
    let swapped: Vec<Vec<u8>> = stranger[..20].iter().chain(&clip).cloned().collect();
    let (failed, close) = enroll(&api, &a.api_key, "alice", &swapped).await;
    assert_eq!(failed["type"], "enrollment_failed", "{failed}");
    assert_eq!(failed["error_code"], "FACE_CHANGED");
    assert_eq!(close, Some(4001));
    let (_, alice) = api
        .get("/api/clients/users/alice/", Auth::Key(&a.api_key))
        .await;
    assert_eq!(alice["is_enrolled"], false);

    let (enrolled, _) = enroll(&api, &a.api_key, "alice", &clip).await;
    assert_eq!(enrolled["type"], "enrollment_complete", "{enrolled}");
    // The live person, then, before the blink liveness asks for, a photo of another: the
    // authentication fails however it would have matched.
    let swapped: Vec<Vec<u8>> = clip[..30].iter().chain(&stranger).cloned().collect();
    let token = authentication(
        &api,
        &a.api_key,
        Some("alice"),
        json!({ "required_blinks": 1 }),
    )
    .await;
    let (changed, close) = run_session(&api, &token, &swapped).await;
    assert_eq!(changed["authenticated"], false, "{changed}");
    assert_eq!(changed["reason"], "face_changed");
    assert_eq!(close, Some(1000));
    let ended = api.ended_session(&a.api_key, &token).await;
    assert_eq!(ended["result"]["outcome"]["reason"], "face_changed");
    api.stop().await;
}

async fn a_replay_on_a_phone_fails_as_a_spoof_though_it_blinks(engine: Engine) {
    let backing = Backing::new(engine).await;
    let api = Api::start(config(&backing)).await;
    let a = api.client("A").await;
    for user in ["alice", "bob"] {
        api.user(&a.api_key, user).await;
    }
    let (enrolled, _) = enroll(&api, &a.api_key, "alice", &live_face()).await;
    assert_eq!(enrolled["type"], "enrollment_complete", "{enrolled}");
    let replay = replayed_on_a_phone();

    let (verdict, close) = authenticate(&api, &a.api_key, Some("alice"), &replay).await;
    assert_eq!(verdict["type"], "authentication_complete", "{verdict}");
    assert_eq!(close, Some(1000));
    // The replayed person blinks and moves: liveness by challenges passes.
    assert_eq!(verdict["liveness_verified"], true, "{verdict}");
    assert!(
        verdict["blinks_detected"].as_u64().unwrap() >= 1,
        "{verdict}"
    );
    assert_eq!(verdict["authenticated"], false, "{verdict}");
    assert_eq!(verdict["reason"], "spoof_detected", "{verdict}");
    let score = verdict["anti_spoofing_score"].as_f64().unwrap();
    assert!(score < 0.5, "{verdict}");
    eprintln!("the replay's anti-spoofing score: {score:.3}");
    let token = verdict["session_token"].as_str().unwrap();
    let ended = api.ended_session(&a.api_key, token).await;
    assert_eq!(
        ended["result"]["outcome"]["reason"], "spoof_detected",
        "{ended}"
    );
    assert_eq!(
        ended["result"]["outcome"]["anti_spoofing_score"],
        verdict["anti_spoofing_score"]
    );

    // Nor can the replay enroll anyone.
    let (failed, close) = enroll(&api, &a.api_key, "bob", &replay).await;
    assert_eq!(failed["type"], "enrollment_failed", "{failed}");
    assert_eq!(failed["error_code"], "SPOOF_DETECTED", "{failed}");
    assert_eq!(close, Some(4001));
    let (_, bob) = api
        .get("/api/clients/users/bob/", Auth::Key(&a.api_key))
        .await;
    assert_eq!(bob["is_enrolled"], false, "{bob}");
    let metrics = common::client::get_text(api.server.address, "/metrics").await;
    assert!(
        metrics.contains("\nface_service_spoofs_detected_total 2\n"),
        "{metrics}"
    );
    api.stop().await;
}

async fn other_people_are_never_authenticated(engine: Engine) {
    let backing = Backing::new(engine).await;
    let api = Api::start(matching_only(&backing)).await;
    let a = api.client("A").await;
    api.user(&a.api_key, "alice").await;
    let (enrolled, _) = enroll(&api, &a.api_key, "alice", &live_face()).await;
    assert_eq!(enrolled["type"], "enrollment_complete", "{enrolled}");
    // Waved photos show motion; with no blink asked, liveness lets them through to the match.
    let labels: Value = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/photos/labels.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let names: Vec<&str> = labels
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut tries = 0;
    for (photo, frames) in names.iter().zip(waved_photos(&names, 40)) {
        for claimed in [Some("alice"), None] {
            let token =
                authentication(&api, &a.api_key, claimed, json!({ "required_blinks": 0 })).await;
            let (verdict, _) = run_session(&api, &token, &frames).await;
            assert_eq!(
                verdict["type"], "authentication_complete",
                "{photo}: {verdict}"
            );
            assert_eq!(verdict["liveness_verified"], true, "{photo}: {verdict}");
            assert_eq!(verdict["authenticated"], false, "{photo}: {verdict}");
            let expected = if claimed.is_some() {
                "face_mismatch"
            } else {
                "no_match"
            };
            assert_eq!(verdict["reason"], expected, "{photo}");
            assert!(
                verdict["confidence"].as_f64().unwrap() < 0.363,
                "{photo}: {verdict}"
            );
            tries += 1;
        }
    }
    assert_eq!(tries, 20);
    api.stop().await;
}

async fn a_face_enrolled_under_one_client_is_never_matched_under_another(engine: Engine) {
    let backing = Backing::new(engine).await;
    let api = Api::start(config(&backing)).await;
    let a = api.client("A").await;
    let b = api.client("B").await;
    // The same external id under both clients: two different users.
    api.user(&a.api_key, "alice").await;
    api.user(&b.api_key, "alice").await;
    let clip = live_face();
    let (enrolled, _) = enroll(&api, &a.api_key, "alice", &clip).await;
    assert_eq!(enrolled["type"], "enrollment_complete", "{enrolled}");

    let (identified, _) = authenticate(&api, &b.api_key, None, &clip).await;
    assert_eq!(identified["authenticated"], false, "{identified}");
    assert_eq!(identified["reason"], "no_match");
    let (verified, _) = authenticate(&api, &b.api_key, Some("alice"), &clip).await;
    assert_eq!(verified["authenticated"], false, "{verified}");
    assert_eq!(verified["reason"], "not_enrolled");
    // B's alice enrolls with the same face: no duplicate across tenants.
    let (theirs, close) = enroll(&api, &b.api_key, "alice", &clip).await;
    assert_eq!(theirs["type"], "enrollment_complete", "{theirs}");
    assert_eq!(close, Some(1000));
    // Deleting B's alice leaves A's enrolled and matching.
    let (status, _) = api
        .call(
            reqwest::Method::DELETE,
            "/api/clients/users/alice/",
            Auth::Key(&b.api_key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (still, _) = authenticate(&api, &a.api_key, None, &clip).await;
    assert_eq!(still["user_id"], "alice", "{still}");
    api.stop().await;
}

async fn a_second_server_on_the_same_store_sees_the_enrollment_and_its_deletion(engine: Engine) {
    let backing = Backing::new(engine).await;
    let first = Api::start(config(&backing)).await;
    let second = Api::start(config(&backing)).await;
    let a = first.client("A").await;
    first.user(&a.api_key, "alice").await;
    let clip = live_face();
    // The second server holds the client's gallery (empty) before the enrollment.
    let (nobody, _) = authenticate(&second, &a.api_key, None, &clip).await;
    assert_eq!(nobody["reason"], "no_match", "{nobody}");

    let (enrolled, _) = enroll(&first, &a.api_key, "alice", &clip).await;
    assert_eq!(enrolled["type"], "enrollment_complete", "{enrolled}");
    let (verified, _) = authenticate(&second, &a.api_key, Some("alice"), &clip).await;
    assert_eq!(verified["authenticated"], true, "{verified}");

    let (status, _) = first
        .call(
            reqwest::Method::DELETE,
            "/api/clients/users/alice/",
            Auth::Key(&a.api_key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (gone, _) = authenticate(&second, &a.api_key, None, &clip).await;
    assert_eq!(gone["authenticated"], false, "{gone}");
    assert_eq!(gone["reason"], "no_match");
    first.stop().await;
    second.stop().await;
}

/// A file of `tests/photos/`.
fn photo_file(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/photos")
            .join(name),
    )
    .unwrap()
}

/// Uploads a reference photo as JSON; the status and the answer.
async fn upload_photo(
    api: &Api,
    key: &str,
    user: &str,
    image: &[u8],
    use_for_matching: bool,
) -> (StatusCode, Value) {
    use base64::Engine as _;
    let data = base64::engine::general_purpose::STANDARD.encode(image);
    api.post(
        &format!("/api/clients/users/{user}/photo/"),
        Auth::Key(key),
        json!({ "image": format!("data:image/jpeg;base64,{data}"), "use_for_matching": use_for_matching }),
    )
    .await
}

async fn identification_over_several_users_picks_the_right_one_and_refuses_strangers(
    engine: Engine,
) {
    let backing = Backing::new(engine).await;
    let api = Api::start(matching_only(&backing)).await;
    let a = api.client("A").await;
    // Users migrated from another system: a reference photo each, allowed to match until a
    // live enrollment exists. And one enrolled live.
    for (user, photo) in [
        ("macron", "person_a_1.jpg"),
        ("ardern", "person_b_1.jpg"),
        ("obama", "obama.jpg"),
    ] {
        api.user(&a.api_key, user).await;
        let (status, stored) = upload_photo(&api, &a.api_key, user, &photo_file(photo), true).await;
        assert_eq!(status, StatusCode::CREATED, "{stored}");
        assert_eq!(stored["use_for_matching"], true);
    }
    api.user(&a.api_key, "alice").await;
    let clip = live_face();
    let (enrolled, _) = enroll(&api, &a.api_key, "alice", &clip).await;
    assert_eq!(enrolled["type"], "enrollment_complete", "{enrolled}");

    // Other photos of the same people find them; strangers find nobody.
    let probes = [
        ("person_a_2.jpg", Some("macron")),
        ("person_b_2.jpg", Some("ardern")),
        ("obama2.jpg", Some("obama")),
        ("impostor_2.jpg", None),
        ("biden.jpg", None),
    ];
    let names: Vec<&str> = probes.iter().map(|(name, _)| *name).collect();
    for ((photo, expected), frames) in probes.iter().zip(waved_photos(&names, 40)) {
        let token = authentication(&api, &a.api_key, None, json!({ "required_blinks": 0 })).await;
        let (verdict, _) = run_session(&api, &token, &frames).await;
        assert_eq!(
            verdict["type"], "authentication_complete",
            "{photo}: {verdict}"
        );
        assert_eq!(
            verdict["authenticated"],
            expected.is_some(),
            "{photo}: {verdict}"
        );
        assert_eq!(verdict["user_id"], json!(expected), "{photo}: {verdict}");
    }
    let (identified, _) = authenticate(&api, &a.api_key, None, &clip).await;
    assert_eq!(identified["user_id"], "alice", "{identified}");
    api.stop().await;
}

async fn reference_photos_are_checked_and_never_kept(engine: Engine) {
    let backing = Backing::new(engine).await;
    let api = Api::start(config(&backing)).await;
    let a = api.client("A").await;
    let b = api.client("B").await;
    api.user(&a.api_key, "alice").await;
    let clip = live_face();

    // A still of the clip as alice's old profile photo, for reference only.
    let (status, stored) = upload_photo(&api, &a.api_key, "alice", &clip[0], false).await;
    assert_eq!(status, StatusCode::CREATED, "{stored}");
    assert_eq!(stored["face_bbox"].as_array().unwrap().len(), 4);
    assert!(stored.get("template").is_none() && !stored.to_string().contains("sealed"));
    // Not for matching: alice is not found by it before she enrolls.
    let (before, _) = authenticate(&api, &a.api_key, Some("alice"), &clip).await;
    assert_eq!(before["reason"], "not_enrolled", "{before}");
    let (enrolled, _) = enroll(&api, &a.api_key, "alice", &clip).await;
    assert_eq!(enrolled["type"], "enrollment_complete", "{enrolled}");
    let old_photo = enrolled["similarity_with_old_photo"].as_f64().unwrap();
    assert!(old_photo > 0.6, "{enrolled}");

    // The same as a form upload.
    let boundary = "face-service-test-boundary";
    let mut form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"a.jpg\"\r\n\
         Content-Type: image/jpeg\r\n\r\n"
    )
    .into_bytes();
    form.extend_from_slice(&clip[60]);
    form.extend_from_slice(
        format!(
            "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"use_for_matching\"\r\n\r\n\
             false\r\n--{boundary}--\r\n"
        )
        .as_bytes(),
    );
    let answer = api
        .request(
            reqwest::Method::POST,
            "/api/clients/users/alice/photo/",
            Auth::Key(&a.api_key),
        )
        .header(
            "Content-Type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::CREATED);

    // Bad photos are refused and store nothing; another client's user is not found.
    let blank = jpeg(
        &RgbImage::from_pixel(320, 240, image::Rgb([90, 90, 90])),
        90,
    );
    let cases: [(&str, &[u8], StatusCode); 3] = [
        ("alice", &blank, StatusCode::BAD_REQUEST),
        (
            "alice",
            b"not an image at all",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        ("nobody", &clip[0], StatusCode::NOT_FOUND),
    ];
    for (user, image, expected) in cases {
        let (status, answer) = upload_photo(&api, &a.api_key, user, image, true).await;
        assert_eq!(status, expected, "{answer}");
        assert!(answer["detail"].is_string());
    }
    let (status, _) = upload_photo(&api, &b.api_key, "alice", &clip[0], true).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let huge = vec![0u8; 5 << 20];
    let (status, _) = upload_photo(&api, &a.api_key, "alice", &huge, true).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    api.stop().await;
}

/// What a webhook receiver got: each request's headers and body, and how many it refused.
#[derive(Default)]
struct Received {
    requests: Vec<(axum::http::HeaderMap, String)>,
    /// Requests answered 200; the first `failures` are answered 500.
    accepted: Vec<Value>,
    failures: usize,
}

/// A receiver on loopback that answers its first `failures` requests 500, then 200.
async fn webhook_receiver(failures: usize) -> (String, std::sync::Arc<std::sync::Mutex<Received>>) {
    use axum::extract::State;
    let received = std::sync::Arc::new(std::sync::Mutex::new(Received {
        failures,
        ..Received::default()
    }));
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                |State(received): State<std::sync::Arc<std::sync::Mutex<Received>>>,
                 headers: axum::http::HeaderMap,
                 body: String| async move {
                    let mut received = received.lock().unwrap();
                    received.requests.push((headers, body.clone()));
                    if received.requests.len() <= received.failures {
                        return StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    received.accepted.push(serde_json::from_str(&body).unwrap());
                    StatusCode::OK
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

/// Waits until the receiver has accepted `count` deliveries.
async fn accepted(received: &std::sync::Mutex<Received>, count: usize) -> Vec<Value> {
    for _ in 0..300 {
        let accepted = received.lock().unwrap().accepted.clone();
        if accepted.len() >= count {
            return accepted;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!(
        "{} deliveries accepted",
        received.lock().unwrap().accepted.len()
    );
}

async fn webhooks_arrive_once_each_signed_through_failures_and_a_restart(engine: Engine) {
    use hmac::{Hmac, Mac};
    let backing = Backing::new(engine).await;
    // By default an endpoint cannot be on the server's own network.
    let guarded = Api::start(config(&backing)).await;
    let c = guarded.client("C").await;
    let (status, refused) = guarded
        .post(
            "/api/clients/webhooks/",
            Auth::Key(&c.api_key),
            json!({ "url": "http://127.0.0.1:9/hook" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("public address")
    );
    guarded.stop().await;

    let mut serve = config(&backing);
    // The receiver is on loopback.
    serve.webhooks.webhook_private_networks = true;
    // Retries 1.5 s and 3 s after the first attempt: the third, the first to succeed, comes
    // well after the first server has stopped.
    serve.webhooks.webhook_retry_ms = 1500;
    serve.webhooks.webhook_timeout_secs = 2;
    let api = Api::start(serve.clone()).await;
    let a = api.client("A").await;
    let b = api.client("B").await;
    for user in ["alice", "bob"] {
        api.user(&a.api_key, user).await;
    }
    let (url, received) = webhook_receiver(2).await;
    let (status, endpoint) = api
        .post(
            "/api/clients/webhooks/",
            Auth::Key(&a.api_key),
            json!({ "url": url }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{endpoint}");
    let secret = endpoint["secret"].as_str().unwrap().to_owned();
    assert_eq!(endpoint["events"].as_array().unwrap().len(), 3);
    let (status, _) = api
        .post(
            "/api/clients/webhooks/",
            Auth::Key(&a.api_key),
            json!({ "url": "ftp://example.com/", "events": ["enrollment.completed"] }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, listed) = api
        .get("/api/clients/webhooks/", Auth::Key(&a.api_key))
        .await;
    assert!(
        listed[0].get("secret").is_none(),
        "the secret shows once: {listed}"
    );

    // The enrollment's event goes into the outbox; the server stops before the receiver
    // takes it, and the next one delivers it.
    let clip = live_face();
    let (enrolled, _) = enroll(&api, &a.api_key, "alice", &clip).await;
    assert_eq!(enrolled["type"], "enrollment_complete", "{enrolled}");
    api.stop().await;
    assert!(received.lock().unwrap().accepted.is_empty());
    let api = Api::start(serve).await;
    let first = accepted(&received, 1).await;
    assert_eq!(first[0]["event"], "enrollment.completed");
    assert_eq!(first[0]["data"]["user_id"], "alice");

    let (verified, _) = authenticate(&api, &a.api_key, Some("alice"), &clip).await;
    assert_eq!(verified["authenticated"], true, "{verified}");
    let (refused, _) = authenticate(&api, &a.api_key, Some("bob"), &clip).await;
    assert_eq!(refused["authenticated"], false, "{refused}");
    let all = accepted(&received, 3).await;
    let events: Vec<&str> = all.iter().map(|d| d["event"].as_str().unwrap()).collect();
    assert_eq!(
        events,
        [
            "enrollment.completed",
            "authentication.success",
            "authentication.failed"
        ]
    );
    assert_eq!(all[2]["data"]["claimed_user_id"], "bob");
    assert_eq!(all[2]["data"]["reason"], "not_enrolled");
    // Each once, and every request, refused or not, signed as the seed signs.
    let mut ids: Vec<&str> = all
        .iter()
        .map(|d| d["delivery_id"].as_str().unwrap())
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    {
        let received = received.lock().unwrap();
        assert_eq!(received.accepted.len(), 3, "no delivery twice");
        assert_eq!(received.requests.len(), 5);
        for (headers, body) in &received.requests {
            let header = |name: &str| headers[name].to_str().unwrap().to_owned();
            let timestamp = header("X-FR-Timestamp");
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(format!("{timestamp}.{body}").as_bytes());
            let digest: String = mac
                .finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(
                header("X-FR-Signature"),
                format!("t={timestamp},v1={digest}")
            );
            let sent: Value = serde_json::from_str(body).unwrap();
            assert_eq!(header("X-FR-Event"), sent["event"]);
            assert_eq!(sent["client_id"], a.client_id);
        }
    }

    // The delivery log: the enrollment's took three attempts; another client sees none.
    let (_, log) = api
        .get("/api/clients/webhook-deliveries/", Auth::Key(&a.api_key))
        .await;
    assert_eq!(log["count"], 3, "{log}");
    let enrollment = log["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["event"] == "enrollment.completed")
        .unwrap();
    assert_eq!(enrollment["status"], "delivered", "{enrollment}");
    assert_eq!(enrollment["attempts"], 3);
    assert_eq!(enrollment["last_status_code"], 200);
    let (_, theirs) = api
        .get("/api/clients/webhook-deliveries/", Auth::Key(&b.api_key))
        .await;
    assert_eq!(theirs["count"], 0);
    api.stop().await;
}
