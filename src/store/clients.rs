//! Tenants: one row per client, with its credentials hashed (the key) or sealed (the secret).

use super::{Millis, Store, StoreResult, conflict_or_error};

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ClientRow {
    pub id: String,
    pub name: String,
    pub tier: String,
    pub status: String,
    pub api_key_hash: String,
    pub api_secret_sealed: String,
    /// SHA-256 of the API key, sealed: the key of the seed's `encrypted_data`. `None` for
    /// credentials made before it was kept.
    pub result_key_sealed: Option<String>,
    pub per_hour: i64,
    pub per_day: i64,
    pub created_at: Millis,
    pub credentials_rotated_at: Millis,
}

const COLUMNS: &str = "id, name, tier, status, api_key_hash, api_secret_sealed, \
                       result_key_sealed, per_hour, per_day, created_at, credentials_rotated_at";

/// A client's credentials as stored: the key hashed, the secret and the result key sealed.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedCredentials {
    pub api_key_hash: String,
    pub api_secret_sealed: String,
    pub result_key_sealed: String,
}

impl Store {
    pub async fn insert_client(&self, client: &ClientRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO clients (id, name, tier, status, api_key_hash, api_secret_sealed, \
             result_key_sealed, per_hour, per_day, created_at, credentials_rotated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(client.id.as_str())
        .bind(client.name.as_str())
        .bind(client.tier.as_str())
        .bind(client.status.as_str())
        .bind(client.api_key_hash.as_str())
        .bind(client.api_secret_sealed.as_str())
        .bind(client.result_key_sealed.as_deref())
        .bind(client.per_hour)
        .bind(client.per_day)
        .bind(client.created_at)
        .bind(client.credentials_rotated_at)
        .execute(self.pool())
        .await
        .map_err(conflict_or_error)?;
        Ok(())
    }

    pub async fn clients(&self) -> StoreResult<Vec<ClientRow>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM clients ORDER BY created_at, id"
        ));
        Ok(sqlx::query_as(sql).fetch_all(self.pool()).await?)
    }

    pub async fn client(&self, id: &str) -> StoreResult<Option<ClientRow>> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM clients WHERE id = $1"));
        Ok(sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(self.pool())
            .await?)
    }

    pub async fn client_by_key_hash(&self, api_key_hash: &str) -> StoreResult<Option<ClientRow>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM clients WHERE api_key_hash = $1"
        ));
        Ok(sqlx::query_as(sql)
            .bind(api_key_hash)
            .fetch_optional(self.pool())
            .await?)
    }

    /// False when there is no such client.
    pub async fn set_client_status(&self, id: &str, status: &str) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE clients SET status = $1 WHERE id = $2")
            .bind(status)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces a client's key and secret; the old ones stop working at once. False when
    /// there is no such client.
    pub async fn replace_credentials(
        &self,
        id: &str,
        sealed: &SealedCredentials,
        now: Millis,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE clients SET api_key_hash = $1, api_secret_sealed = $2, \
             result_key_sealed = $3, credentials_rotated_at = $4 WHERE id = $5",
        )
        .bind(sealed.api_key_hash.as_str())
        .bind(sealed.api_secret_sealed.as_str())
        .bind(sealed.result_key_sealed.as_str())
        .bind(now)
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(conflict_or_error)?;
        Ok(done.rows_affected() == 1)
    }

    /// The version of the client's gallery: it changes whenever the client's templates do.
    /// `None` when there is no such client.
    pub async fn gallery_version(&self, id: &str) -> StoreResult<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT gallery_version FROM clients WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// Every client's gallery version.
    pub async fn gallery_versions(&self) -> StoreResult<Vec<(String, i64)>> {
        Ok(sqlx::query_as("SELECT id, gallery_version FROM clients")
            .fetch_all(self.pool())
            .await?)
    }
}
