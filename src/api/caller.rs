//! Who is calling: the credentials of a request (`X-API-Key`, `Authorization: Bearer` with a
//! key or, as an extension, a JWT, `Authorization: JWT`), checked, audited when refused, and
//! counted against the client's hourly and daily limits.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;

use super::ApiState;
use super::errors::ApiError;
use crate::server::forwarded::ClientOrigin;
use crate::tenants::credentials::API_KEY_PREFIX;
use crate::tenants::{AuthError, Client, Credential, Refusal};

/// The authenticated client of a request.
pub struct Caller {
    pub client: Client,
    /// The client's address: the peer's, or as the trusted proxies in front report it.
    pub remote_addr: String,
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Caller, ApiError> {
        let remote_addr = remote_addr(parts).await;
        let authenticated = match credential(&parts.headers) {
            Some(credential) => state.tenants.authenticate(&credential).await,
            None => Err(AuthError::Refused {
                reason: Refusal::Missing,
                client_id: None,
            }),
        };
        let client = match authenticated {
            Ok(client) => client,
            Err(AuthError::Refused { reason, client_id }) => {
                state
                    .tenants
                    .audit(
                        client_id.as_deref(),
                        "authentication",
                        false,
                        reason.detail(),
                        Some(remote_addr),
                    )
                    .await?;
                return Err(AuthError::Refused { reason, client_id }.into());
            }
            Err(error) => return Err(error.into()),
        };
        let now = crate::store::now();
        let usage = state.tenants.store().count_request(&client.id, now).await?;
        if usage.this_hour > client.per_hour {
            return Err(ApiError::too_many_requests(
                format!("Request limit exceeded: {} per hour", client.per_hour),
                (usage.hour_ends - now + 999) / 1000,
            ));
        }
        if usage.today > client.per_day {
            return Err(ApiError::too_many_requests(
                format!("Request limit exceeded: {} per day", client.per_day),
                (usage.day_ends - now + 999) / 1000,
            ));
        }
        Ok(Caller {
            client,
            remote_addr,
        })
    }
}

/// The peer's address, for the audit log of unauthenticated requests.
pub struct Remote(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Remote {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Remote(remote_addr(parts).await))
    }
}

/// The client's address: the peer's, or as the trusted proxies in front report it.
async fn remote_addr(parts: &mut Parts) -> String {
    let Ok(origin) = ClientOrigin::from_request_parts(parts, &()).await;
    origin.address.to_string()
}

fn credential(headers: &HeaderMap) -> Option<Credential> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(key) = header("x-api-key") {
        return Some(Credential::ApiKey(key.to_owned()));
    }
    let (scheme, value) = header("authorization")?.split_once(' ')?;
    let value = value.trim().to_owned();
    match scheme {
        "JWT" => Some(Credential::Jwt(value)),
        "Bearer" if value.starts_with(API_KEY_PREFIX) => Some(Credential::ApiKey(value)),
        // The seed's guide shows `Bearer <jwt>`; the seed itself refuses it.
        "Bearer" => Some(Credential::Jwt(value)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &'static str, value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, value.parse().unwrap());
        headers
    }

    #[test]
    fn each_of_the_seeds_credential_forms_is_read() {
        let key = |k: &str| Some(Credential::ApiKey(k.into()));
        let jwt = |t: &str| Some(Credential::Jwt(t.into()));
        assert_eq!(credential(&headers("x-api-key", "frapi_a")), key("frapi_a"));
        assert_eq!(
            credential(&headers("authorization", "Bearer frapi_a")),
            key("frapi_a")
        );
        assert_eq!(
            credential(&headers("authorization", "JWT a.b.c")),
            jwt("a.b.c")
        );
        assert_eq!(
            credential(&headers("authorization", "Bearer a.b.c")),
            jwt("a.b.c")
        );
        assert_eq!(credential(&headers("authorization", "Basic abc")), None);
        assert_eq!(credential(&HeaderMap::new()), None);
    }
}
