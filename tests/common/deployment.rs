//! A scale-out deployment on loopback: two `face-service serve` processes (the built binary, on
//! the CPU) on one throwaway PostgreSQL cluster, behind nginx with the site `face-service
//! deploy nginx` prints, and a tenant to issue sessions; loaded by `face-service bench`
//! through the proxy.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use face_service::bench::{BenchConfig, BenchReport};
use face_service::store::processes::ProcessRow;
use face_service::store::sessions::SessionRow;
use face_service::store::{PageRequest, Store, StoreConfig};
use face_service::tenants::tiers::Tier;
use face_service::tenants::{NewClient, Tenants};

use super::child::printed_by;
use super::nginx::Nginx;
use super::postgres::Postgres;
use super::scratch;
use super::server_process::ServerProcess;

/// The key every process of the deployment shares, as `--master-key` takes it.
const MASTER_KEY: &str = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";

pub struct Deployment {
    pub cluster: Postgres,
    pub store: StoreConfig,
    pub servers: Vec<ServerProcess>,
    _nginx: Nginx,
    pub proxy: SocketAddr,
    pub client_id: String,
    pub api_key: String,
    /// `serve` flags of every process, besides those that make the deployment.
    flags: Vec<String>,
}

impl Deployment {
    /// Starts the deployment, its processes run with `flags` too.
    pub async fn start(flags: &[&str]) -> Deployment {
        let cluster = Postgres::start();
        let store = StoreConfig {
            data_dir: scratch("scale-out"),
            database_url: Some(cluster.new_database().await),
            master_key: Some(MASTER_KEY.parse().unwrap()),
        };
        let tenants = Tenants::open(&store).await.unwrap();
        let tenant = tenants
            .create_client(&NewClient {
                name: "Tenant".into(),
                tier: Tier::Enterprise,
                per_hour: None,
                per_day: None,
            })
            .await
            .unwrap();
        tenants.store().close().await;
        let flags: Vec<String> = flags.iter().map(|flag| flag.to_string()).collect();
        let servers: Vec<ServerProcess> =
            (0..2).map(|_| start_server(&store, &flags, None)).collect();
        let proxy: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut args = vec![
            "deploy".to_owned(),
            "nginx".into(),
            "--listen".into(),
            proxy.to_string(),
        ];
        for server in &servers {
            args.extend(["--upstream".to_owned(), server.address.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let nginx = Nginx::start(&printed_by(&args), proxy.port());
        Deployment {
            cluster,
            store,
            servers,
            _nginx: nginx,
            proxy,
            client_id: tenant.client_id,
            api_key: tenant.api_key,
            flags,
        }
    }

    /// Restarts server `index` where nginx expects it.
    pub fn restart(&mut self, index: usize) {
        let address = self.servers[index].address;
        self.servers[index] = start_server(&self.store, &self.flags, Some(address));
    }

    /// `face-service bench` through nginx: `lanes` sessions at a time at `fps` for `seconds`,
    /// each created over the REST API, each lane opening its next session when one ends. The
    /// frames are the bench's own (the carphone clip at 640x480).
    pub fn bench_config(&self, lanes: usize, fps: f32, seconds: u64) -> BenchConfig {
        BenchConfig {
            url: format!("ws://{}", self.proxy),
            sessions: lanes,
            fps: Some(fps),
            duration: Duration::from_secs(seconds),
            warmup: Duration::ZERO,
            frames: face_service::bench::footage::carphone_jpegs(640, 480, 80).unwrap(),
            binary: false,
            progress: false,
            api_key: Some(self.api_key.clone()),
        }
    }

    /// `bench_config`'s load, running.
    pub fn load(
        &self,
        lanes: usize,
        fps: f32,
        seconds: u64,
    ) -> tokio::task::JoinHandle<BenchReport> {
        let config = self.bench_config(lanes, fps, seconds);
        tokio::spawn(async move { face_service::bench::run(config).await.unwrap() })
    }

    /// Waits until every server holds at least one session.
    pub async fn until_every_server_holds_sessions(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut held = Vec::new();
            for server in &self.servers {
                held.push(server.open_sessions().await);
            }
            if held.iter().all(|&n| n > 0) {
                return;
            }
            assert!(Instant::now() < deadline, "sessions not spread: {held:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The tenant's sessions by token, once none is open any more (the bench has ended them
    /// all, and their processes store each outcome just after the socket closes).
    pub async fn settled_sessions(&self) -> HashMap<String, SessionRow> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let stored = self.stored_sessions().await;
            let open: Vec<&SessionRow> = stored.values().filter(|s| s.status == "active").collect();
            if open.is_empty() {
                return stored;
            }
            assert!(Instant::now() < deadline, "still open: {open:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The tenant's sessions as stored, by token.
    pub async fn stored_sessions(&self) -> HashMap<String, SessionRow> {
        let store = Store::open(&self.store).await.unwrap();
        let page = PageRequest {
            offset: 0,
            size: 100_000,
        };
        let sessions = store.sessions(&self.client_id, page).await.unwrap().items;
        store.close().await;
        sessions.into_iter().map(|s| (s.token.clone(), s)).collect()
    }

    pub async fn processes(&self) -> Vec<ProcessRow> {
        let store = Store::open(&self.store).await.unwrap();
        let processes = store.processes().await.unwrap();
        store.close().await;
        processes
    }
}

/// A process of the deployment: the shared store, sessions issued only, nginx trusted, and
/// `flags`; listening on `at`, or on a free port.
fn start_server(store: &StoreConfig, flags: &[String], at: Option<SocketAddr>) -> ServerProcess {
    let url = store.database_url.as_deref().unwrap();
    let mut all = vec![
        "--open-sessions",
        "false",
        "--database-url",
        url,
        "--master-key",
        MASTER_KEY,
        "--trusted-proxies",
        "127.0.0.1/32",
    ];
    all.extend(flags.iter().map(String::as_str));
    match at {
        Some(address) => ServerProcess::start_at(address, &all),
        None => ServerProcess::start(&all),
    }
}
