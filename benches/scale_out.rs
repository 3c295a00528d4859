//! Sizing a scale-out deployment: two `face-service serve` processes (the built binary, CPU)
//! on one throwaway PostgreSQL behind nginx (`tests/common/deployment.rs`, the scale-out
//! test's own), loaded by `face-service bench` through the proxy with sessions created over
//! the REST API, as tenants' apps make them.
//!
//! It prints, for BENCHMARKS.md: the database's load with the processes idle (their heartbeats)
//! and per session under load (transactions and rows, from `pg_stat_database`), and the
//! largest load the two processes serve through the proxy (a sweep).
//!
//!     cargo bench --bench scale_out

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::deployment::Deployment;
use face_service::bench::{BenchConfig, sweep};
use sqlx::Connection;

/// The seed's frame rate per session.
const FPS: f32 = 9.5;
const IDLE_SECS: u64 = 30;
const LOAD_LANES: usize = 16;
const LOAD_SECS: u64 = 90;
const SWEEP: [usize; 6] = [16, 32, 40, 48, 56, 64];

/// The database's counters, from PostgreSQL's cumulative statistics.
#[derive(Debug, Clone, Copy, Default)]
struct DatabaseCounts {
    transactions: f64,
    rows_read: f64,
    rows_inserted: f64,
    rows_updated: f64,
}

impl DatabaseCounts {
    async fn read(url: &str) -> DatabaseCounts {
        // Backends flush their statistics at most once a second.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
        let (transactions, fetched, inserted, updated): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT xact_commit + xact_rollback, tup_fetched, tup_inserted, tup_updated \
             FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(&mut connection)
        .await
        .unwrap();
        connection.close().await.unwrap();
        DatabaseCounts {
            transactions: transactions as f64,
            rows_read: fetched as f64,
            rows_inserted: inserted as f64,
            rows_updated: updated as f64,
        }
    }

    fn minus(self, other: DatabaseCounts) -> DatabaseCounts {
        DatabaseCounts {
            transactions: self.transactions - other.transactions,
            rows_read: self.rows_read - other.rows_read,
            rows_inserted: self.rows_inserted - other.rows_inserted,
            rows_updated: self.rows_updated - other.rows_updated,
        }
    }

    fn times(self, k: f64) -> DatabaseCounts {
        DatabaseCounts {
            transactions: self.transactions * k,
            rows_read: self.rows_read * k,
            rows_inserted: self.rows_inserted * k,
            rows_updated: self.rows_updated * k,
        }
    }

    fn row(&self, what: &str) -> String {
        format!(
            "| {what} | {:.1} | {:.1} | {:.1} | {:.1} |",
            self.transactions, self.rows_read, self.rows_inserted, self.rows_updated
        )
    }
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let deployment = Deployment::start(&["--max-frames-per-session", "0"]).await;
        let url = deployment.store.database_url.clone().unwrap();

        // Two processes idle: their heartbeats and reaper checks alone.
        let started = Instant::now();
        let before = DatabaseCounts::read(&url).await;
        tokio::time::sleep(Duration::from_secs(IDLE_SECS)).await;
        let idle_minutes = started.elapsed().as_secs_f64() / 60.0;
        let idle = DatabaseCounts::read(&url)
            .await
            .minus(before)
            .times(1.0 / (2.0 * idle_minutes));

        let started = Instant::now();
        let before = DatabaseCounts::read(&url).await;
        let report = deployment.load(LOAD_LANES, FPS, LOAD_SECS).await.unwrap();
        let during = DatabaseCounts::read(&url).await.minus(before);
        let load_minutes = started.elapsed().as_secs_f64() / 60.0;
        let sessions = report.sessions_opened as f64;
        // Less what the heartbeats wrote meanwhile.
        let per_session = during
            .minus(idle.times(2.0 * load_minutes))
            .times(1.0 / sessions);

        let config = BenchConfig {
            duration: Duration::from_secs(15),
            warmup: Duration::from_secs(3),
            ..deployment.bench_config(0, FPS, 0)
        };
        let capacity = sweep::sweep(&config, &SWEEP, 250.0).await.unwrap();

        println!("database load (PostgreSQL, pg_stat_database):");
        println!("| | transactions | rows read | rows inserted | rows updated |");
        println!("|---|---|---|---|---|");
        println!("{}", idle.row("per idle process per minute"));
        println!("{}", per_session.row("per session"));
        println!(
            "load: {LOAD_LANES} lanes at {FPS} fps for {LOAD_SECS} s through nginx: {}",
            report.summary().replace('\n', "; ")
        );
        println!(
            "sessions: {:.0} in {LOAD_SECS} s, {:.2} a second, {:.1} s each on average",
            sessions,
            sessions / LOAD_SECS as f64,
            LOAD_LANES as f64 * LOAD_SECS as f64 / sessions
        );
        match (
            capacity.largest_sessions_served,
            capacity.largest_load_served_fps,
        ) {
            (Some(sessions), Some(load)) => println!(
                "largest load served through nginx by both processes: {sessions} sessions, \
                 {load:.0} frames/s (p99 <= 250 ms, no errors)"
            ),
            _ => println!("no sweep step was served"),
        }
    });
}
