//! The one module with SQL: tenants (`clients`), their users, enrollments and sessions, the
//! users' face templates (sealed), their request counts and their audit log. Two engines behind one set of queries: SQLite in a file
//! under `--data-dir` (the default, nothing else to run) and PostgreSQL (`--database-url`), which
//! several face-service processes can share. sqlx's `Any` driver runs the same statements on
//! both: `$N` parameters, only the types both know, and the migrations in `migrations/` applied
//! at start.
//!
//! The processes sharing a database register in it (`processes`), with the sessions each
//! holds, so that a surviving process can end the sessions of one that died.
//!
//! Every query of tenant data takes the client's id and filters by it; that id is in every such
//! table's primary key.

pub mod audit;
pub mod clients;
pub mod processes;
pub mod sessions;
pub mod templates;
pub mod usage;
pub mod users;
pub mod webhooks;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;

/// Milliseconds since the Unix epoch, UTC: how every time is stored.
pub type Millis = i64;

pub fn now() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

/// Where the store lives. The same flags on `serve` and on `clients`.
#[derive(Debug, Clone, PartialEq, clap::Args)]
#[command(next_help_heading = "Store")]
pub struct StoreConfig {
    /// Directory for the embedded SQLite database (`face-service.db`) and, unless
    /// `--master-key` is given, the master key file (`master.key`); created if missing.
    #[arg(long, env = "FACE_SERVICE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// A PostgreSQL URL (`postgres://user:password@host:5432/database`) to keep tenants, users
    /// and sessions in, shared by every face-service process given the same URL. Without it,
    /// SQLite under `--data-dir`.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// The key that encrypts tenants' secrets at rest, as 64 hex digits. Without it, the key in
    /// `<data-dir>/master.key` (made on first start). Required with `--database-url`: every
    /// process that shares the database must use the same key.
    #[arg(long, env = "FACE_SERVICE_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<crate::tenants::sealing::MasterKey>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            database_url: None,
            master_key: None,
        }
    }
}

impl StoreConfig {
    /// Makes `--data-dir` if it is missing.
    pub fn create_data_dir(&self) -> StoreResult<&Path> {
        std::fs::create_dir_all(&self.data_dir).map_err(|e| {
            StoreError::Config(format!("creating {}: {e}", self.data_dir.display()))
        })?;
        Ok(&self.data_dir)
    }
}

/// Which database the store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrating the database: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A row with the same key exists.
    #[error("already exists")]
    Conflict,
    #[error("{0}")]
    Config(String),
    #[error("stored data is damaged: {0}")]
    Damaged(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

static MIGRATOR: Migrator = sqlx::migrate!("src/store/migrations");

/// A handle on the database, cheap to clone: a connection pool.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    engine: Engine,
}

impl Store {
    /// Connects (creating the SQLite file and its directory if missing) and migrates.
    pub async fn open(config: &StoreConfig) -> StoreResult<Store> {
        sqlx::any::install_default_drivers();
        let (url, engine) = match &config.database_url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                (url.clone(), Engine::Postgres)
            }
            Some(_) => {
                return Err(StoreError::Config(
                    "--database-url must be a postgres:// URL".into(),
                ));
            }
            None => {
                config.create_data_dir()?;
                (
                    sqlite_url(&config.data_dir.join("face-service.db")),
                    Engine::Sqlite,
                )
            }
        };
        // SQLite has one writer at a time however many connections wait, so a few suffice;
        // PostgreSQL serves many.
        let max_connections = match engine {
            Engine::Sqlite => 4,
            Engine::Postgres => 16,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&url)
            .await?;
        if engine == Engine::Sqlite {
            // Readers do not wait for the writer in WAL mode; the setting stays with the file.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        MIGRATOR.run(&pool).await?;
        Ok(Store { pool, engine })
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// One page of a client's rows: `select` takes the client's id, the page size and the
    /// offset as `$1`-`$3`; `count` counts all the client's rows from its id in `$1`.
    async fn client_page<T>(
        &self,
        select: impl sqlx::SqlSafeStr,
        count: &'static str,
        client_id: &str,
        page: PageRequest,
    ) -> StoreResult<Page<T>>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
    {
        let items = sqlx::query_as(select)
            .bind(client_id)
            .bind(page.size)
            .bind(page.offset)
            .fetch_all(&self.pool)
            .await?;
        let total = sqlx::query_scalar(count)
            .bind(client_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(Page { items, total })
    }
}

/// sqlx's SQLite URL for a file, with the characters a URL would misread escaped; `rwc`
/// creates the file if missing.
fn sqlite_url(path: &Path) -> String {
    let mut escaped = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '%' | '?' | '#' | ' ' => escaped.push_str(&format!("%{:02X}", c as u32)),
            c => escaped.push(c),
        }
    }
    format!("sqlite://{escaped}?mode=rwc")
}

/// A unique-key violation as `Conflict`, other errors as they are.
fn conflict_or_error(error: sqlx::Error) -> StoreError {
    match error.as_database_error() {
        Some(e) if e.is_unique_violation() => StoreError::Conflict,
        _ => StoreError::Database(error),
    }
}

/// A page of rows, newest first, and how many there are in all.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
}

/// Which page of a listing: `size` rows from row `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub offset: i64,
    pub size: i64,
}
