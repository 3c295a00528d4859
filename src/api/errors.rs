//! Every REST error is JSON `{"detail": ...}` with its status, whatever failed: a handler, a
//! body that does not parse, a path that does not exist, the store. Store errors are logged
//! here and answered without their text.

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use super::MAX_BODY_BYTES;
use serde_json::json;

use crate::store::StoreError;
use crate::tenants::AuthError;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    detail: String,
    retry_after_secs: Option<i64>,
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            detail: detail.into(),
            retry_after_secs: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 404 for what does not exist and for what belongs to another client alike, so that ids
    /// do not leak across tenants.
    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, format!("{what} not found"))
    }

    /// A DELETE's answer: 204 when `what` was there (and is gone), 404 when it was not.
    pub fn deleted(found: bool, what: &str) -> Result<StatusCode, ApiError> {
        if found {
            Ok(StatusCode::NO_CONTENT)
        } else {
            Err(ApiError::not_found(what))
        }
    }

    pub fn too_many_requests(detail: String, retry_after_secs: i64) -> ApiError {
        ApiError {
            retry_after_secs: Some(retry_after_secs.max(1)),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, detail)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, axum::Json(json!({ "detail": self.detail }))).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::Conflict => ApiError::new(StatusCode::CONFLICT, "already exists"),
            error => {
                tracing::error!(%error, "store error");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the store is unavailable: try again",
                )
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> ApiError {
        match error {
            AuthError::Refused { reason, .. } => {
                ApiError::new(StatusCode::FORBIDDEN, reason.detail())
            }
            AuthError::Store(error) => error.into(),
        }
    }
}

/// axum's JSON body, with its rejections (not JSON, wrong types, too large) answered as JSON.
pub struct Body<T>(pub T);

/// How much of a body over the limit is still read (and dropped) before the 413 goes out: a
/// server that answers while the client is still sending resets the connection, and the
/// client may never see the answer. Past this the connection is cut.
const DRAINED_BYTES: usize = 8 << 20;

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, ApiError> {
        let request = limited(request, MAX_BODY_BYTES).await?;
        Ok(Body(json_of(request).await?))
    }
}

/// A body already read (`limited`) as JSON of `T`.
pub async fn json_of<T: DeserializeOwned>(request: Request) -> Result<T, ApiError> {
    match axum::Json::<T>::from_request(request, &()).await {
        Ok(axum::Json(value)) => Ok(value),
        Err(rejection) => {
            // Not JSON keeps its status; a body of the wrong shape is a 400, as the seed
            // answers it (axum would say 422).
            let status = match rejection.status() {
                StatusCode::UNSUPPORTED_MEDIA_TYPE => rejection.status(),
                _ => StatusCode::BAD_REQUEST,
            };
            Err(ApiError::new(status, rejection.body_text()))
        }
    }
}

/// The request with its body read into memory, or 413 when the body is over `limit` bytes.
pub async fn limited(request: Request, limit: usize) -> Result<Request, ApiError> {
    let (parts, body) = request.into_parts();
    let mut chunks = body.into_data_stream();
    let (mut kept, mut seen) = (Vec::new(), 0usize);
    while let Some(chunk) = chunks.next().await {
        let chunk =
            chunk.map_err(|_| ApiError::bad_request("the request body could not be read"))?;
        seen += chunk.len();
        if seen <= limit {
            kept.extend_from_slice(&chunk);
        } else if seen > DRAINED_BYTES.max(limit) {
            break;
        }
    }
    if seen > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body too large: at most {limit} bytes"),
        ));
    }
    Ok(Request::from_parts(parts, axum::body::Body::from(kept)))
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "Not found.")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.")
}
