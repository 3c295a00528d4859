//! REST session creation per second on each store engine: a real server on loopback (sessions
//! issued only), one tenant with one user, and `CONCURRENCY` HTTP clients creating enrollment
//! sessions (each one authenticates its API key, counts the request against the client's
//! limits, checks the user, stores the session with its enrollment, and writes an audit row).
//! SQLite is a file under a temporary directory; PostgreSQL a throwaway local cluster.
//!
//!     cargo bench --bench rest

#[path = "../tests/common/postgres.rs"]
mod postgres;

use std::time::{Duration, Instant};

use face_service::device::ComputeDevice;
use face_service::models::{FaceModels, ModelOptions};
use face_service::server::{self, ServeConfig};
use face_service::store::StoreConfig;
use face_service::tenants::NewClient;
use face_service::tenants::tiers::Tier;
use serde_json::json;

const SESSIONS: usize = 2000;
const CONCURRENCY: usize = 16;

/// Sessions created per second, and the median and 99th-percentile creation times.
async fn measure(store: StoreConfig) -> (f64, Duration, Duration) {
    let mut config = ServeConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        store,
        ..ServeConfig::default()
    };
    config.access.open_sessions = false;
    let models = FaceModels::load(ComputeDevice::cpu(), &ModelOptions::default())
        .and_then(|models| models.with_identity_models(&ModelOptions::default()))
        .unwrap();
    let running = server::start(config, models).await.unwrap();
    let client = running
        .tenants
        .create_client(&NewClient {
            name: "bench".into(),
            tier: Tier::Enterprise,
            per_hour: Some(i64::MAX),
            per_day: Some(i64::MAX),
        })
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://{}", running.address);
    let created = http
        .post(format!("{base}/api/clients/users/"))
        .header("X-API-Key", &client.api_key)
        .json(&json!({ "external_user_id": "bench-user" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    let started = Instant::now();
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (http, base, key) = (http.clone(), base.clone(), client.api_key.clone());
            tokio::spawn(async move {
                let mut times = Vec::new();
                for _ in 0..SESSIONS / CONCURRENCY {
                    let sent = Instant::now();
                    let answer = http
                        .post(format!("{base}/api/auth/enrollment/"))
                        .header("X-API-Key", &key)
                        .json(&json!({ "user_id": "bench-user", "session_type": "webcam" }))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(answer.status(), 201);
                    answer.bytes().await.unwrap();
                    times.push(sent.elapsed());
                }
                times
            })
        })
        .collect();
    let mut times = Vec::new();
    for worker in workers {
        times.extend(worker.await.unwrap());
    }
    let elapsed = started.elapsed();
    running.shut_down().await.unwrap();
    times.sort();
    let rate = times.len() as f64 / elapsed.as_secs_f64();
    (rate, times[times.len() / 2], times[times.len() * 99 / 100])
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let scratch =
            std::env::temp_dir().join(format!("face-service-rest-bench-{}", std::process::id()));
        let sqlite = measure(StoreConfig {
            data_dir: scratch.clone(),
            ..StoreConfig::default()
        })
        .await;
        let cluster = postgres::Postgres::start();
        let pg = measure(StoreConfig {
            data_dir: scratch.clone(),
            database_url: Some(cluster.new_database().await),
            master_key: Some("00".repeat(32).parse().unwrap()),
        })
        .await;
        drop(cluster);
        let _ = std::fs::remove_dir_all(&scratch);
        println!("{SESSIONS} enrollment sessions, {CONCURRENCY} concurrent clients:");
        println!("| store | sessions/s | median | p99 |");
        println!("|---|---|---|---|");
        for (name, (rate, median, p99)) in [("SQLite", sqlite), ("PostgreSQL", pg)] {
            println!(
                "| {name} | {rate:.0} | {:.1} ms | {:.1} ms |",
                median.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3
            );
        }
        println!("PostgreSQL / SQLite: {:.2}x", pg.0 / sqlite.0);
    });
}
