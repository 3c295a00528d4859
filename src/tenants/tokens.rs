//! The seed's client JWTs: HS256, signed with the client's API secret, valid for an hour.
//! Nothing but HS256 verifies (so `alg: none` and algorithm swaps fail), and the token's
//! `client_id` only says whose secret to verify it with.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub const LIFETIME_SECS: i64 = 3600;

/// The seed's claims but `api_key`: a bearer token travels through proxies and logs, and the
/// key in it would outlive the token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub client_id: String,
    pub tier: String,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Expired,
    Invalid,
}

pub fn issue(claims: &Claims, secret: &[u8]) -> String {
    let key = EncodingKey::from_secret(secret).expect("API secrets are not empty");
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key)
        .expect("HS256 signs any claims")
}

/// The client a token says it is from, unverified: only to look up the secret that verifies it.
pub fn claimed_client(token: &str) -> Option<String> {
    jsonwebtoken::dangerous::insecure_decode_claims::<Claims>(token)
        .ok()
        .map(|claims| claims.client_id)
}

pub fn verify(token: &str, secret: &[u8]) -> Result<Claims, TokenError> {
    let key = DecodingKey::from_secret(secret).map_err(|_| TokenError::Invalid)?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "iat"]);
    match jsonwebtoken::decode::<Claims>(token, &key, &validation) {
        Ok(data) => Ok(data.claims),
        Err(e) if *e.kind() == jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
            Err(TokenError::Expired)
        }
        Err(_) => Err(TokenError::Invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn claims(exp_from_now: i64) -> Claims {
        let now = chrono::Utc::now().timestamp();
        Claims {
            client_id: "FR_0123456789ABCDEF".into(),
            tier: "basic".into(),
            iat: now,
            exp: now + exp_from_now,
        }
    }

    #[test]
    fn a_token_verifies_with_its_secret_only_and_until_it_expires() {
        let token = issue(&claims(60), b"secret-a");
        assert_eq!(verify(&token, b"secret-a").unwrap(), claims(60));
        assert_eq!(
            claimed_client(&token).as_deref(),
            Some("FR_0123456789ABCDEF")
        );
        assert_eq!(verify(&token, b"secret-b"), Err(TokenError::Invalid));
        let expired = issue(&claims(-1), b"secret-a");
        assert_eq!(verify(&expired, b"secret-a"), Err(TokenError::Expired));
    }

    #[test]
    fn unsigned_and_tampered_tokens_fail() {
        let token = issue(&claims(60), b"secret");
        let parts: Vec<&str> = token.split('.').collect();
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let unsigned = format!("{none_header}.{}.", parts[1]);
        assert_eq!(verify(&unsigned, b"secret"), Err(TokenError::Invalid));
        let mut forged = claims(60);
        forged.tier = "enterprise".into();
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
        assert_eq!(verify(&tampered, b"secret"), Err(TokenError::Invalid));
    }
}
