//! The real `face-service serve` process, as systemd runs it: started from the built binary on
//! the CPU backend, loaded by real WebSocket clients, watched through `/proc`, and stopped
//! with SIGTERM.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use face_service::bench::footage::carphone_jpegs;

use common::client::{astronaut_jpeg, connect, next_json, run_until_verdict};
use common::server_process::ServerProcess;

/// One round of sessions that come and go in every way a client can: a third stream three
/// frames and close properly, a third send three frames and vanish before the answers (frames
/// still queued), a third send garbage, then a frame, and vanish after the answers.
async fn sessions_come_and_go(address: SocketAddr, sessions: usize, round: usize) {
    let jpeg = astronaut_jpeg();
    let tasks: Vec<_> = (0..sessions)
        .map(|i| {
            let jpeg = jpeg.clone();
            tokio::spawn(async move {
                let mut client = connect(address, &format!("leak_{round}_{i}")).await;
                match i % 3 {
                    0 => {
                        for _ in 0..3 {
                            client.send(Message::binary(jpeg.clone())).await.unwrap();
                            client.next().await;
                        }
                        client.close(None).await.unwrap();
                    }
                    1 => {
                        for _ in 0..3 {
                            client.send(Message::binary(jpeg.clone())).await.unwrap();
                        }
                        // Dropped here: the TCP connection goes away with frames queued.
                    }
                    _ => {
                        client.send(Message::text("{not json")).await.unwrap();
                        client
                            .send(Message::binary(b"\xff\xd8garbage".to_vec()))
                            .await
                            .unwrap();
                        client.send(Message::binary(jpeg.clone())).await.unwrap();
                        for _ in 0..3 {
                            client.next().await;
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_that_come_and_go_leak_neither_memory_nor_threads() {
    let server = ServerProcess::start(&["--max-fps", "1000"]);
    let mut usage = Vec::new();
    for round in 0..14 {
        sessions_come_and_go(server.address, 45, round).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.open_sessions().await > 0 {
            assert!(Instant::now() < deadline, "sessions did not end");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        usage.push(server.usage());
    }
    eprintln!("after each round of 45 sessions, (RSS KiB, threads): {usage:?}");
    // The first rounds start the pooled threads and warm the allocator; after that, 270
    // more sessions (each holding a 512x512 frame and a tracker while open) must leave the
    // process as it was. Medians of four rounds damp the noise of a single reading; a leak of
    // 16 KB a session would already show as 4 MB.
    let median = |rounds: &[(u64, u64)]| {
        let mut rss: Vec<u64> = rounds.iter().map(|r| r.0).collect();
        rss.sort_unstable();
        (rss[rss.len() / 2 - 1] + rss[rss.len() / 2]) / 2
    };
    let threads = |rounds: &[(u64, u64)]| rounds.iter().map(|r| r.1).max().unwrap();
    let (settled, last) = (&usage[4..8], &usage[10..14]);
    assert!(
        median(last) <= median(settled) + 4 * 1024,
        "resident memory grew from a median of {} to {} KiB",
        median(settled),
        median(last)
    );
    assert!(
        threads(last) <= threads(settled),
        "threads grew from {} to {}",
        threads(settled),
        threads(last)
    );
}

/// Streams frames (send, await the answer) until the server closes; returns frames sent,
/// frames answered, and the close code.
async fn stream_until_closed(address: SocketAddr, token: String) -> (u64, u64, Option<u16>) {
    let jpeg = astronaut_jpeg();
    let mut client = connect(address, &token).await;
    let (mut sent, mut answered) = (0, 0);
    loop {
        if client.send(Message::binary(jpeg.clone())).await.is_err() {
            break;
        }
        sent += 1;
        loop {
            match client.next().await {
                Some(Ok(Message::Text(_))) => {
                    answered += 1;
                    break;
                }
                Some(Ok(Message::Close(frame))) => {
                    return (sent, answered, frame.map(|f| u16::from(f.code)));
                }
                Some(Ok(_)) => {}
                _ => return (sent, answered, None),
            }
        }
    }
    (sent, answered, None)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_under_load_answers_the_frames_taken_closes_1001_and_exits_0() {
    let mut server = ServerProcess::start(&["--max-fps", "1000", "--max-frames-per-session", "0"]);
    let clients: Vec<_> = (0..6)
        .map(|i| tokio::spawn(stream_until_closed(server.address, format!("term_{i}"))))
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = server.terminate().await;
    for client in clients {
        let (sent, answered, closed) = client.await.unwrap();
        assert_eq!(closed, Some(1001), "sent {sent}, answered {answered}");
        assert!(answered > 0, "the load was running");
        // Only a frame sent after the server stopped reading may go unanswered.
        assert!(answered + 1 >= sent, "sent {sent}, answered {answered}");
    }
    assert!(status.success(), "exit status {status}");
}

/// The GPU path of the real server, on whatever adapter wgpu finds (llvmpipe in CI): it says it
/// is not ready while its kernels compile for each padded batch size, then serves a session
/// with the attention model and the crop shader (478 points a frame), and SIGTERM ends it with
/// exit status 0.
#[tokio::test(flavor = "multi_thread")]
async fn on_the_gpu_the_server_is_ready_once_warm_and_answers_refined_frames() {
    let mut server = ServerProcess::start_on(
        "gpu",
        &["--refine-landmarks", "--gpu-crop", "--max-batch", "2"],
    );
    // Compiling the kernels takes the software adapter well over a second.
    let first = server.status("/api/ready/").await;
    assert_eq!(
        (first["ready"].as_bool(), first["reason"].as_str()),
        (Some(false), Some("warming up")),
        "{first}"
    );
    let deadline = Instant::now() + Duration::from_secs(600);
    while server.status("/api/ready/").await["ready"] != true {
        assert!(Instant::now() < deadline, "not ready after 10 minutes");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let status = server.status("/api/status/").await;
    assert!(
        status["device"].as_str().unwrap().contains("wgpu"),
        "{status}"
    );
    assert_eq!(status["models"][1], "landmarks_with_attention");

    let mut client = connect(server.address, "gpu_1").await;
    let jpeg = astronaut_jpeg();
    for _ in 0..3 {
        client.send(Message::binary(jpeg.clone())).await.unwrap();
        let answer = next_json(&mut client).await;
        assert_eq!(answer["type"], "frame_processed", "{answer}");
        assert_eq!(
            answer["visual_data"]["landmarks"].as_array().unwrap().len(),
            478
        );
    }
    drop(client);
    let exit = server.terminate().await;
    assert!(exit.success(), "exit status {exit}");
}

/// `face-service bench` as an operator runs it: the binary copied out of the build tree and
/// run from an empty directory, with its bundled frames, against a real server.
#[tokio::test(flavor = "multi_thread")]
async fn bench_from_an_installed_binary_sends_its_bundled_frames() {
    let mut server = ServerProcess::start(&["--max-frames-per-session", "0"]);
    let installed = std::env::temp_dir().join(format!("face-service-bench-{}", std::process::id()));
    std::fs::create_dir_all(&installed).unwrap();
    let binary = installed.join("face-service");
    std::fs::copy(env!("CARGO_BIN_EXE_face-service"), &binary).unwrap();
    let url = format!("ws://{}", server.address);
    let run = tokio::task::spawn_blocking({
        let (binary, installed) = (binary.clone(), installed.clone());
        move || {
            Command::new(binary)
                .current_dir(installed)
                .args(["bench", "--url", &url, "--sessions", "2", "--fps", "5"])
                .args(["--seconds", "3", "--warmup", "1", "--json"])
                .output()
                .unwrap()
        }
    });
    let output = run.await.unwrap();
    std::fs::remove_dir_all(&installed).unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report["frames_answered"].as_u64().unwrap() > 0, "{report}");
    assert!(report["faces"].as_u64().unwrap() > 0, "{report}");
    assert!(server.terminate().await.success());
}

/// The README's walk-through against the installed binary, sessions issued only: the operator
/// creates a tenant with `clients create`; its backend gets a JWT, creates a user and an
/// enrollment session over REST; the browser streams the camera (the carphone clip) to the
/// session's `websocket_url` at the seed's rate until `enrollment_complete`; the backend reads
/// the outcome; the user then signs in (`authentication_complete`); the operator rotates the
/// credentials.
#[tokio::test(flavor = "multi_thread")]
async fn a_seed_clients_rest_and_websocket_flow_runs_against_the_binary() {
    let mut server = ServerProcess::start(&["--open-sessions", "false"]);
    let clients = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_face-service"))
            .arg("clients")
            .arg("--data-dir")
            .arg(&server.data_dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<Value>(&output.stdout).unwrap()
    };
    let created = clients(&["create", "--name", "Acme", "--tier", "premium"]);
    let key = created["api_key"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let base = format!("http://{}", server.address);
    let post = |path: &str, auth: (&str, String), body: Value| {
        http.post(format!("{base}{path}"))
            .header(auth.0, auth.1)
            .json(&body)
            .send()
    };

    let issued: Value = http
        .post(format!("{base}/api/core/auth/client/"))
        .json(&serde_json::json!({ "api_key": key, "api_secret": created["api_secret"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(issued["tier"], "premium");
    let jwt = (
        "Authorization",
        format!("JWT {}", issued["access_token"].as_str().unwrap()),
    );
    let user = post(
        "/api/clients/users/",
        jwt.clone(),
        serde_json::json!({ "external_user_id": "user-42" }),
    )
    .await
    .unwrap();
    assert_eq!(user.status(), 201);
    // A session for user-42, as the tenant's backend creates one.
    let create_session = async |path: &str| -> Value {
        post(
            path,
            jwt.clone(),
            serde_json::json!({ "user_id": "user-42", "session_type": "webcam" }),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
    };
    let session = create_session("/api/auth/enrollment/").await;
    let token = session["session_token"].as_str().unwrap();

    let clip = carphone_jpegs(640, 480, 90).unwrap();
    // Just under the seed's 10 frames a second.
    let pace = Some(Duration::from_secs_f64(1.0 / 9.5));
    let (enrolled, _) =
        run_until_verdict(session["websocket_url"].as_str().unwrap(), &clip, pace).await;
    assert_eq!(enrolled["type"], "enrollment_complete", "{enrolled}");
    assert_eq!(enrolled["enrollment_id"], session["enrollment_id"]);

    let read = |path: String| {
        http.get(format!("{base}{path}"))
            .header(jwt.0, jwt.1.clone())
            .send()
    };
    let mut outcome = Value::Null;
    for _ in 0..100 {
        outcome = read(format!("/api/auth/sessions/{token}/"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if outcome["status"] != "active" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(outcome["status"], "completed", "{outcome}");
    assert_eq!(outcome["result"]["outcome"]["enrolled"], true);

    let session = create_session("/api/auth/authentication/").await;
    let (signed_in, _) =
        run_until_verdict(session["websocket_url"].as_str().unwrap(), &clip, pace).await;
    assert_eq!(signed_in["type"], "authentication_complete", "{signed_in}");
    assert_eq!(signed_in["authenticated"], true, "{signed_in}");
    assert_eq!(signed_in["user_id"], "user-42");

    let listed = clients(&["list"]);
    assert_eq!(listed[0]["name"], "Acme");
    assert!(
        !listed.to_string().contains(&key),
        "list shows no credentials"
    );
    let client_id = created["client_id"].as_str().unwrap();
    let rotated = clients(&["rotate", client_id]);
    assert_ne!(rotated["api_key"].as_str().unwrap(), key);
    let refused = http
        .get(format!("{base}/api/clients/users/"))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert!(server.terminate().await.success());
}

/// Under a flood of connections that never send a request, with few file descriptors, the
/// server still answers a health check, opens a session (which reads the store) and keeps the
/// session it was running: it caps connections below the open-file limit and drops the oldest
/// idle one to make room. (Stuck in accept errors, or out of descriptors for its store, it
/// would answer neither.)
#[tokio::test(flavor = "multi_thread")]
async fn out_of_file_descriptors_the_server_still_answers() {
    let server = ServerProcess::start_with_file_limit(128, &["--header-timeout-secs", "600"]);
    let pid = server.child.0.id();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(files.split_whitespace().nth(3), Some("128"), "{files}");
    let mut before_flood = connect(server.address, "before_flood").await;
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(
            tokio::net::TcpStream::connect(server.address)
                .await
                .unwrap(),
        );
    }
    // 300 connections the kernel has accepted for it, 128 descriptors: the server runs out.
    // A connection the server drops before answering is retried.
    let health = async {
        loop {
            let attempt = async {
                let mut tcp = tokio::net::TcpStream::connect(server.address).await.ok()?;
                let request =
                    "GET /api/health/ HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
                tcp.write_all(request.as_bytes()).await.ok()?;
                let mut response = String::new();
                tcp.read_to_string(&mut response).await.ok()?;
                response.starts_with("HTTP/1.1 200").then_some(response)
            };
            if let Ok(Some(response)) = tokio::time::timeout(Duration::from_secs(2), attempt).await
            {
                return response;
            }
        }
    };
    let health = tokio::time::timeout(Duration::from_secs(30), health)
        .await
        .expect("a health answer within 30 s");
    assert!(health.contains("healthy"), "{health}");
    let mut client = connect(server.address, "after_flood").await;
    client
        .send(Message::text(r#"{"type":"ping"}"#))
        .await
        .unwrap();
    assert_eq!(next_json(&mut client).await["type"], "pong");
    // A session already running keeps its place through the flood.
    before_flood
        .send(Message::text(r#"{"type":"ping"}"#))
        .await
        .unwrap();
    assert_eq!(next_json(&mut before_flood).await["type"], "pong");
    drop(idle);
}
