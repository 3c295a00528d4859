//! The live demo: one self-contained page, compiled in, that streams the camera over the
//! seed protocol and draws what comes back; and in open mode, the backend of a tenant of the
//! server's own, `Demo`, so that the page can "enroll as NAME" and then "sign in". The backend
//! does what a tenant's app server does: it creates the user and the session through the REST
//! API, over loopback, with the demo tenant's key, and hands the browser only the session's
//! token.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::server::AppState;
use crate::tenants::Tenants;

pub async fn page() -> Html<&'static str> {
    Html(include_str!("index.html"))
}

/// The demo tenant's backend.
pub struct DemoBackend {
    api_key: String,
    /// This server's REST API, on loopback.
    base: String,
    http: reqwest::Client,
}

impl DemoBackend {
    /// The demo tenant's backend, for the server listening at `address`.
    pub async fn start(
        tenants: &Tenants,
        address: SocketAddr,
    ) -> crate::store::StoreResult<DemoBackend> {
        let credentials = tenants.demo_client().await?;
        let loopback = SocketAddr::from(([127, 0, 0, 1], address.port()));
        Ok(DemoBackend {
            api_key: credentials.api_key,
            base: format!("http://{loopback}"),
            http: reqwest::Client::new(),
        })
    }

    /// POSTs to the REST API as the demo tenant; the status and the answer.
    async fn post(&self, path: &str, body: Value) -> Result<(StatusCode, Value), Problem> {
        let unreachable = |error: reqwest::Error| {
            tracing::error!(%error, "the demo backend could not reach the REST API");
            Problem(
                StatusCode::BAD_GATEWAY,
                "the demo backend could not reach the API",
            )
        };
        let answer = self
            .http
            .post(format!("{}{path}", self.base))
            .header("X-API-Key", &self.api_key)
            .json(&body)
            .send()
            .await
            .map_err(unreachable)?;
        let status = StatusCode::from_u16(answer.status().as_u16())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = answer.json().await.map_err(unreachable)?;
        Ok((status, body))
    }
}

/// Why the demo backend could not give the page a session.
pub struct Problem(StatusCode, &'static str);

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "detail": self.1 }))).into_response()
    }
}

const NOT_OPEN: Problem = Problem(
    StatusCode::NOT_FOUND,
    "the demo tenant runs in open mode only",
);

#[derive(Deserialize)]
pub struct EnrollRequest {
    name: String,
}

/// The demo tenant's id for a person called `name`: the name, spaces as underscores.
fn user_id_for(name: &str) -> Result<String, Problem> {
    let id = name.trim().replace(char::is_whitespace, "_");
    crate::api::check_external_user_id(&id)
        .map(|()| id)
        .map_err(|_| {
            Problem(
                StatusCode::BAD_REQUEST,
                "a name is 1 to 255 letters, digits, spaces or . _ - @ : +",
            )
        })
}

/// `POST /demo/enroll/` `{"name"}`: the user (made if new) and an enrollment session for it.
pub async fn enroll(
    State(state): State<AppState>,
    Json(request): Json<EnrollRequest>,
) -> Result<Response, Problem> {
    let demo = state.demo.as_ref().ok_or(NOT_OPEN)?;
    let user = user_id_for(&request.name)?;
    let profile = json!({ "display_name": request.name.trim() });
    let (status, answer) = demo
        .post(
            "/api/clients/users/",
            json!({ "external_user_id": user, "profile": profile }),
        )
        .await?;
    // An existing user enrolls again.
    if !(status == StatusCode::CREATED || status == StatusCode::CONFLICT) {
        return Ok((status, Json(answer)).into_response());
    }
    let (status, answer) = demo
        .post(
            "/api/auth/enrollment/",
            json!({ "user_id": user, "session_type": "webcam" }),
        )
        .await?;
    let session = json!({ "session_token": answer["session_token"], "user_id": user });
    Ok((status, Json(session)).into_response())
}

/// `POST /demo/sign-in/`: an identification session over the demo tenant's users.
pub async fn sign_in(State(state): State<AppState>) -> Result<Response, Problem> {
    let demo = state.demo.as_ref().ok_or(NOT_OPEN)?;
    let (status, answer) = demo
        .post(
            "/api/auth/authentication/",
            json!({ "session_type": "webcam" }),
        )
        .await?;
    let session = json!({ "session_token": answer["session_token"] });
    Ok((status, Json(session)).into_response())
}
