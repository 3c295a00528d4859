//! Tenants ("clients") and their credentials: making and rotating them, and deciding who a
//! request's credentials belong to. The REST API and the `clients` command both go through
//! here; neither touches a key, a secret or a hash itself.

pub mod credentials;
pub mod sealing;
pub mod tiers;
pub mod tokens;

use crate::store::audit::AuditRow;
use crate::store::clients::{ClientRow, SealedCredentials};
use crate::store::{Millis, Store, StoreConfig, StoreError, StoreResult};
use sealing::{MasterKey, Sealer};
use tiers::Tier;

/// A client as the rest of the server sees it: no credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct Client {
    pub id: String,
    pub name: String,
    pub tier: Tier,
    pub status: String,
    pub per_hour: i64,
    pub per_day: i64,
    pub created_at: Millis,
}

/// A client to create.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct NewClient {
    /// The tenant's name, as answers show it.
    #[arg(long)]
    pub name: String,
    #[arg(long, value_enum, default_value = "basic")]
    pub tier: Tier,
    /// Requests per hour, instead of the tier's (basic 1000, premium 10000, enterprise 100000).
    #[arg(long)]
    pub per_hour: Option<i64>,
    /// Requests per day, instead of the tier's (basic 10000, premium 100000, enterprise 1000000).
    #[arg(long)]
    pub per_day: Option<i64>,
}

/// Credentials as made: shown to the operator once, then only their hash and seal are kept.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IssuedCredentials {
    pub client_id: String,
    pub api_key: String,
    pub api_secret: String,
}

/// What a request presented.
#[derive(Debug, Clone, PartialEq)]
pub enum Credential {
    ApiKey(String),
    Jwt(String),
}

/// Why credentials were refused, in the seed's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    InvalidKey,
    InvalidCredentials,
    Inactive,
    TokenExpired,
    InvalidToken,
}

impl Refusal {
    pub fn detail(self) -> &'static str {
        match self {
            Refusal::Missing => "Authentication credentials were not provided.",
            Refusal::InvalidKey => "Invalid API key",
            Refusal::InvalidCredentials => "Invalid API credentials",
            Refusal::Inactive => "Client account is not active",
            Refusal::TokenExpired => "JWT token expired",
            Refusal::InvalidToken => "Invalid JWT token",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The credentials are refused; `client_id` names the client they claimed to be, if any.
    #[error("{}", .reason.detail())]
    Refused {
        reason: Refusal,
        client_id: Option<String>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn refused(reason: Refusal, client_id: Option<&str>) -> AuthError {
    AuthError::Refused {
        reason,
        client_id: client_id.map(str::to_owned),
    }
}

/// A client's keys for its session results. `Debug` never shows them.
#[derive(Clone)]
pub struct ResultKeys {
    pub secret: Vec<u8>,
    /// `None` for credentials made before the key was kept: they must rotate to get
    /// `encrypted_data`.
    pub encryption: Option<[u8; 32]>,
}

impl std::fmt::Debug for ResultKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResultKeys(..)")
    }
}

/// A JWT as `POST /api/core/auth/client/` answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuedToken {
    pub client: Client,
    pub access_token: String,
    pub expires_at: Millis,
}

#[derive(Debug, Clone)]
pub struct Tenants {
    store: Store,
    sealer: Sealer,
    master_key: MasterKey,
}

