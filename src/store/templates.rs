//! Users' face templates, sealed before they reach the store: the rows a tenant's gallery is
//! loaded from, and a user's own. Every change to a client's templates bumps its gallery
//! version in the same transaction, so that every process holding the gallery in memory sees
//! it is stale. Deleting a user deletes its templates by the schema's cascade.

use sqlx::AnyConnection;

use super::{Millis, Store, StoreResult, conflict_or_error};

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct TemplateRow {
    pub client_id: String,
    pub external_user_id: String,
    pub id: String,
    /// `live` or `photo`.
    pub source: String,
    pub template_sealed: String,
    pub created_at: Millis,
    /// 1 when the template may match its user: a live one always; a photo's where the tenant
    /// asked, until its user has a live one.
    pub for_matching: i64,
}

/// An enrollment that passed: its user's new templates and its quality.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletedEnrollment<'a> {
    pub client_id: &'a str,
    pub external_user_id: &'a str,
    pub enrollment_id: &'a str,
    pub templates: &'a [TemplateRow],
    /// The user's newest templates kept; older ones go.
    pub keep: usize,
    pub quality_score: f64,
    pub at: Millis,
}

const COLUMNS: &str =
    "client_id, external_user_id, id, source, template_sealed, created_at, for_matching";

impl Store {
    /// Sets a user's reference photo's template, replacing the one before, in one transaction.
    pub async fn replace_photo_template(&self, template: &TemplateRow) -> StoreResult<()> {
        let mut transaction = self.pool().begin().await?;
        sqlx::query(
            "DELETE FROM face_templates WHERE client_id = $1 AND external_user_id = $2 \
             AND source = 'photo'",
        )
        .bind(template.client_id.as_str())
        .bind(template.external_user_id.as_str())
        .execute(&mut *transaction)
        .await?;
        insert(&mut transaction, template).await?;
        bump_gallery(&mut transaction, &template.client_id).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Adds a live template, then drops the user's oldest live ones beyond `keep`, in one
    /// transaction.
    /// `Conflict` when the id is taken; an error when the user does not exist.
    pub async fn insert_template(&self, template: &TemplateRow, keep: usize) -> StoreResult<()> {
        let mut transaction = self.pool().begin().await?;
        insert(&mut transaction, template).await?;
        keep_newest(
            &mut transaction,
            &template.client_id,
            &template.external_user_id,
            keep,
        )
        .await?;
        bump_gallery(&mut transaction, &template.client_id).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Stores an enrollment's templates, marks its user enrolled and the enrollment
    /// completed, all or nothing. False (and nothing changed) when the enrollment is not the
    /// user's pending one.
    pub async fn complete_enrollment(&self, done: &CompletedEnrollment<'_>) -> StoreResult<bool> {
        let mut transaction = self.pool().begin().await?;
        let marked = sqlx::query(
            "UPDATE enrollments SET status = 'completed', quality_score = $1 \
             WHERE client_id = $2 AND id = $3 AND external_user_id = $4 AND status = 'pending'",
        )
        .bind(done.quality_score)
        .bind(done.client_id)
        .bind(done.enrollment_id)
        .bind(done.external_user_id)
        .execute(&mut *transaction)
        .await?;
        if marked.rows_affected() != 1 {
            return Ok(false);
        }
        for template in done.templates {
            insert(&mut transaction, template).await?;
        }
        keep_newest(
            &mut transaction,
            done.client_id,
            done.external_user_id,
            done.keep,
        )
        .await?;
        sqlx::query(
            "UPDATE users SET is_enrolled = 1, enrollment_completed_at = $1, updated_at = $1 \
             WHERE client_id = $2 AND external_user_id = $3",
        )
        .bind(done.at)
        .bind(done.client_id)
        .bind(done.external_user_id)
        .execute(&mut *transaction)
        .await?;
        bump_gallery(&mut transaction, done.client_id).await?;
        transaction.commit().await?;
        Ok(true)
    }

    /// Marks a pending enrollment failed.
    pub async fn fail_enrollment(&self, client_id: &str, enrollment_id: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE enrollments SET status = 'failed' \
             WHERE client_id = $1 AND id = $2 AND status = 'pending'",
        )
        .bind(client_id)
        .bind(enrollment_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Every template of the client's users, oldest first: its gallery.
    pub async fn client_templates(&self, client_id: &str) -> StoreResult<Vec<TemplateRow>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM face_templates WHERE client_id = $1 \
             ORDER BY created_at, id"
        ));
        Ok(sqlx::query_as(sql)
            .bind(client_id)
            .fetch_all(self.pool())
            .await?)
    }

    /// One user's templates, oldest first.
    pub async fn user_templates(
        &self,
        client_id: &str,
        external_user_id: &str,
    ) -> StoreResult<Vec<TemplateRow>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM face_templates WHERE client_id = $1 \
             AND external_user_id = $2 ORDER BY created_at, id"
        ));
        Ok(sqlx::query_as(sql)
            .bind(client_id)
            .bind(external_user_id)
            .fetch_all(self.pool())
            .await?)
    }

    /// Removes one user's templates (a re-enrollment that replaces them); how many went.
    pub async fn delete_user_templates(
        &self,
        client_id: &str,
        external_user_id: &str,
    ) -> StoreResult<u64> {
        let mut transaction = self.pool().begin().await?;
        let done = sqlx::query(
            "DELETE FROM face_templates WHERE client_id = $1 AND external_user_id = $2",
        )
        .bind(client_id)
        .bind(external_user_id)
        .execute(&mut *transaction)
        .await?;
        bump_gallery(&mut transaction, client_id).await?;
        transaction.commit().await?;
        Ok(done.rows_affected())
    }
}

async fn insert(connection: &mut AnyConnection, template: &TemplateRow) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO face_templates (client_id, external_user_id, id, source, \
         template_sealed, created_at, for_matching) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(template.client_id.as_str())
    .bind(template.external_user_id.as_str())
    .bind(template.id.as_str())
    .bind(template.source.as_str())
    .bind(template.template_sealed.as_str())
    .bind(template.created_at)
    .bind(template.for_matching)
    .execute(connection)
    .await
    .map_err(conflict_or_error)?;
    Ok(())
}

/// Drops the user's live templates but the newest `keep`; ties in time are broken by id, so
/// the order is total. The reference photo's stays.
async fn keep_newest(
    connection: &mut AnyConnection,
    client_id: &str,
    external_user_id: &str,
    keep: usize,
) -> StoreResult<()> {
    sqlx::query(
        "DELETE FROM face_templates WHERE client_id = $1 AND external_user_id = $2 \
         AND source = 'live' AND id NOT IN (SELECT id FROM face_templates \
         WHERE client_id = $1 AND external_user_id = $2 AND source = 'live' \
         ORDER BY created_at DESC, id DESC LIMIT $3)",
    )
    .bind(client_id)
    .bind(external_user_id)
    .bind(i64::try_from(keep).unwrap_or(i64::MAX))
    .execute(connection)
    .await?;
    Ok(())
}

/// Marks the client's gallery changed; part of the transaction that changes it.
pub(super) async fn bump_gallery(
    connection: &mut AnyConnection,
    client_id: &str,
) -> StoreResult<()> {
    sqlx::query("UPDATE clients SET gallery_version = gallery_version + 1 WHERE id = $1")
        .bind(client_id)
        .execute(connection)
        .await?;
    Ok(())
}
