//! A client's users, keyed by the client's own id for them (`external_user_id`), and their
//! enrollments. Deleting a user deletes what hangs off it (enrollments, sessions) in the same
//! statement, by the schema's cascades.

use super::{Millis, Page, PageRequest, Store, StoreResult, conflict_or_error};

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct UserRow {
    pub client_id: String,
    pub external_user_id: String,
    pub id: String,
    /// JSON objects, as text.
    pub profile: String,
    pub metadata: String,
    pub is_active: i64,
    pub face_auth_enabled: i64,
    pub is_enrolled: i64,
    pub enrollment_completed_at: Option<Millis>,
    pub last_recognition_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// What a change to a user may set.
#[derive(Debug, Clone, PartialEq)]
pub struct UserChange {
    pub profile: String,
    pub metadata: String,
    pub face_auth_enabled: bool,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct EnrollmentRow {
    pub id: String,
    pub status: String,
    pub quality_score: Option<f64>,
    pub created_at: Millis,
}

const COLUMNS: &str = "client_id, external_user_id, id, profile, metadata, is_active, \
                       face_auth_enabled, is_enrolled, enrollment_completed_at, \
                       last_recognition_at, created_at, updated_at";

impl Store {
    /// `Conflict` when the client has a user with this id already.
    pub async fn insert_user(&self, user: &UserRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO users (client_id, external_user_id, id, profile, metadata, is_active, \
             face_auth_enabled, is_enrolled, enrollment_completed_at, last_recognition_at, \
             created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(user.client_id.as_str())
        .bind(user.external_user_id.as_str())
        .bind(user.id.as_str())
        .bind(user.profile.as_str())
        .bind(user.metadata.as_str())
        .bind(user.is_active)
        .bind(user.face_auth_enabled)
        .bind(user.is_enrolled)
        .bind(user.enrollment_completed_at)
        .bind(user.last_recognition_at)
        .bind(user.created_at)
        .bind(user.updated_at)
        .execute(self.pool())
        .await
        .map_err(conflict_or_error)?;
        Ok(())
    }

    pub async fn user(
        &self,
        client_id: &str,
        external_user_id: &str,
    ) -> StoreResult<Option<UserRow>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM users WHERE client_id = $1 AND external_user_id = $2"
        ));
        Ok(sqlx::query_as(sql)
            .bind(client_id)
            .bind(external_user_id)
            .fetch_optional(self.pool())
            .await?)
    }

    /// The client's users, newest first.
    pub async fn users(&self, client_id: &str, page: PageRequest) -> StoreResult<Page<UserRow>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM users WHERE client_id = $1 \
             ORDER BY created_at DESC, external_user_id LIMIT $2 OFFSET $3"
        ));
        let count = "SELECT COUNT(*) FROM users WHERE client_id = $1";
        self.client_page(sql, count, client_id, page).await
    }

    /// The user after the change, or `None` when the client has no such user.
    pub async fn update_user(
        &self,
        client_id: &str,
        external_user_id: &str,
        change: &UserChange,
        now: Millis,
    ) -> StoreResult<Option<UserRow>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "UPDATE users SET profile = $1, metadata = $2, face_auth_enabled = $3, \
             updated_at = $4 WHERE client_id = $5 AND external_user_id = $6 RETURNING {COLUMNS}"
        ));
        Ok(sqlx::query_as(sql)
            .bind(change.profile.as_str())
            .bind(change.metadata.as_str())
            .bind(i64::from(change.face_auth_enabled))
            .bind(now)
            .bind(client_id)
            .bind(external_user_id)
            .fetch_optional(self.pool())
            .await?)
    }

    pub async fn set_user_active(
        &self,
        client_id: &str,
        external_user_id: &str,
        active: bool,
        now: Millis,
    ) -> StoreResult<Option<UserRow>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "UPDATE users SET is_active = $1, updated_at = $2 \
             WHERE client_id = $3 AND external_user_id = $4 RETURNING {COLUMNS}"
        ));
        Ok(sqlx::query_as(sql)
            .bind(i64::from(active))
            .bind(now)
            .bind(client_id)
            .bind(external_user_id)
            .fetch_optional(self.pool())
            .await?)
    }

    /// Deletes the user with its enrollments and sessions; false when there was none.
    /// Its face templates go too, and the client's gallery is marked changed, in one
    /// transaction.
    pub async fn delete_user(&self, client_id: &str, external_user_id: &str) -> StoreResult<bool> {
        let mut transaction = self.pool().begin().await?;
        let done = sqlx::query("DELETE FROM users WHERE client_id = $1 AND external_user_id = $2")
            .bind(client_id)
            .bind(external_user_id)
            .execute(&mut *transaction)
            .await?;
        super::templates::bump_gallery(&mut transaction, client_id).await?;
        transaction.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Notes that the user was just recognised.
    pub async fn note_recognition(
        &self,
        client_id: &str,
        external_user_id: &str,
        at: Millis,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE users SET last_recognition_at = $1 \
             WHERE client_id = $2 AND external_user_id = $3",
        )
        .bind(at)
        .bind(client_id)
        .bind(external_user_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The user's enrollments, newest first.
    pub async fn enrollments(
        &self,
        client_id: &str,
        external_user_id: &str,
    ) -> StoreResult<Vec<EnrollmentRow>> {
        Ok(sqlx::query_as(
            "SELECT id, status, quality_score, created_at FROM enrollments \
             WHERE client_id = $1 AND external_user_id = $2 ORDER BY created_at DESC, id",
        )
        .bind(client_id)
        .bind(external_user_id)
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn enrollment_status(
        &self,
        client_id: &str,
        enrollment_id: &str,
    ) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT status FROM enrollments WHERE client_id = $1 AND id = $2")
                .bind(client_id)
                .bind(enrollment_id)
                .fetch_optional(self.pool())
                .await?,
        )
    }
}
