//! Encryption at rest for what the server must read back in clear (a client's API secret signs
//! its JWTs, so it cannot be hashed): AES-256-GCM under the server's master key, a fresh nonce
//! per value, stored as base64 of nonce followed by ciphertext.

use std::path::Path;
use std::str::FromStr;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

const NONCE_BYTES: usize = 12;

/// The 32-byte key that seals tenants' secrets. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl FromStr for MasterKey {
    type Err = String;

    /// 64 hex digits.
    fn from_str(hex: &str) -> Result<Self, String> {
        let hex = hex.trim();
        let invalid = || "a master key is 64 hex digits (32 bytes)".to_owned();
        if hex.len() != 64 || !hex.is_ascii() {
            return Err(invalid());
        }
        let mut key = [0u8; 32];
        for (byte, pair) in key.iter_mut().zip(hex.as_bytes().chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| invalid())?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| invalid())?;
        }
        Ok(MasterKey(key))
    }
}

impl MasterKey {
    pub fn random() -> MasterKey {
        MasterKey(super::credentials::random_bytes())
    }

    /// A key of its own for another purpose, derived from this one (SHA-256 of a label, the
    /// purpose and this key): whoever holds one derived key learns nothing of this one.
    pub fn derive(&self, purpose: &str) -> MasterKey {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(b"face-service derived key v1\0");
        hasher.update(purpose.as_bytes());
        hasher.update(b"\0");
        hasher.update(self.0);
        MasterKey(hasher.finalize().into())
    }

    /// The key's bytes, for keys derived to be credentials themselves (`Tenants::demo_client`).
    pub fn bytes(&self) -> [u8; 32] {
        self.0
    }

    fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The key in `path`, or a new one written there (readable by its owner only) when the
    /// file does not exist.
    pub fn load_or_create(path: &Path) -> Result<MasterKey, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => text.parse().map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = MasterKey::random();
                write_private(path, &key.to_hex())
                    .map_err(|e| format!("writing {}: {e}", path.display()))?;
                tracing::info!(path = %path.display(), "created a new master key");
                Ok(key)
            }
            Err(e) => Err(format!("reading {}: {e}", path.display())),
        }
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("a sealed value does not open with this master key")]
pub struct Unsealable;

/// Seals and opens values under one master key.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    pub fn new(key: &MasterKey) -> Sealer {
        let cipher = Aes256Gcm::new_from_slice(&key.0).expect("a master key is 32 bytes");
        Sealer { cipher }
    }

    pub fn seal(&self, plaintext: &[u8]) -> String {
        let nonce_bytes: [u8; NONCE_BYTES] = super::credentials::random_bytes();
        let nonce = Nonce::from(nonce_bytes);
        let ciphertext = self
            .cipher
            .encrypt(&nonce, plaintext)
            .expect("AES-GCM seals any value shorter than 64 GiB");
        let mut sealed = nonce_bytes.to_vec();
        sealed.extend_from_slice(&ciphertext);
        STANDARD.encode(sealed)
    }

    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, Unsealable> {
        let bytes = STANDARD.decode(sealed).map_err(|_| Unsealable)?;
        if bytes.len() < NONCE_BYTES {
            return Err(Unsealable);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| Unsealable)?;
        self.cipher
            .decrypt(&Nonce::from(nonce), ciphertext)
            .map_err(|_| Unsealable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_unchanged() {
        let sealer = Sealer::new(&MasterKey::random());
        let sealed = sealer.seal(b"the secret");
        assert_eq!(sealer.open(&sealed).unwrap(), b"the secret");
        // Each sealing uses its own nonce.
        assert_ne!(sealer.seal(b"the secret"), sealed);
        assert_eq!(
            Sealer::new(&MasterKey::random()).open(&sealed),
            Err(Unsealable)
        );
        let mut tampered = STANDARD.decode(&sealed).unwrap();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(sealer.open(&STANDARD.encode(tampered)), Err(Unsealable));
    }

    #[test]
    fn master_keys_parse_from_hex_and_never_print() {
        let key: MasterKey = "ab".repeat(32).parse().unwrap();
        assert_eq!(key.to_hex(), "ab".repeat(32));
        assert!("abc".parse::<MasterKey>().is_err());
        assert!("zz".repeat(32).parse::<MasterKey>().is_err());
        assert_eq!(format!("{key:?}"), "MasterKey(..)");
        let derived = key.derive("face templates");
        assert_ne!(derived, key);
        assert_eq!(derived, key.derive("face templates"));
        assert_ne!(derived, key.derive("something else"));
    }
}
