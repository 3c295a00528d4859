//! The face-service processes sharing a database: each registers itself, beats while it runs,
//! and holds the sessions it claimed. A process whose heartbeat goes stale is dead, and the
//! first live process to see that ends its open sessions as `disconnected`.
//!
//! Each step is one conditional update, so a dead process is reaped once however many
//! processes race to reap it, and a session that its holder finished is never reopened or
//! overwritten by a reaper (nor the reverse).

use super::{Millis, Store, StoreResult};

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ProcessRow {
    pub id: String,
    pub host: String,
    pub address: String,
    pub version: String,
    pub started_at: Millis,
    pub heartbeat_at: Millis,
    pub stopped_at: Option<Millis>,
    /// `stopped` (by itself) or `reaped` (by another, after its heartbeat went stale).
    pub stop_reason: Option<String>,
}

/// What a heartbeat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    Alive,
    /// Another process had taken this one for dead (its heartbeats did not arrive in time) and
    /// ended its sessions; the process is registered as alive again from now.
    TakenForDead,
}

/// A dead process, and how many of its sessions were open when it was reaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaped {
    pub process_id: String,
    pub sessions: u64,
}

/// How long the rows of stopped processes are kept, for operators looking back.
const KEEP_STOPPED: Millis = 7 * 24 * 3600 * 1000;

impl Store {
    /// Registers a process, and forgets those stopped long ago: starts are rare enough for
    /// that to cost nothing, and frequent enough to keep the table short.
    pub async fn register_process(&self, process: &ProcessRow) -> StoreResult<()> {
        sqlx::query("DELETE FROM processes WHERE stopped_at < $1")
            .bind(process.started_at - KEEP_STOPPED)
            .execute(self.pool())
            .await?;
        sqlx::query(
            "INSERT INTO processes (id, host, address, version, started_at, heartbeat_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(process.id.as_str())
        .bind(process.host.as_str())
        .bind(process.address.as_str())
        .bind(process.version.as_str())
        .bind(process.started_at)
        .bind(process.heartbeat_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn heartbeat(&self, process_id: &str, now: Millis) -> StoreResult<Heartbeat> {
        let beat = sqlx::query(
            "UPDATE processes SET heartbeat_at = $1 WHERE id = $2 AND stopped_at IS NULL",
        )
        .bind(now)
        .bind(process_id)
        .execute(self.pool())
        .await?;
        if beat.rows_affected() == 1 {
            return Ok(Heartbeat::Alive);
        }
        sqlx::query(
            "UPDATE processes SET heartbeat_at = $1, stopped_at = NULL, stop_reason = NULL \
             WHERE id = $2",
        )
        .bind(now)
        .bind(process_id)
        .execute(self.pool())
        .await?;
        Ok(Heartbeat::TakenForDead)
    }

    /// Reaps every process whose last heartbeat is older than `silent_since`: marks it stopped
    /// and its open sessions `disconnected`, in one transaction per process.
    pub async fn reap_processes(
        &self,
        now: Millis,
        silent_since: Millis,
    ) -> StoreResult<Vec<Reaped>> {
        let silent: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM processes WHERE stopped_at IS NULL AND heartbeat_at < $1",
        )
        .bind(silent_since)
        .fetch_all(self.pool())
        .await?;
        let mut reaped = Vec::new();
        for process_id in silent {
            let mut transaction = self.pool().begin().await?;
            // The heartbeat is checked again: the process may have beaten since the select,
            // and another reaper may have been first.
            let taken = sqlx::query(
                "UPDATE processes SET stopped_at = $1, stop_reason = 'reaped' \
                 WHERE id = $2 AND stopped_at IS NULL AND heartbeat_at < $3",
            )
            .bind(now)
            .bind(process_id.as_str())
            .bind(silent_since)
            .execute(&mut *transaction)
            .await?;
            if taken.rows_affected() == 0 {
                continue;
            }
            let sessions = disconnect_sessions(&mut transaction, &process_id, now).await?;
            transaction.commit().await?;
            reaped.push(Reaped {
                process_id,
                sessions,
            });
        }
        Ok(reaped)
    }

    /// Marks a process that is stopping as stopped, and any session it still holds (none,
    /// after a full drain) `disconnected`. Answers how many sessions that was.
    pub async fn stop_process(&self, process_id: &str, now: Millis) -> StoreResult<u64> {
        let mut transaction = self.pool().begin().await?;
        sqlx::query(
            "UPDATE processes SET stopped_at = $1, stop_reason = 'stopped' \
             WHERE id = $2 AND stopped_at IS NULL",
        )
        .bind(now)
        .bind(process_id)
        .execute(&mut *transaction)
        .await?;
        let sessions = disconnect_sessions(&mut transaction, process_id, now).await?;
        transaction.commit().await?;
        Ok(sessions)
    }

    /// Every registered process, the live ones first, then the most recently stopped.
    pub async fn processes(&self) -> StoreResult<Vec<ProcessRow>> {
        Ok(sqlx::query_as(
            "SELECT id, host, address, version, started_at, heartbeat_at, stopped_at, \
             stop_reason FROM processes \
             ORDER BY CASE WHEN stopped_at IS NULL THEN 0 ELSE 1 END, stopped_at DESC, \
             started_at DESC",
        )
        .fetch_all(self.pool())
        .await?)
    }
}

/// Ends the sessions `process_id` holds that are still open.
async fn disconnect_sessions(
    transaction: &mut sqlx::Transaction<'_, sqlx::Any>,
    process_id: &str,
    now: Millis,
) -> StoreResult<u64> {
    let ended = sqlx::query(
        "UPDATE sessions SET status = 'disconnected', completed_at = $1 \
         WHERE process_id = $2 AND status = 'active'",
    )
    .bind(now)
    .bind(process_id)
    .execute(&mut **transaction)
    .await?;
    Ok(ended.rows_affected())
}
