//! The seed's REST API (`../shared/PROTOCOL.md`, second half): client credentials and JWTs,
//! users, REST-issued sessions, the audit log, and an OpenAPI document generated from the
//! handlers. Each request's caller is authenticated by `caller`; every query names the
//! caller's client, so a tenant sees only its own rows, and another tenant's ids are 404.

mod audit;
mod caller;
mod credentials;
pub mod errors;
mod pages;
mod photos;
mod sessions;
mod users;
mod webhooks;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use utoipa::OpenApi;

use crate::engine::Engine;
use crate::identity::Identity;
use crate::server::forwarded::ClientOrigin;
use crate::tenants::Tenants;
pub use users::check_external_user_id;

/// Request bodies larger than this are refused (413): the API's bodies are a few hundred
/// bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the REST handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub tenants: Tenants,
    /// How long an issued session may wait for its socket.
    pub session_lifetime: Duration,
    /// Runs reference photos through the models, as frames.
    pub engine: Engine,
    pub identity: Arc<Identity>,
    pub webhooks: Arc<crate::webhooks::Webhooks>,
    /// The largest reference photo taken: a frame's limit (`--max-frame-bytes`).
    pub max_photo_bytes: usize,
    /// Ids for the engine's jobs, shared with the sessions'.
    pub next_job: Arc<AtomicU64>,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/core/auth/client/", post(credentials::issue_token))
        .route(
            "/api/clients/clients/{client_id}/reset_credentials/",
            post(credentials::reset),
        )
        .route("/api/clients/users/", post(users::create).get(users::list))
        .route(
            "/api/clients/users/{external_user_id}/",
            get(users::read)
                .put(users::replace)
                .patch(users::update)
                .delete(users::delete),
        )
        .route(
            "/api/clients/users/{external_user_id}/activate/",
            post(users::activate),
        )
        .route(
            "/api/clients/users/{external_user_id}/deactivate/",
            post(users::deactivate),
        )
        .route(
            "/api/clients/users/{external_user_id}/enrollments/",
            get(users::enrollments),
        )
        .route(
            "/api/clients/users/{external_user_id}/photo/",
            post(photos::upload),
        )
        .route("/api/auth/enrollment/", post(sessions::create_enrollment))
        .route(
            "/api/auth/authentication/",
            post(sessions::create_authentication),
        )
        .route("/api/auth/sessions/", get(sessions::list))
        .route("/api/auth/sessions/{session}/", get(sessions::read))
        .route(
            "/api/auth/sessions/{session}/status/",
            get(sessions::status),
        )
        .route("/api/core/audit-logs/", get(audit::list))
        .route(
            "/api/clients/webhooks/",
            post(webhooks::create).get(webhooks::list),
        )
        .route(
            "/api/clients/webhooks/{endpoint}/",
            axum::routing::delete(webhooks::delete),
        )
        .route(
            "/api/clients/webhook-deliveries/",
            get(webhooks::deliveries),
        )
        .route("/api/schema/", get(schema))
        .method_not_allowed_fallback(errors::method_not_allowed)
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "face-service",
        description = "The seed's REST API: client credentials, users, enrollment and \
                       authentication sessions, audit log. Authenticate with `X-API-Key`, \
                       `Authorization: Bearer <api_key>` or `Authorization: JWT <token>`."
    ),
    paths(
        credentials::issue_token,
        credentials::reset,
        users::create,
        users::list,
        users::read,
        users::replace,
        users::update,
        users::delete,
        users::activate,
        users::deactivate,
        users::enrollments,
        photos::upload,
        sessions::create_enrollment,
        sessions::create_authentication,
        sessions::list,
        sessions::read,
        sessions::status,
        audit::list,
        webhooks::create,
        webhooks::list,
        webhooks::delete,
        webhooks::deliveries,
    )
)]
struct ApiDoc;

/// The OpenAPI 3 document of this API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

async fn schema() -> impl IntoResponse {
    axum::Json(openapi())
}

/// `{"detail": ...}`, the body of every error.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub detail: String,
}

/// Where the request was addressed, for the URLs the answers hand back: the host and scheme
/// the client used, as the trusted proxies in front report them (`server::forwarded`).
pub struct RequestOrigin {
    pub secure: bool,
    pub host: String,
}

impl<S: Send + Sync> FromRequestParts<S> for RequestOrigin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let origin = ClientOrigin::from_request_parts(parts, state).await?;
        Ok(RequestOrigin {
            secure: origin.secure,
            host: origin.host.unwrap_or_else(|| "localhost".to_owned()),
        })
    }
}

impl RequestOrigin {
    pub fn http_url(&self, path_and_query: &str) -> String {
        let scheme = if self.secure { "https" } else { "http" };
        format!("{scheme}://{}{path_and_query}", self.host)
    }

    pub fn websocket_url(&self, token: &str) -> String {
        let scheme = if self.secure { "wss" } else { "ws" };
        format!("{scheme}://{}/ws/auth/process-image/{token}/", self.host)
    }
}

/// A stored time as ISO 8601 in UTC, as the seed's answers give times.
pub fn iso(millis: crate::store::Millis) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A stored JSON document (always written from a parsed object) back as JSON.
fn parse_document(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::json!({}))
}
