//! `/api/clients/users/`: the calling client's users, by its own ids for them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::caller::Caller;
use super::errors::{ApiError, Body};
use super::pages::{PageQuery, Paginated};
use super::{ApiState, ErrorBody, iso, parse_document};
use crate::store::users::{UserChange, UserRow};

/// The longest `external_user_id` taken, as the seed's column.
const MAX_EXTERNAL_ID_CHARS: usize = 255;

/// Letters and digits of any script, and `. _ - @ : +`: what tenants' ids are made of, and
/// nothing that a URL path or a log line would misread.
pub fn check_external_user_id(id: &str) -> Result<(), ApiError> {
    let valid = !id.is_empty()
        && id.chars().count() <= MAX_EXTERNAL_ID_CHARS
        && id
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | ':' | '+'));
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "external_user_id must be 1 to {MAX_EXTERNAL_ID_CHARS} letters, digits or . _ - @ : +"
        )))
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewUser {
    external_user_id: String,
    #[schema(value_type = Option<Object>)]
    profile: Option<Map<String, Value>>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<Map<String, Value>>,
    face_auth_enabled: Option<bool>,
}

/// A change: `PUT` sets every field (absent ones to their defaults), `PATCH` only those given.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct UserFields {
    /// If given, the user's own id: it cannot change.
    external_user_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    profile: Option<Map<String, Value>>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<Map<String, Value>>,
    face_auth_enabled: Option<bool>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UserBody {
    id: String,
    external_user_id: String,
    #[schema(value_type = Object)]
    profile: Value,
    #[schema(value_type = Object)]
    metadata: Value,
    is_active: bool,
    is_enrolled: bool,
    enrollment_completed_at: Option<String>,
    face_auth_enabled: bool,
    last_recognition_at: Option<String>,
    created_at: String,
    updated_at: String,
    display_name: String,
}

impl From<UserRow> for UserBody {
    fn from(row: UserRow) -> UserBody {
        let profile = parse_document(&row.profile);
        let display_name = ["display_name", "full_name", "name"]
            .iter()
            .find_map(|key| profile.get(key).and_then(Value::as_str))
            .filter(|name| !name.is_empty())
            .unwrap_or(&row.external_user_id)
            .to_owned();
        UserBody {
            id: row.id,
            profile,
            metadata: parse_document(&row.metadata),
            is_active: row.is_active != 0,
            is_enrolled: row.is_enrolled != 0,
            enrollment_completed_at: row.enrollment_completed_at.map(iso),
            face_auth_enabled: row.face_auth_enabled != 0,
            last_recognition_at: row.last_recognition_at.map(iso),
            created_at: iso(row.created_at),
            updated_at: iso(row.updated_at),
            display_name,
            external_user_id: row.external_user_id,
        }
    }
}

fn document(object: Option<Map<String, Value>>) -> String {
    Value::Object(object.unwrap_or_default()).to_string()
}

#[utoipa::path(
    post,
    path = "/api/clients/users/",
    tag = "users",
    request_body = NewUser,
    responses(
        (status = 201, body = UserBody),
        (status = 400, body = ErrorBody),
        (status = 409, description = "the client has a user with this id", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    Body(user): Body<NewUser>,
) -> Result<(StatusCode, axum::Json<UserBody>), ApiError> {
    check_external_user_id(&user.external_user_id)?;
    let now = crate::store::now();
    let row = UserRow {
        client_id: caller.client.id,
        external_user_id: user.external_user_id,
        id: uuid::Uuid::new_v4().to_string(),
        profile: document(user.profile),
        metadata: document(user.metadata),
        is_active: 1,
        face_auth_enabled: i64::from(user.face_auth_enabled.unwrap_or(true)),
        is_enrolled: 0,
        enrollment_completed_at: None,
        last_recognition_at: None,
        created_at: now,
        updated_at: now,
    };
    match state.tenants.store().insert_user(&row).await {
        Ok(()) => Ok((StatusCode::CREATED, axum::Json(row.into()))),
        Err(crate::store::StoreError::Conflict) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "A user with this external_user_id already exists",
        )),
        Err(error) => Err(error.into()),
    }
}

#[utoipa::path(
    get,
    path = "/api/clients/users/",
    tag = "users",
    params(("page" = Option<i64>, Query, description = "1-based, 20 users a page")),
    responses((status = 200, body = Paginated<UserBody>), (status = 404, body = ErrorBody))
)]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    page: PageQuery,
) -> Result<axum::Json<Paginated<UserBody>>, ApiError> {
    let users = state
        .tenants
        .store()
        .users(&caller.client.id, page.request())
        .await?;
    Ok(axum::Json(page.answer(users, UserBody::from)?))
}

async fn find(state: &ApiState, caller: &Caller, id: &str) -> Result<UserRow, ApiError> {
    state
        .tenants
        .store()
        .user(&caller.client.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("User"))
}