impl Tenants {
    /// The store, with the master key that config names or the one under its data directory.
    pub async fn open(config: &StoreConfig) -> StoreResult<Tenants> {
        let key = match (&config.master_key, &config.database_url) {
            (Some(key), _) => key.clone(),
            (None, Some(_)) => {
                return Err(StoreError::Config(
                    "--database-url needs --master-key (FACE_SERVICE_MASTER_KEY): every process \
                     sharing the database must seal secrets with the same key"
                        .into(),
                ));
            }
            (None, None) => {
                MasterKey::load_or_create(&config.create_data_dir()?.join("master.key"))
                    .map_err(StoreError::Config)?
            }
        };
        let store = Store::open(config).await?;
        Ok(Tenants {
            store,
            sealer: Sealer::new(&key),
            master_key: key,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A key for `purpose` derived from the master key, for data that has no key of its own.
    pub fn derived_key(&self, purpose: &str) -> MasterKey {
        self.master_key.derive(purpose)
    }

    /// A new active client; its rate limits are its tier's unless given.
    pub async fn create_client(&self, client: &NewClient) -> StoreResult<IssuedCredentials> {
        let now = crate::store::now();
        let (tier_per_hour, tier_per_day) = client.tier.rate_limits();
        let issued = IssuedCredentials {
            client_id: credentials::new_client_id(),
            api_key: credentials::new_api_key(),
            api_secret: credentials::new_api_secret(),
        };
        let sealed = self.seal(&issued);
        self.store
            .insert_client(&ClientRow {
                id: issued.client_id.clone(),
                name: client.name.clone(),
                tier: client.tier.name().to_owned(),
                status: "active".to_owned(),
                api_key_hash: sealed.api_key_hash,
                api_secret_sealed: sealed.api_secret_sealed,
                result_key_sealed: Some(sealed.result_key_sealed),
                per_hour: client.per_hour.unwrap_or(tier_per_hour),
                per_day: client.per_day.unwrap_or(tier_per_day),
                created_at: now,
                credentials_rotated_at: now,
            })
            .await?;
        Ok(issued)
    }

    /// The demo page's tenant, `Demo` (open mode only), created on first use. Its credentials
    /// are derived from the master key, so every process sharing the store holds the same
    /// ones, and nothing but their hash and seal is stored.
    pub async fn demo_client(&self) -> StoreResult<IssuedCredentials> {
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let derived = |purpose: &str| self.master_key.derive(purpose).bytes();
        let id_digits: String = derived("demo client id")[..8]
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        let issued = IssuedCredentials {
            client_id: format!("FR_{id_digits}"),
            api_key: format!(
                "{}{}",
                credentials::API_KEY_PREFIX,
                URL_SAFE_NO_PAD.encode(derived("demo api key"))
            ),
            api_secret: URL_SAFE_NO_PAD.encode(derived("demo api secret")),
        };
        let sealed = self.seal(&issued);
        match self.store.client(&issued.client_id).await? {
            Some(row) if credentials::same(&row.api_key_hash, &sealed.api_key_hash) => {}
            Some(_) => {
                self.store
                    .replace_credentials(&issued.client_id, &sealed, crate::store::now())
                    .await?;
            }
            None => {
                let now = crate::store::now();
                let (per_hour, per_day) = Tier::Enterprise.rate_limits();
                let inserted = self
                    .store
                    .insert_client(&ClientRow {
                        id: issued.client_id.clone(),
                        name: "Demo".to_owned(),
                        tier: Tier::Enterprise.name().to_owned(),
                        status: "active".to_owned(),
                        api_key_hash: sealed.api_key_hash,
                        api_secret_sealed: sealed.api_secret_sealed,
                        result_key_sealed: Some(sealed.result_key_sealed),
                        per_hour,
                        per_day,
                        created_at: now,
                        credentials_rotated_at: now,
                    })
                    .await;
                // Another process sharing the store made it first: the same credentials.
                match inserted {
                    Ok(()) | Err(StoreError::Conflict) => {}
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(issued)
    }

    pub async fn clients(&self) -> StoreResult<Vec<Client>> {
        self.store
            .clients()
            .await?
            .into_iter()
            .map(client_of)
            .collect()
    }

    /// Sets a client's status (`active`, `trial`, `suspended`); false when there is none.
    pub async fn set_status(&self, client_id: &str, status: &str) -> StoreResult<bool> {
        self.store.set_client_status(client_id, status).await
    }

    /// New key and secret for the client; the old ones stop working at once. `None` when
    /// there is no such client.
    pub async fn rotate(&self, client_id: &str) -> StoreResult<Option<IssuedCredentials>> {
        let issued = IssuedCredentials {
            client_id: client_id.to_owned(),
            api_key: credentials::new_api_key(),
            api_secret: credentials::new_api_secret(),
        };
        let replaced = self
            .store
            .replace_credentials(client_id, &self.seal(&issued), crate::store::now())
            .await?;
        Ok(replaced.then_some(issued))
    }

    /// Credentials as the store keeps them: the key hashed, the secret and the key of the
    /// seed's `encrypted_data` (SHA-256 of the key) sealed.
    fn seal(&self, issued: &IssuedCredentials) -> SealedCredentials {
        SealedCredentials {
            api_key_hash: credentials::api_key_hash(&issued.api_key),
            api_secret_sealed: self.sealer.seal(issued.api_secret.as_bytes()),
            result_key_sealed: self.sealer.seal(&credentials::result_key(&issued.api_key)),
        }
    }

    /// What signs and encrypts a client's session results: its API secret (the result token's
    /// HMAC key) and, where kept, SHA-256 of its API key (`encrypted_data`'s AES key).
    pub async fn result_keys(&self, client_id: &str) -> StoreResult<Option<ResultKeys>> {
        let Some(row) = self.store.client(client_id).await? else {
            return Ok(None);
        };
        let secret = self.secret_of(&row)?;
        let encryption = match &row.result_key_sealed {
            Some(sealed) => {
                let key = self.sealer.open(sealed).map_err(|e| {
                    StoreError::Damaged(format!("client {}: result key: {e}", row.id))
                })?;
                let key: [u8; 32] = key.try_into().map_err(|_| {
                    StoreError::Damaged(format!("client {}: result key length", row.id))
                })?;
                Some(key)
            }
            None => None,
        };
        Ok(Some(ResultKeys { secret, encryption }))
    }

    /// The active client these credentials belong to.
    pub async fn authenticate(&self, credential: &Credential) -> Result<Client, AuthError> {
        match credential {
            Credential::ApiKey(key) => {
                let row = self.client_by_key(key).await?;
                active(row)
            }
            Credential::Jwt(token) => {
                let claimed = tokens::claimed_client(token);
                let row = match &claimed {
                    Some(id) => self.store.client(id).await?,
                    None => None,
                };
                let Some(row) = row else {
                    return Err(refused(Refusal::InvalidToken, None));
                };
                let secret = self.secret_of(&row)?;
                match tokens::verify(token, &secret) {
                    Ok(_) => active(row),
                    Err(tokens::TokenError::Expired) => {
                        Err(refused(Refusal::TokenExpired, Some(&row.id)))
                    }
                    Err(tokens::TokenError::Invalid) => {
                        Err(refused(Refusal::InvalidToken, Some(&row.id)))
                    }
                }
            }
        }
    }

    /// The seed's key-and-secret exchange for a JWT.
    pub async fn issue_token(
        &self,
        api_key: &str,
        api_secret: &str,
    ) -> Result<IssuedToken, AuthError> {
        let row = self.client_by_key(api_key).await.map_err(|e| match e {
            AuthError::Refused { client_id, .. } => AuthError::Refused {
                reason: Refusal::InvalidCredentials,
                client_id,
            },
            other => other,
        })?;
        let secret = self.secret_of(&row)?;
        if !credentials::same(api_secret, &String::from_utf8_lossy(&secret)) {
            return Err(refused(Refusal::InvalidCredentials, Some(&row.id)));
        }
        let client = active(row)?;
        let now = chrono::Utc::now().timestamp();
        let claims = tokens::Claims {
            client_id: client.id.clone(),
            tier: client.tier.name().to_owned(),
            iat: now,
            exp: now + tokens::LIFETIME_SECS,
        };
        Ok(IssuedToken {
            access_token: tokens::issue(&claims, &secret),
            expires_at: claims.exp * 1000,
            client,
        })
    }

    /// Writes an audit row; the client is `None` for a failure that named none.
    pub async fn audit(
        &self,
        client_id: Option<&str>,
        event: &str,
        success: bool,
        detail: &str,
        remote_addr: Option<String>,
    ) -> StoreResult<()> {
        self.store
            .insert_audit(&AuditRow {
                client_id: client_id.unwrap_or_default().to_owned(),
                id: uuid::Uuid::new_v4().to_string(),
                event: event.to_owned(),
                success: i64::from(success),
                detail: detail.to_owned(),
                remote_addr,
                created_at: crate::store::now(),
            })
            .await
    }

    async fn client_by_key(&self, api_key: &str) -> Result<ClientRow, AuthError> {
        let hash = credentials::api_key_hash(api_key);
        match self.store.client_by_key_hash(&hash).await? {
            // The lookup found the row by its hash; comparing again in constant time keeps
            // the check itself from depending on the database's comparison.
            Some(row) if credentials::same(&row.api_key_hash, &hash) => Ok(row),
            _ => Err(refused(Refusal::InvalidKey, None)),
        }
    }

    fn secret_of(&self, row: &ClientRow) -> Result<Vec<u8>, StoreError> {
        self.sealer
            .open(&row.api_secret_sealed)
            .map_err(|e| StoreError::Damaged(format!("client {}: {e}", row.id)))
    }
}

fn client_of(row: ClientRow) -> StoreResult<Client> {
    let tier = Tier::parse(&row.tier)
        .ok_or_else(|| StoreError::Damaged(format!("client {}: tier {:?}", row.id, row.tier)))?;
    Ok(Client {
        id: row.id,
        name: row.name,
        tier,
        status: row.status,
        per_hour: row.per_hour,
        per_day: row.per_day,
        created_at: row.created_at,
    })
}

/// Only active clients authenticate.
fn active(row: ClientRow) -> Result<Client, AuthError> {
    if row.status != "active" {
        return Err(refused(Refusal::Inactive, Some(&row.id)));
    }
    Ok(client_of(row)?)
}
