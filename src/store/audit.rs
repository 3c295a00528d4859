//! The audit log: who authenticated (or failed to), created sessions, rotated credentials.

use super::{Millis, Page, PageRequest, Store, StoreResult};

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AuditRow {
    /// `""` for a failure whose credentials named no client.
    pub client_id: String,
    pub id: String,
    pub event: String,
    pub success: i64,
    pub detail: String,
    pub remote_addr: Option<String>,
    pub created_at: Millis,
}

impl Store {
    pub async fn insert_audit(&self, row: &AuditRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO audit_logs (client_id, id, event, success, detail, remote_addr, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(row.client_id.as_str())
        .bind(row.id.as_str())
        .bind(row.event.as_str())
        .bind(row.success)
        .bind(row.detail.as_str())
        .bind(row.remote_addr.as_deref())
        .bind(row.created_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The client's audit rows, newest first.
    pub async fn audit_log(
        &self,
        client_id: &str,
        page: PageRequest,
    ) -> StoreResult<Page<AuditRow>> {
        let select = "SELECT client_id, id, event, success, detail, remote_addr, created_at \
             FROM audit_logs WHERE client_id = $1 ORDER BY created_at DESC, id \
             LIMIT $2 OFFSET $3";
        let count = "SELECT COUNT(*) FROM audit_logs WHERE client_id = $1";
        self.client_page(select, count, client_id, page).await
    }
}
