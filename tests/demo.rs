//! The demo page in a real browser: Debian's Chromium, headless, with a fake camera that plays
//! the carphone clip, driven over the DevTools protocol. The page is loaded from a running
//! `face-service serve` (CPU backend) and must stream frames, draw the mesh on the face, count
//! blinks, and show a visible message when the camera is denied, the server reports an error
//! or the socket closes.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use face_service::bench::footage::carphone_clip;
use face_service::server::ServeConfig;
use face_service::server::session::limits::SessionLimits;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use common::child::{KillOnDrop, spawn_until_stderr_says};
use common::client::{Client, config, start};

const CHROMIUM: &str = "/usr/bin/chromium";

/// A fresh scratch folder for one test, below cargo's temporary directory for tests (so the
/// screenshot is found at the same place after every run).
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("demo-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The carphone clip as a Y4M file for Chromium's fake camera: 640x480, 4:2:0, at 5 frames a
/// second, so that the page (8 frames a second) sees every frame and no blink falls between.
fn carphone_y4m(path: &Path) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let (w, h) = (640usize, 480usize);
    writeln!(out, "YUV4MPEG2 W{w} H{h} F5:1 Ip A1:1 C420jpeg").unwrap();
    for frame in carphone_clip(w as u32, h as u32).unwrap() {
        let rgb = |x: usize, y: usize| frame.get_pixel(x as u32, y as u32).0.map(f32::from);
        let mut planes = Vec::with_capacity(w * h * 3 / 2);
        for y in 0..h {
            for x in 0..w {
                let [r, g, b] = rgb(x, y);
                planes.push((0.299 * r + 0.587 * g + 0.114 * b).round() as u8);
            }
        }
        // Full-range BT.601 chroma, each sample the mean of a 2x2 block.
        for weights in [[-0.168_736, -0.331_264, 0.5], [0.5, -0.418_688, -0.081_312]] {
            for y in (0..h).step_by(2) {
                for x in (0..w).step_by(2) {
                    let mut sum = 0.0;
                    for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                        let [r, g, b] = rgb(x + dx, y + dy);
                        sum += weights[0] * r + weights[1] * g + weights[2] * b;
                    }
                    planes.push((128.0 + sum / 4.0).round().clamp(0.0, 255.0) as u8);
                }
            }
        }
        out.write_all(b"FRAME\n").unwrap();
        out.write_all(&planes).unwrap();
    }
}

/// A headless Chromium showing one page, and a DevTools connection to that page.
struct Browser {
    _process: KillOnDrop,
    page: Client,
    next_id: u64,
}

impl Browser {
    async fn open(url: &str, camera: &[String], profile: &Path) -> Browser {
        assert!(
            Path::new(CHROMIUM).exists(),
            "the demo test needs Debian's chromium package (.ci/run installs it)"
        );
        let mut chromium = Command::new(CHROMIUM);
        chromium
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--window-size=1200,800",
                &format!("--user-data-dir={}", profile.display()),
            ])
            .args(camera)
            .arg(url);
        // Chromium says where DevTools listens on its first lines of stderr.
        let (process, port) =
            spawn_until_stderr_says(&mut chromium, Duration::from_secs(30), |line| {
                let rest = line.split_once("DevTools listening on ws://")?.1;
                rest.split_once('/')?
                    .0
                    .rsplit_once(':')?
                    .1
                    .parse::<u16>()
                    .ok()
            });
        let devtools: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(30);
        let page_url = loop {
            let targets: Value =
                serde_json::from_slice(&devtools_get(devtools, "/json/list").await)
                    .unwrap_or(Value::Null);
            let page = targets.as_array().and_then(|targets| {
                targets
                    .iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_owned))
            });
            match page {
                Some(url) => break url,
                None if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                None => panic!("chromium opened no page: {targets}"),
            }
        };
        let (page, _) = tokio_tungstenite::connect_async(page_url).await.unwrap();
        Browser {
            _process: process,
            page,
            next_id: 1,
        }
    }

    /// One DevTools command; its `result`.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let command = json!({ "id": id, "method": method, "params": params });
        self.page
            .send(Message::text(command.to_string()))
            .await
            .unwrap();
        loop {
            let message = tokio::time::timeout(Duration::from_secs(30), self.page.next())
                .await
                .expect("DevTools answers")
                .unwrap()
                .unwrap();
            if let Message::Text(text) = message {
                let reply: Value = serde_json::from_str(&text).unwrap();
                if reply["id"] == id {
                    assert!(reply["error"].is_null(), "{method}: {reply}");
                    return reply["result"].clone();
                }
            }
        }
    }

    /// Evaluates `expression` in the page and returns its value.
    async fn evaluate(&mut self, expression: &str) -> Value {
        let params = json!({ "expression": expression, "returnByValue": true });
        self.call("Runtime.evaluate", params).await["result"]["value"].clone()
    }

    /// Polls `window.faceDemo` until `done` holds, failing after `limit`.
    async fn wait_for(&mut self, what: &str, limit: Duration, done: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            let state = self.evaluate("window.faceDemo").await;
            if done(&state) {
                return;
            }
            assert!(Instant::now() < deadline, "waiting for {what}: {state}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn screenshot(&mut self, path: &Path) -> image::RgbImage {
        let shot = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(path, &png).unwrap();
        image::load_from_memory(&png).unwrap().to_rgb8()
    }
}

