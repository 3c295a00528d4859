//! `GET /api/core/audit-logs/`: the calling client's own audit rows, newest first.

use axum::extract::State;
use serde::Serialize;

use super::caller::Caller;
use super::errors::ApiError;
use super::pages::{PageQuery, Paginated};
use super::{ApiState, ErrorBody, iso};
use crate::store::audit::AuditRow;

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    id: String,
    /// `authentication`, `token_issued`, `session_created` or `credentials_rotated`.
    event: String,
    success: bool,
    detail: String,
    remote_addr: Option<String>,
    created_at: String,
}

impl From<AuditRow> for AuditEntry {
    fn from(row: AuditRow) -> AuditEntry {
        AuditEntry {
            id: row.id,
            event: row.event,
            success: row.success != 0,
            detail: row.detail,
            remote_addr: row.remote_addr,
            created_at: iso(row.created_at),
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/core/audit-logs/",
    tag = "audit",
    params(("page" = Option<i64>, Query, description = "1-based, 20 rows a page")),
    responses((status = 200, body = Paginated<AuditEntry>), (status = 403, body = ErrorBody))
)]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    page: PageQuery,
) -> Result<axum::Json<Paginated<AuditEntry>>, ApiError> {
    let rows = state
        .tenants
        .store()
        .audit_log(&caller.client.id, page.request())
        .await?;
    Ok(axum::Json(page.answer(rows, AuditEntry::from)?))
}
