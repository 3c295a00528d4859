//! The seed's credential formats, made from the operating system's random numbers, and how a
//! presented API key is checked: by its hash, compared in constant time.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const API_KEY_PREFIX: &str = "frapi_";
pub const SESSION_TOKEN_PREFIX: &str = "sess_";

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random numbers are available");
    bytes
}

/// 32 random bytes as 43 URL-safe characters.
fn random_text() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// `FR_` and 16 upper-case hex digits.
pub fn new_client_id() -> String {
    let digits: String = random_bytes::<8>()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    format!("FR_{digits}")
}

/// `frapi_` and 43 URL-safe characters.
pub fn new_api_key() -> String {
    format!("{API_KEY_PREFIX}{}", random_text())
}

pub fn new_api_secret() -> String {
    random_text()
}

/// `sess_` and 43 URL-safe characters.
pub fn new_session_token() -> String {
    format!("{SESSION_TOKEN_PREFIX}{}", random_text())
}

/// What the store keeps of an API key. The key has 256 random bits, so a plain SHA-256 cannot
/// be reversed; the prefix keeps this hash apart from any other use of SHA-256 over the key
/// (the seed's result encryption uses SHA-256 of the key as its AES key).
pub fn api_key_hash(api_key: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"face-service api key hash v1\0");
    hasher.update(api_key.as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The AES-256 key of the seed's `encrypted_data`: SHA-256 of the API key, as seed clients
/// derive it to decrypt their results.
pub fn result_key(api_key: &str) -> [u8; 32] {
    Sha256::digest(api_key.as_bytes()).into()
}

/// Equality whose time does not depend on where two values first differ.
pub fn same(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_have_the_seeds_formats_and_differ_each_time() {
        let id = new_client_id();
        assert_eq!(id.len(), 19);
        assert!(
            id[3..]
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
        );
        let key = new_api_key();
        assert_eq!(key.len(), API_KEY_PREFIX.len() + 43);
        let token = new_session_token();
        assert_eq!(token.len(), SESSION_TOKEN_PREFIX.len() + 43);
        assert!(
            token[5..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(new_api_key(), key);
        assert_ne!(new_session_token(), token);
    }

    #[test]
    fn a_key_hash_is_stable_and_not_the_plain_sha256() {
        let key = "frapi_example";
        assert_eq!(api_key_hash(key), api_key_hash(key));
        assert_ne!(api_key_hash(key), api_key_hash("frapi_examplf"));
        let plain: String = Sha256::digest(key)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_ne!(api_key_hash(key), plain);
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
