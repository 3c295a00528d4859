//! The seed's REST API as the tests drive it: a real server on a store of either engine
//! (SQLite in a temporary directory, or a fresh database in a throwaway PostgreSQL cluster),
//! and a real HTTP client with each way of authenticating.

use std::path::PathBuf;
use std::time::Duration;

use face_service::server::{Running, ServeConfig};
use face_service::store::StoreConfig;
use face_service::tenants::tiers::Tier;
use face_service::tenants::{IssuedCredentials, NewClient};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::postgres::Postgres;

#[derive(Clone, Copy)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// Where a test's data lives; removed (the directory, the cluster) when dropped.
pub struct Backing {
    dir: PathBuf,
    _cluster: Option<Postgres>,
    pub store: StoreConfig,
}

impl Drop for Backing {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Backing {
    pub async fn new(engine: Engine) -> Backing {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("rest-{}", uuid::Uuid::new_v4()));
        let (cluster, database_url, master_key) = match engine {
            Engine::Sqlite => (None, None, None),
            Engine::Postgres => {
                let cluster = Postgres::start();
                let url = cluster.new_database().await;
                let key = "5e".repeat(32).parse().unwrap();
                (Some(cluster), Some(url), Some(key))
            }
        };
        Backing {
            store: StoreConfig {
                data_dir: dir.clone(),
                database_url,
                master_key,
            },
            dir,
            _cluster: cluster,
        }
    }
}

/// A server over a backing, and an HTTP client for it.
pub struct Api {
    pub server: Running,
    pub http: reqwest::Client,
    pub base: String,
}

/// How a request authenticates.
#[derive(Clone)]
pub enum Auth<'a> {
    None,
    Key(&'a str),
    BearerKey(&'a str),
    Jwt(&'a str),
    BearerJwt(&'a str),
}

pub fn config(backing: &Backing) -> ServeConfig {
    let mut config = super::client::config();
    config.access.open_sessions = false;
    config.store = backing.store.clone();
    config
}

impl Api {
    pub async fn start(config: ServeConfig) -> Api {
        let server = super::client::start(config).await;
        let base = format!("http://{}", server.address);
        Api {
            server,
            http: reqwest::Client::new(),
            base,
        }
    }

    pub async fn client(&self, name: &str) -> IssuedCredentials {
        self.client_with(NewClient {
            name: name.into(),
            tier: Tier::Basic,
            per_hour: None,
            per_day: None,
        })
        .await
    }

    pub async fn client_with(&self, client: NewClient) -> IssuedCredentials {
        self.server.tenants.create_client(&client).await.unwrap()
    }

    pub fn request(&self, method: Method, path: &str, auth: Auth) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match auth {
            Auth::None => request,
            Auth::Key(key) => request.header("X-API-Key", key),
            Auth::BearerKey(key) => request.header("Authorization", format!("Bearer {key}")),
            Auth::Jwt(token) => request.header("Authorization", format!("JWT {token}")),
            Auth::BearerJwt(token) => request.header("Authorization", format!("Bearer {token}")),
        }
    }

    /// Sends and answers the status and JSON body (`null` when there is none).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        auth: Auth<'_>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.request(method, path, auth);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: not JSON: {text}"))
        };
        (status, body)
    }

    pub async fn get(&self, path: &str, auth: Auth<'_>) -> (StatusCode, Value) {
        self.call(Method::GET, path, auth, None).await
    }

    pub async fn post(&self, path: &str, auth: Auth<'_>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, auth, Some(body)).await
    }

    pub async fn jwt(&self, client: &IssuedCredentials) -> String {
        let (status, answer) = self
            .post(
                "/api/core/auth/client/",
                Auth::None,
                json!({ "api_key": client.api_key, "api_secret": client.api_secret }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn user(&self, key: &str, id: &str) {
        let (status, answer) = self
            .post(
                "/api/clients/users/",
                Auth::Key(key),
                json!({ "external_user_id": id }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }

    pub async fn enrollment(&self, key: &str, user: &str) -> Value {
        let (status, answer) = self
            .post(
                "/api/auth/enrollment/",
                Auth::Key(key),
                json!({ "user_id": user, "session_type": "webcam" }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        answer
    }

    pub async fn websocket(&self, token: &str) -> super::client::Client {
        let url = format!(
            "ws://{}/ws/auth/process-image/{token}/",
            self.server.address
        );
        tokio_tungstenite::connect_async(url).await.unwrap().0
    }

    pub async fn session_status(&self, key: &str, token: &str) -> Value {
        let (status, answer) = self
            .get(&format!("/api/auth/sessions/{token}/"), Auth::Key(key))
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer
    }

    /// The session once its socket's end is stored (that follows the close by a moment).
    pub async fn ended_session(&self, key: &str, token: &str) -> Value {
        for _ in 0..100 {
            let session = self.session_status(key, token).await;
            if session["status"] != "active" {
                return session;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("session {token} is still active");
    }

    pub async fn stop(self) {
        self.server.shut_down().await.unwrap();
    }
}

/// Each test, on each engine: the calling file names `Engine` at its top.
#[allow(unused_macros)]
macro_rules! on_both_engines {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $test() {
                    super::$test(super::Engine::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $test() {
                    super::$test(super::Engine::Postgres).await;
                }
            )*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_both_engines;