#[utoipa::path(
    get,
    path = "/api/clients/users/{external_user_id}/",
    tag = "users",
    params(("external_user_id" = String, Path)),
    responses((status = 200, body = UserBody), (status = 404, body = ErrorBody))
)]
pub async fn read(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<UserBody>, ApiError> {
    Ok(axum::Json(find(&state, &caller, &id).await?.into()))
}

#[utoipa::path(
    put,
    path = "/api/clients/users/{external_user_id}/",
    tag = "users",
    params(("external_user_id" = String, Path)),
    request_body = UserFields,
    responses((status = 200, body = UserBody), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn replace(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(fields): Body<UserFields>,
) -> Result<axum::Json<UserBody>, ApiError> {
    change(&state, &caller, &id, fields, None).await
}

#[utoipa::path(
    patch,
    path = "/api/clients/users/{external_user_id}/",
    tag = "users",
    params(("external_user_id" = String, Path)),
    request_body = UserFields,
    responses((status = 200, body = UserBody), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(fields): Body<UserFields>,
) -> Result<axum::Json<UserBody>, ApiError> {
    let current = find(&state, &caller, &id).await?;
    change(&state, &caller, &id, fields, Some(current)).await
}

/// Applies `fields` over `base` (a `PATCH`) or over the defaults (a `PUT`).
async fn change(
    state: &ApiState,
    caller: &Caller,
    id: &str,
    fields: UserFields,
    base: Option<UserRow>,
) -> Result<axum::Json<UserBody>, ApiError> {
    if fields
        .external_user_id
        .as_deref()
        .is_some_and(|given| given != id)
    {
        return Err(ApiError::bad_request("external_user_id cannot change"));
    }
    let keep = |field: Option<Map<String, Value>>, current: Option<&String>| match (field, current)
    {
        (Some(object), _) => Value::Object(object).to_string(),
        (None, Some(current)) => current.clone(),
        (None, None) => "{}".to_owned(),
    };
    let change = UserChange {
        profile: keep(fields.profile, base.as_ref().map(|b| &b.profile)),
        metadata: keep(fields.metadata, base.as_ref().map(|b| &b.metadata)),
        face_auth_enabled: fields
            .face_auth_enabled
            .unwrap_or(base.as_ref().is_none_or(|b| b.face_auth_enabled != 0)),
    };
    let updated = state
        .tenants
        .store()
        .update_user(&caller.client.id, id, &change, crate::store::now())
        .await?
        .ok_or_else(|| ApiError::not_found("User"))?;
    Ok(axum::Json(updated.into()))
}

/// Deletes the user with its enrollments, sessions and face templates.
#[utoipa::path(
    delete,
    path = "/api/clients/users/{external_user_id}/",
    tag = "users",
    params(("external_user_id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody))
)]
pub async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let found = state
        .tenants
        .store()
        .delete_user(&caller.client.id, &id)
        .await?;
    ApiError::deleted(found, "User")
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UserActivation {
    message: &'static str,
    user: UserBody,
}

#[utoipa::path(
    post,
    path = "/api/clients/users/{external_user_id}/activate/",
    tag = "users",
    params(("external_user_id" = String, Path)),
    responses((status = 200, body = UserActivation), (status = 404, body = ErrorBody))
)]
pub async fn activate(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<UserActivation>, ApiError> {
    set_active(&state, &caller, &id, true).await
}

#[utoipa::path(
    post,
    path = "/api/clients/users/{external_user_id}/deactivate/",
    tag = "users",
    params(("external_user_id" = String, Path)),
    responses((status = 200, body = UserActivation), (status = 404, body = ErrorBody))
)]
pub async fn deactivate(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<UserActivation>, ApiError> {
    set_active(&state, &caller, &id, false).await
}

async fn set_active(
    state: &ApiState,
    caller: &Caller,
    id: &str,
    active: bool,
) -> Result<axum::Json<UserActivation>, ApiError> {
    let user = state
        .tenants
        .store()
        .set_user_active(&caller.client.id, id, active, crate::store::now())
        .await?
        .ok_or_else(|| ApiError::not_found("User"))?;
    Ok(axum::Json(UserActivation {
        message: if active {
            "User activated"
        } else {
            "User deactivated"
        },
        user: user.into(),
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EnrollmentBody {
    id: String,
    status: String,
    quality_score: Option<f64>,
    created_at: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UserEnrollments {
    count: usize,
    enrollments: Vec<EnrollmentBody>,
}

#[utoipa::path(
    get,
    path = "/api/clients/users/{external_user_id}/enrollments/",
    tag = "users",
    params(("external_user_id" = String, Path)),
    responses((status = 200, body = UserEnrollments), (status = 404, body = ErrorBody))
)]
pub async fn enrollments(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<UserEnrollments>, ApiError> {
    find(&state, &caller, &id).await?;
    let enrollments: Vec<EnrollmentBody> = state
        .tenants
        .store()
        .enrollments(&caller.client.id, &id)
        .await?
        .into_iter()
        .map(|row| EnrollmentBody {
            id: row.id,
            status: row.status,
            quality_score: row.quality_score,
            created_at: iso(row.created_at),
        })
        .collect();
    Ok(axum::Json(UserEnrollments {
        count: enrollments.len(),
        enrollments,
    }))
}
