//! Webhook endpoints per client, and the outbox of their deliveries: written when an event
//! happens, claimed with a lease by whichever process delivers it, and kept as the delivery
//! log afterwards.

use super::{Millis, Page, PageRequest, Store, StoreResult, conflict_or_error};

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct EndpointRow {
    pub client_id: String,
    pub id: String,
    pub url: String,
    /// A JSON array of event names, as text.
    pub events: String,
    pub secret_sealed: String,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DeliveryRow {
    pub client_id: String,
    pub id: String,
    pub endpoint_id: String,
    pub event: String,
    pub body: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Millis,
    pub leased_until: Option<Millis>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: Millis,
    pub delivered_at: Option<Millis>,
}

/// How one attempt at a delivery went.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    Delivered {
        status_code: i64,
    },
    /// Failed; tried again at `retry_at`, or given up (`failed`) when that is `None`.
    Failed {
        status_code: Option<i64>,
        error: String,
        retry_at: Option<Millis>,
    },
}

const ENDPOINT_COLUMNS: &str = "client_id, id, url, events, secret_sealed, created_at";
const DELIVERY_COLUMNS: &str = "client_id, id, endpoint_id, event, body, status, attempts, \
                                next_attempt_at, leased_until, last_status_code, last_error, \
                                created_at, delivered_at";

impl Store {
    pub async fn insert_endpoint(&self, endpoint: &EndpointRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO webhook_endpoints (client_id, id, url, events, secret_sealed, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(endpoint.client_id.as_str())
        .bind(endpoint.id.as_str())
        .bind(endpoint.url.as_str())
        .bind(endpoint.events.as_str())
        .bind(endpoint.secret_sealed.as_str())
        .bind(endpoint.created_at)
        .execute(self.pool())
        .await
        .map_err(conflict_or_error)?;
        Ok(())
    }

    /// The client's endpoints, oldest first.
    pub async fn endpoints(&self, client_id: &str) -> StoreResult<Vec<EndpointRow>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE client_id = $1 \
             ORDER BY created_at, id"
        ));
        Ok(sqlx::query_as(sql)
            .bind(client_id)
            .fetch_all(self.pool())
            .await?)
    }

    pub async fn endpoint(&self, client_id: &str, id: &str) -> StoreResult<Option<EndpointRow>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE client_id = $1 AND id = $2"
        ));
        Ok(sqlx::query_as(sql)
            .bind(client_id)
            .bind(id)
            .fetch_optional(self.pool())
            .await?)
    }

    /// Deletes an endpoint with its deliveries; false when the client has no such endpoint.
    pub async fn delete_endpoint(&self, client_id: &str, id: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM webhook_endpoints WHERE client_id = $1 AND id = $2")
            .bind(client_id)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Puts deliveries in the outbox, all or none.
    pub async fn insert_deliveries(&self, deliveries: &[DeliveryRow]) -> StoreResult<()> {
        let mut transaction = self.pool().begin().await?;
        for delivery in deliveries {
            sqlx::query(
                "INSERT INTO webhook_deliveries (client_id, id, endpoint_id, event, body, status, \
                 attempts, next_attempt_at, created_at) \
                 VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $7)",
            )
            .bind(delivery.client_id.as_str())
            .bind(delivery.id.as_str())
            .bind(delivery.endpoint_id.as_str())
            .bind(delivery.event.as_str())
            .bind(delivery.body.as_str())
            .bind(delivery.next_attempt_at)
            .bind(delivery.created_at)
            .execute(&mut *transaction)
            .await
            .map_err(conflict_or_error)?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Takes the pending delivery longest due that no process holds, holding it until
    /// `lease_until`; `None` when none is due (or another process took it first). The claim
    /// is one conditional update, so with several processes on one database a delivery is
    /// held by one at a time.
    pub async fn claim_due_delivery(
        &self,
        now: Millis,
        lease_until: Millis,
    ) -> StoreResult<Option<DeliveryRow>> {
        let due: Option<(String, String)> = sqlx::query_as(
            "SELECT client_id, id FROM webhook_deliveries WHERE status = 'pending' \
             AND next_attempt_at <= $1 AND (leased_until IS NULL OR leased_until <= $1) \
             ORDER BY next_attempt_at LIMIT 1",
        )
        .bind(now)
        .fetch_optional(self.pool())
        .await?;
        let Some((client_id, id)) = due else {
            return Ok(None);
        };
        let claim = sqlx::AssertSqlSafe(format!(
            "UPDATE webhook_deliveries SET leased_until = $1 WHERE client_id = $2 AND id = $3 \
             AND status = 'pending' AND (leased_until IS NULL OR leased_until <= $4) \
             RETURNING {DELIVERY_COLUMNS}"
        ));
        Ok(sqlx::query_as(claim)
            .bind(lease_until)
            .bind(client_id)
            .bind(id)
            .bind(now)
            .fetch_optional(self.pool())
            .await?)
    }

    /// Records an attempt at a claimed delivery and releases it.
    pub async fn record_attempt(
        &self,
        delivery: &DeliveryRow,
        attempt: &Attempt,
        now: Millis,
    ) -> StoreResult<()> {
        let (status, code, error, next, delivered) = match attempt {
            Attempt::Delivered { status_code } => (
                "delivered",
                Some(*status_code),
                None,
                delivery.next_attempt_at,
                Some(now),
            ),
            Attempt::Failed {
                status_code,
                error,
                retry_at,
            } => (
                if retry_at.is_some() {
                    "pending"
                } else {
                    "failed"
                },
                *status_code,
                Some(error.as_str()),
                retry_at.unwrap_or(delivery.next_attempt_at),
                None,
            ),
        };
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, \
             last_status_code = $2, last_error = $3, next_attempt_at = $4, delivered_at = $5, \
             leased_until = NULL WHERE client_id = $6 AND id = $7",
        )
        .bind(status)
        .bind(code)
        .bind(error)
        .bind(next)
        .bind(delivered)
        .bind(delivery.client_id.as_str())
        .bind(delivery.id.as_str())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The client's deliveries, newest first: its delivery log.
    pub async fn deliveries(
        &self,
        client_id: &str,
        page: PageRequest,
    ) -> StoreResult<Page<DeliveryRow>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE client_id = $1 \
             ORDER BY created_at DESC, id LIMIT $2 OFFSET $3"
        ));
        let count = "SELECT COUNT(*) FROM webhook_deliveries WHERE client_id = $1";
        self.client_page(sql, count, client_id, page).await
    }
}