/// A GET to Chromium's DevTools HTTP endpoint, which keeps the connection open after its
/// answer: the body is read by its `Content-Length`.
async fn devtools_get(address: SocketAddr, path: &str) -> Vec<u8> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut stream = tokio::io::BufReader::new(stream);
    // Chromium builds the WebSocket addresses it lists from this header.
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n");
    stream
        .get_mut()
        .write_all(request.as_bytes())
        .await
        .unwrap();
    let mut length = 0;
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).await.unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.unwrap();
    body
}

fn fake_camera(video: &Path) -> Vec<String> {
    vec![
        "--use-fake-ui-for-media-stream".into(),
        "--use-fake-device-for-media-stream".into(),
        format!("--use-file-for-fake-video-capture={}", video.display()),
    ]
}

/// A server that takes the page's frames at the seed's rate, and the page open on it in a
/// browser whose camera plays the carphone clip.
async fn page_with_camera(name: &str) -> (PathBuf, face_service::server::Running, Browser) {
    let dir = scratch(name);
    let video = dir.join("carphone.y4m");
    carphone_y4m(&video);
    let server = start(ServeConfig {
        limits: SessionLimits {
            max_fps: 10.0,
            ..config().limits
        },
        ..config()
    })
    .await;
    let url = format!("http://{}/", server.address);
    let browser = Browser::open(&url, &fake_camera(&video), &dir.join("profile")).await;
    (dir, server, browser)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_streams_the_camera_draws_the_mesh_and_counts_blinks() {
    let (dir, server, mut browser) = page_with_camera("stream").await;

    // The clip's first blink is at frame 43, 8.6 s in at 5 frames a second.
    browser
        .wait_for("a blink counted", Duration::from_secs(90), |state| {
            state["blinks"].as_u64() >= Some(1) && state["meshPointsDrawn"] == 468
        })
        .await;
    let device = browser
        .evaluate("document.getElementById('device').textContent")
        .await;
    assert!(device.as_str().unwrap().contains("cpu"), "{device}");

    let path = dir.join("demo-screenshot.png");
    let shot = browser.screenshot(&path).await;
    eprintln!("screenshot: {}", path.display());
    // The mesh is drawn in #00ff66; the carphone clip itself has no such green.
    let mesh_pixels = shot
        .pixels()
        .filter(|p| p[1] > 220 && p[0] < 60 && (70..160).contains(&p[2]))
        .count();
    assert!(mesh_pixels > 300, "{mesh_pixels} mesh-green pixels");

    // The server going away is shown, not a frozen page.
    server.shut_down().await.unwrap();
    browser
        .wait_for(
            "the closed socket shown",
            Duration::from_secs(20),
            |state| {
                state["notice"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("Connection closed (1001"))
            },
        )
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denied_camera_and_a_server_error_are_shown() {
    let dir = scratch("problems");
    let server = start(config()).await;
    let url = format!("http://{}/", server.address);
    let denied = vec![
        "--use-fake-device-for-media-stream".to_owned(),
        "--deny-permission-prompts".to_owned(),
    ];
    let mut browser = Browser::open(&url, &denied, &dir.join("profile-denied")).await;
    browser
        .wait_for(
            "the denied camera shown",
            Duration::from_secs(30),
            |state| {
                state["notice"]
                    .as_str()
                    .is_some_and(|n| n.contains("Camera access was denied"))
            },
        )
        .await;
    drop(browser);
    server.shut_down().await.unwrap();

    // A session allowed 2 frames a second gets the page's 8 answered with 429s.
    let video = dir.join("carphone.y4m");
    carphone_y4m(&video);
    let server = start(ServeConfig {
        limits: SessionLimits {
            max_fps: 2.0,
            ..config().limits
        },
        ..config()
    })
    .await;
    let url = format!("http://{}/", server.address);
    let mut browser = Browser::open(&url, &fake_camera(&video), &dir.join("profile-429")).await;
    browser
        .wait_for("a server error", Duration::from_secs(60), |state| {
            state["errors"].as_u64() >= Some(1)
        })
        .await;
    let shown = browser
        .evaluate("document.getElementById('last-error').textContent")
        .await;
    assert!(shown.as_str().unwrap().starts_with("429:"), "{shown}");
    drop(browser);
    server.shut_down().await.unwrap();
}

/// The demo tenant's flow, as a person at the page runs it: type a name, enroll (the fake
/// camera's clip blinks and moves), then sign in and be recognised by that name.
#[tokio::test(flavor = "multi_thread")]
async fn the_page_enrolls_a_name_and_signs_in_with_it() {
    let (dir, server, mut browser) = page_with_camera("identity").await;
    browser
        .wait_for("frames answered", Duration::from_secs(60), |state| {
            state["answers"].as_u64() >= Some(1)
        })
        .await;
    let label = browser
        .evaluate(
            "const name = document.getElementById('name'); name.value = 'Ada Lovelace'; \
             name.dispatchEvent(new Event('input')); \
             document.getElementById('enroll').click(); \
             document.getElementById('enroll').textContent",
        )
        .await;
    assert_eq!(label, "Enroll as Ada Lovelace");
    browser
        .wait_for("the enrollment", Duration::from_secs(90), |state| {
            !state["verdict"].is_null()
        })
        .await;
    let verdict = browser.evaluate("window.faceDemo.verdict").await;
    assert_eq!(verdict["type"], "enrollment_complete", "{verdict}");
    assert_eq!(verdict["user_id"], "Ada_Lovelace");

    browser
        .evaluate("document.getElementById('sign-in').click(); true")
        .await;
    browser
        .wait_for("the sign-in", Duration::from_secs(90), |state| {
            state["verdict"]["type"] == "authentication_complete"
        })
        .await;
    let verdict = browser.evaluate("window.faceDemo.verdict").await;
    assert_eq!(verdict["authenticated"], true, "{verdict}");
    assert_eq!(verdict["user_id"], "Ada_Lovelace");
    let shown = browser
        .evaluate("document.getElementById('verdict').textContent")
        .await;
    assert!(
        shown
            .as_str()
            .unwrap()
            .starts_with("Signed in as Ada Lovelace (confidence 0."),
        "{shown}"
    );
    let spoof = browser
        .evaluate("document.getElementById('spoof').textContent")
        .await;
    let score = verdict["anti_spoofing_score"].as_f64().unwrap();
    assert!(score >= 0.5, "{verdict}");
    assert_eq!(
        spoof.as_str().unwrap(),
        format!("Live face: anti-spoofing score {score:.2}"),
        "{spoof}"
    );
    let path = dir.join("demo-signed-in.png");
    browser.screenshot(&path).await;
    eprintln!("screenshot: {}", path.display());
    drop(browser);
    server.shut_down().await.unwrap();
}
