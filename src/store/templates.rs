//! Users' face templates, sealed before they reach the store: the rows a tenant's gallery is
//! loaded from, and a user's own. Deleting a user deletes its templates by the schema's
//! cascade.

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
}

const COLUMNS: &str = "client_id, external_user_id, id, source, template_sealed, created_at";

impl Store {
    /// Adds a template, then drops the user's oldest beyond `keep`, in one transaction.
    /// `Conflict` when the id is taken; an error when the user does not exist.
    pub async fn insert_template(&self, template: &TemplateRow, keep: usize) -> StoreResult<()> {
        let mut transaction = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO face_templates (client_id, external_user_id, id, source, \
             template_sealed, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(template.client_id.as_str())
        .bind(template.external_user_id.as_str())
        .bind(template.id.as_str())
        .bind(template.source.as_str())
        .bind(template.template_sealed.as_str())
        .bind(template.created_at)
        .execute(&mut *transaction)
        .await
        .map_err(conflict_or_error)?;
        // The newest `keep` stay; ties in time are broken by id, so the order is total.
        sqlx::query(
            "DELETE FROM face_templates WHERE client_id = $1 AND external_user_id = $2 \
             AND id NOT IN (SELECT id FROM face_templates \
             WHERE client_id = $1 AND external_user_id = $2 \
             ORDER BY created_at DESC, id DESC LIMIT $3)",
        )
        .bind(template.client_id.as_str())
        .bind(template.external_user_id.as_str())
        .bind(i64::try_from(keep).unwrap_or(i64::MAX))
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
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
        let done = sqlx::query(
            "DELETE FROM face_templates WHERE client_id = $1 AND external_user_id = $2",
        )
        .bind(client_id)
        .bind(external_user_id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }
}
