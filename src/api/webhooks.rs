//! `/api/clients/webhooks/`: the calling client's webhook endpoints (an extension; the seed has
//! the code but never sends), and `/api/clients/webhook-deliveries/`, their delivery log.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::caller::Caller;
use super::errors::{ApiError, Body};
use super::pages::{PageQuery, Paginated};
use super::{ApiState, ErrorBody, iso};
use crate::store::webhooks::{DeliveryRow, EndpointRow};
use crate::webhooks::EVENTS;

/// The longest endpoint URL taken.
const MAX_URL_CHARS: usize = 2048;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewEndpoint {
    /// Where deliveries are POSTed: `http://` or `https://`.
    url: String,
    /// Some of `enrollment.completed`, `authentication.success`, `authentication.failed`;
    /// all of them when absent.
    events: Option<Vec<String>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Endpoint {
    id: String,
    url: String,
    events: Vec<String>,
    created_at: String,
    /// Signs every delivery (`X-FR-Signature`); shown once, when the endpoint is made.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl Endpoint {
    fn of(row: EndpointRow, secret: Option<String>) -> Endpoint {
        Endpoint {
            id: row.id,
            url: row.url,
            events: serde_json::from_str(&row.events).unwrap_or_default(),
            created_at: iso(row.created_at),
            secret,
        }
    }
}

#[utoipa::path(
    post,
    path = "/api/clients/webhooks/",
    tag = "webhooks",
    request_body = NewEndpoint,
    responses((status = 201, body = Endpoint), (status = 400, body = ErrorBody))
)]
pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    Body(request): Body<NewEndpoint>,
) -> Result<(StatusCode, axum::Json<Endpoint>), ApiError> {
    let url = request.url.trim();
    let parsed = reqwest::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    let Some(parsed) = parsed.filter(|_| url.chars().count() <= MAX_URL_CHARS) else {
        return Err(ApiError::bad_request(format!(
            "url must be an http:// or https:// URL of at most {MAX_URL_CHARS} characters"
        )));
    };
    if let Some(reason) = state.webhooks.refused_destination(&parsed) {
        return Err(ApiError::bad_request(format!(
            "url must reach a public address: {reason}"
        )));
    }
    let events = request
        .events
        .unwrap_or_else(|| EVENTS.map(str::to_owned).to_vec());
    if events.is_empty() || events.iter().any(|e| !EVENTS.contains(&e.as_str())) {
        return Err(ApiError::bad_request(format!(
            "events must be some of {}",
            EVENTS.join(", ")
        )));
    }
    let made = state
        .webhooks
        .add_endpoint(&caller.client.id, url, &events)
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(Endpoint::of(made.row, Some(made.secret))),
    ))
}

#[utoipa::path(
    get,
    path = "/api/clients/webhooks/",
    tag = "webhooks",
    responses((status = 200, body = Vec<Endpoint>))
)]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<axum::Json<Vec<Endpoint>>, ApiError> {
    let rows = state.tenants.store().endpoints(&caller.client.id).await?;
    Ok(axum::Json(
        rows.into_iter()
            .map(|row| Endpoint::of(row, None))
            .collect(),
    ))
}

#[utoipa::path(
    delete,
    path = "/api/clients/webhooks/{endpoint}/",
    tag = "webhooks",
    params(("endpoint" = String, Path, description = "the endpoint's id")),
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
        .delete_endpoint(&caller.client.id, &id)
        .await?;
    ApiError::deleted(found, "Webhook endpoint")
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Delivery {
    delivery_id: String,
    endpoint_id: String,
    event: String,
    /// `pending`, `delivered` or `failed` (out of attempts).
    status: String,
    attempts: i64,
    last_status_code: Option<i64>,
    last_error: Option<String>,
    next_attempt_at: Option<String>,
    created_at: String,
    delivered_at: Option<String>,
}

impl From<DeliveryRow> for Delivery {
    fn from(row: DeliveryRow) -> Delivery {
        Delivery {
            next_attempt_at: (row.status == "pending").then(|| iso(row.next_attempt_at)),
            delivery_id: row.id,
            endpoint_id: row.endpoint_id,
            event: row.event,
            status: row.status,
            attempts: row.attempts,
            last_status_code: row.last_status_code,
            last_error: row.last_error,
            created_at: iso(row.created_at),
            delivered_at: row.delivered_at.map(iso),
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/clients/webhook-deliveries/",
    tag = "webhooks",
    params(("page" = Option<i64>, Query, description = "1-based, 20 deliveries a page")),
    responses((status = 200, body = Paginated<Delivery>))
)]
pub async fn deliveries(
    State(state): State<ApiState>,
    caller: Caller,
    page: PageQuery,
) -> Result<axum::Json<Paginated<Delivery>>, ApiError> {
    let rows = state
        .tenants
        .store()
        .deliveries(&caller.client.id, page.request())
        .await?;
    Ok(axum::Json(page.answer(rows, Delivery::from)?))
}
