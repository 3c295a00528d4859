//! What a tenant's backend trusts a session's result by: the seed's `encrypted_data`
//! (AES-256-CBC under SHA-256 of the client's API key, the 16-byte IV first, base64), and a
//! result token (a JWT signed with the client's API secret, HS256), which a backend verifies
//! without the API key ever reaching a browser.

use aes::cipher::{BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use serde_json::{Value, json};

type Aes256CbcEncryptor = cbc::Encryptor<aes::Aes256>;

/// How long a result token verifies, in seconds.
pub const RESULT_TOKEN_LIFETIME_SECS: i64 = 3600;

/// The seed's plaintext, in its field order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SealedResult<'a> {
    /// The enrollment's id, or the authenticated user's `external_user_id`.
    pub id: &'a str,
    /// ISO 8601, UTC.
    pub timestamp: String,
    /// `enrollment` or `authentication`.
    pub session_type: &'static str,
    pub session_token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
}

/// The seed's `encrypted_data` object for `result`.
pub fn encrypted_data(key: &[u8; 32], result: &SealedResult<'_>) -> Value {
    let iv: [u8; 16] = crate::tenants::credentials::random_bytes();
    let plaintext = serde_json::to_vec(result).expect("a result serialises");
    let ciphertext =
        Aes256CbcEncryptor::new(key.into(), &iv.into()).encrypt_padded_vec_mut::<Pkcs7>(&plaintext);
    let mut payload = iv.to_vec();
    payload.extend_from_slice(&ciphertext);
    json!({
        "encrypted_payload": STANDARD.encode(payload),
        "encryption_method": "AES-256-CBC",
        "instructions": "base64-decode; the first 16 bytes are the IV, the rest AES-256-CBC \
                         ciphertext (PKCS#7) under the key SHA-256(api_key); the plaintext is JSON",
    })
}

/// The result token's claims: who the session was for and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResultClaims<'a> {
    pub iss: &'static str,
    /// The session's token.
    pub sub: &'a str,
    pub client_id: &'a str,
    pub session_type: &'static str,
    /// The outcome as stored on the session.
    pub outcome: &'a Value,
    pub iat: i64,
    pub exp: i64,
}

pub fn result_token(claims: &ResultClaims<'_>, secret: &[u8]) -> String {
    let key = EncodingKey::from_secret(secret).expect("API secrets are not empty");
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key)
        .expect("HS256 signs any claims")
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::{BlockDecryptMut, block_padding::Pkcs7};

    #[test]
    fn encrypted_data_opens_with_the_key_to_the_seeds_plaintext() {
        let key = crate::tenants::credentials::result_key("frapi_example");
        let result = SealedResult {
            id: "alice",
            timestamp: "2026-12-03T10:00:00Z".into(),
            session_type: "authentication",
            session_token: "sess_x",
            confidence: Some(0.75),
        };
        let data = encrypted_data(&key, &result);
        assert_eq!(data["encryption_method"], "AES-256-CBC");
        let payload = STANDARD
            .decode(data["encrypted_payload"].as_str().unwrap())
            .unwrap();
        let (iv, ciphertext) = payload.split_at(16);
        let plaintext = cbc::Decryptor::<aes::Aes256>::new(&key.into(), iv.into())
            .decrypt_padded_vec_mut::<Pkcs7>(ciphertext)
            .unwrap();
        assert_eq!(
            String::from_utf8(plaintext).unwrap(),
            r#"{"id":"alice","timestamp":"2026-12-03T10:00:00Z","session_type":"authentication","session_token":"sess_x","confidence":0.75}"#
        );
        // A fresh IV each time.
        assert_ne!(encrypted_data(&key, &result), data);
    }
}
