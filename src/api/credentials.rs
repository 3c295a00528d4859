//! `POST /api/core/auth/client/` (key and secret for a JWT) and the seed's credential reset.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::caller::{Caller, Remote};
use super::errors::{ApiError, Body};
use super::{ApiState, ErrorBody, iso};
use crate::tenants::AuthError;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct TokenRequest {
    api_key: String,
    api_secret: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RateLimits {
    per_hour: i64,
    per_day: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenAnswer {
    client_id: String,
    client_name: String,
    tier: String,
    /// The API key the token was issued for, as the seed echoes it.
    api_key: String,
    token_type: &'static str,
    access_token: String,
    expires_at: String,
    features: Vec<&'static str>,
    rate_limits: RateLimits,
}

/// Exchanges a client's key and secret for a JWT valid for an hour, signed with the secret.
#[utoipa::path(
    post,
    path = "/api/core/auth/client/",
    tag = "credentials",
    request_body = TokenRequest,
    responses(
        (status = 200, body = TokenAnswer),
        (status = 400, body = ErrorBody),
        (status = 401, description = "wrong or inactive credentials", body = ErrorBody),
    )
)]
pub async fn issue_token(
    State(state): State<ApiState>,
    Remote(remote): Remote,
    Body(request): Body<TokenRequest>,
) -> Result<axum::Json<TokenAnswer>, ApiError> {
    let tenants = &state.tenants;
    match tenants
        .issue_token(&request.api_key, &request.api_secret)
        .await
    {
        Ok(issued) => {
            let client = &issued.client;
            tenants
                .audit(
                    Some(&client.id),
                    "token_issued",
                    true,
                    "JWT issued",
                    Some(remote),
                )
                .await?;
            Ok(axum::Json(TokenAnswer {
                client_id: client.id.clone(),
                client_name: client.name.clone(),
                tier: client.tier.name().to_owned(),
                api_key: request.api_key,
                token_type: "JWT",
                access_token: issued.access_token,
                expires_at: iso(issued.expires_at),
                features: client.tier.features().to_vec(),
                rate_limits: RateLimits {
                    per_hour: client.per_hour,
                    per_day: client.per_day,
                },
            }))
        }
        Err(AuthError::Refused { reason, client_id }) => {
            tenants
                .audit(
                    client_id.as_deref(),
                    "token_issued",
                    false,
                    reason.detail(),
                    Some(remote),
                )
                .await?;
            Err(ApiError::new(StatusCode::UNAUTHORIZED, reason.detail()))
        }
        Err(AuthError::Store(error)) => Err(error.into()),
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct NewCredentials {
    client_id: String,
    api_key: String,
    api_secret: String,
    message: &'static str,
}

/// New key and secret for the calling client; the old ones stop working at once.
#[utoipa::path(
    post,
    path = "/api/clients/clients/{client_id}/reset_credentials/",
    tag = "credentials",
    params(("client_id" = String, Path, description = "the calling client's own id")),
    responses(
        (status = 200, body = NewCredentials),
        (status = 403, body = ErrorBody),
        (status = 404, description = "not the caller's id", body = ErrorBody),
    )
)]
pub async fn reset(
    State(state): State<ApiState>,
    caller: Caller,
    Path(client_id): Path<String>,
) -> Result<axum::Json<NewCredentials>, ApiError> {
    if client_id != caller.client.id {
        return Err(ApiError::not_found("Client"));
    }
    let tenants = &state.tenants;
    let issued = tenants
        .rotate(&client_id)
        .await?
        .ok_or_else(|| ApiError::not_found("Client"))?;
    tenants
        .audit(
            Some(&client_id),
            "credentials_rotated",
            true,
            "over the API",
            Some(caller.remote_addr),
        )
        .await?;
    Ok(axum::Json(NewCredentials {
        client_id: issued.client_id,
        api_key: issued.api_key,
        api_secret: issued.api_secret,
        message: "Credentials reset: the previous key and secret no longer work",
    }))
}
