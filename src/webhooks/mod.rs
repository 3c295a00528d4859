//! Webhooks: a tenant's backend hears of `enrollment.completed`, `authentication.success` and
//! `authentication.failed` without polling. Each event becomes a delivery per subscribed
//! endpoint in the store's outbox; a deliverer in every process claims due deliveries, POSTs
//! them as the seed would (`{event, client_id, timestamp, data, delivery_id}` with
//! `X-FR-Event`, `X-FR-Timestamp` and `X-FR-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
//! "<t>.<body>" under the endpoint's secret>`), and retries failures with exponential backoff.
//! A restart loses nothing: what is not delivered stays in the outbox. Deliveries go only to
//! public addresses unless the operator allows private networks (`destinations`).

pub mod destinations;

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::store::webhooks::{Attempt, DeliveryRow, EndpointRow};
use crate::store::{Millis, Store, StoreError, StoreResult};
use crate::tenants::sealing::Sealer;

/// The events an endpoint may subscribe to.
pub const EVENTS: [&str; 3] = [
    "enrollment.completed",
    "authentication.success",
    "authentication.failed",
];

#[derive(Debug, Clone, PartialEq, clap::Args)]
#[command(next_help_heading = "Webhooks")]
pub struct WebhookConfig {
    /// Attempts at a delivery before it is marked `failed`.
    #[arg(long, env = "FACE_SERVICE_WEBHOOK_MAX_ATTEMPTS", default_value_t = 8)]
    pub webhook_max_attempts: i64,
    /// Milliseconds before the first retry; each next one waits twice as long (at most an
    /// hour).
    #[arg(long, env = "FACE_SERVICE_WEBHOOK_RETRY_MS", default_value_t = 5000)]
    pub webhook_retry_ms: u64,
    /// Seconds an endpoint has to answer a delivery.
    #[arg(long, env = "FACE_SERVICE_WEBHOOK_TIMEOUT_SECS", default_value_t = 10)]
    pub webhook_timeout_secs: u64,
    /// Let endpoints be on loopback, private, link-local and other non-public addresses
    /// (tenants' backends on the server's own network). Off, a tenant cannot make the server
    /// reach into its network.
    #[arg(long, env = "FACE_SERVICE_WEBHOOK_PRIVATE_NETWORKS")]
    pub webhook_private_networks: bool,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            webhook_max_attempts: 8,
            webhook_retry_ms: 5000,
            webhook_timeout_secs: 10,
            webhook_private_networks: false,
        }
    }
}

/// How often the deliverer looks for due deliveries.
const POLL: Duration = Duration::from_millis(500);
/// Deliveries one look attempts at most.
const BATCH: usize = 16;
const LONGEST_RETRY: Duration = Duration::from_secs(3600);

pub struct Webhooks {
    store: Store,
    /// Seals the endpoints' secrets (a key derived from the master key).
    sealer: Sealer,
    http: reqwest::Client,
    config: WebhookConfig,
}

/// An endpoint as made: its secret shown once.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEndpoint {
    pub row: EndpointRow,
    pub secret: String,
}

impl Webhooks {
    pub fn new(store: Store, sealer: Sealer, config: &WebhookConfig) -> Webhooks {
        let mut http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.webhook_timeout_secs))
            .redirect(reqwest::redirect::Policy::none());
        if !config.webhook_private_networks {
            http = http.dns_resolver(destinations::PublicOnly);
        }
        let http = http.build().expect("the webhook HTTP client builds");
        Webhooks {
            store,
            sealer,
            http,
            config: config.clone(),
        }
    }

    /// Why `url` may not receive deliveries, if it may not: an address that is not public,
    /// unless private networks are allowed. (A name is checked when it is resolved.)
    pub fn refused_destination(&self, url: &reqwest::Url) -> Option<String> {
        if self.config.webhook_private_networks {
            return None;
        }
        destinations::refused_address(url)
    }

    /// Registers an endpoint for `events` of the client.
    pub async fn add_endpoint(
        &self,
        client_id: &str,
        url: &str,
        events: &[String],
    ) -> StoreResult<NewEndpoint> {
        use base64::Engine as _;
        let secret = format!(
            "whsec_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(crate::tenants::credentials::random_bytes::<32>())
        );
        let row = EndpointRow {
            client_id: client_id.to_owned(),
            id: uuid::Uuid::new_v4().to_string(),
            url: url.to_owned(),
            events: serde_json::to_string(events).expect("names serialise"),
            secret_sealed: self.sealer.seal(secret.as_bytes()),
            created_at: crate::store::now(),
        };
        self.store.insert_endpoint(&row).await?;
        Ok(NewEndpoint { row, secret })
    }

    /// Puts `event` in the outbox for each of the client's endpoints that subscribed to it.
    pub async fn emit(&self, client_id: &str, event: &str, data: Value) {
        if let Err(error) = self.try_emit(client_id, event, data).await {
            tracing::error!(%error, event, "putting a webhook event in the outbox");
        }
    }

    async fn try_emit(&self, client_id: &str, event: &str, data: Value) -> StoreResult<()> {
        let now = crate::store::now();
        let timestamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let deliveries: Vec<DeliveryRow> = self
            .store
            .endpoints(client_id)
            .await?
            .into_iter()
            .filter(|endpoint| {
                serde_json::from_str::<Vec<String>>(&endpoint.events)
                    .is_ok_and(|events| events.iter().any(|e| e == event))
            })
            .map(|endpoint| {
                let id = uuid::Uuid::new_v4().to_string();
                let body = json!({
                    "event": event,
                    "client_id": client_id,
                    "timestamp": timestamp,
                    "data": data,
                    "delivery_id": id,
                });
                DeliveryRow {
                    client_id: client_id.to_owned(),
                    id,
                    endpoint_id: endpoint.id,
                    event: event.to_owned(),
                    body: body.to_string(),
                    status: "pending".to_owned(),
                    attempts: 0,
                    next_attempt_at: now,
                    leased_until: None,
                    last_status_code: None,
                    last_error: None,
                    created_at: now,
                    delivered_at: None,
                }
            })
            .collect();
        self.store.insert_deliveries(&deliveries).await
    }

    /// Delivers due deliveries until `stop` turns true; an attempt under way when it does is
    /// finished and recorded first.
    pub fn spawn_deliverer(
        self: &Arc<Self>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let webhooks = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(POLL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = stop.changed() => return,
                }
                if let Err(error) = webhooks.deliver_due(&stop).await {
                    tracing::warn!(%error, "delivering webhooks");
                }
            }
        })
    }

    async fn deliver_due(&self, stop: &tokio::sync::watch::Receiver<bool>) -> StoreResult<()> {
        // Long enough for one attempt; a process that dies holding a delivery leaves it to
        // the others once the lease runs out.
        let lease = millis(Duration::from_secs(self.config.webhook_timeout_secs + 5));
        for _ in 0..BATCH {
            if *stop.borrow() {
                break;
            }
            let now = crate::store::now();
            let Some(delivery) = self.store.claim_due_delivery(now, now + lease).await? else {
                break;
            };
            let attempt = self.attempt(&delivery).await?;
            self.store
                .record_attempt(&delivery, &attempt, crate::store::now())
                .await?;
        }
        Ok(())
    }

    async fn attempt(&self, delivery: &DeliveryRow) -> StoreResult<Attempt> {
        let Some(endpoint) = self
            .store
            .endpoint(&delivery.client_id, &delivery.endpoint_id)
            .await?
        else {
            return Ok(self.failed(delivery, None, "the endpoint is gone".into()));
        };
        let refused = reqwest::Url::parse(&endpoint.url)
            .ok()
            .and_then(|url| self.refused_destination(&url));
        if let Some(reason) = refused {
            // Not retried: the address will not become public.
            return Ok(Attempt::Failed {
                status_code: None,
                error: reason,
                retry_at: None,
            });
        }
        let secret = self.sealer.open(&endpoint.secret_sealed).map_err(|_| {
            StoreError::Damaged(format!("webhook endpoint {}: secret", endpoint.id))
        })?;
        let timestamp = chrono::Utc::now().timestamp();
        let sent = self
            .http
            .post(&endpoint.url)
            .header("Content-Type", "application/json")
            .header(
                "User-Agent",
                concat!("face-service/", env!("CARGO_PKG_VERSION")),
            )
            .header("X-FR-Event", &delivery.event)
            .header("X-FR-Timestamp", timestamp.to_string())
            .header(
                "X-FR-Signature",
                signature(&secret, timestamp, &delivery.body),
            )
            .body(delivery.body.clone())
            .send()
            .await;
        Ok(match sent {
            Ok(answer) if answer.status().is_success() => Attempt::Delivered {
                status_code: i64::from(answer.status().as_u16()),
            },
            Ok(answer) => self.failed(
                delivery,
                Some(i64::from(answer.status().as_u16())),
                format!("the endpoint answered {}", answer.status()),
            ),
            Err(error) => self.failed(delivery, None, error.to_string()),
        })
    }

    /// A failed attempt, with its retry after the backoff unless it was the last.
    fn failed(&self, delivery: &DeliveryRow, status_code: Option<i64>, error: String) -> Attempt {
        let attempts = delivery.attempts + 1;
        let retry_at = (attempts < self.config.webhook_max_attempts).then(|| {
            let wait = Duration::from_millis(self.config.webhook_retry_ms)
                .saturating_mul(1 << (attempts - 1).clamp(0, 20))
                .min(LONGEST_RETRY);
            crate::store::now() + millis(wait)
        });
        Attempt::Failed {
            status_code,
            error,
            retry_at,
        }
    }
}

/// The seed's `X-FR-Signature`: `t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &[u8], timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(format!("{timestamp}.{body}").as_bytes());
    let digest: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={timestamp},v1={digest}")
}

fn millis(duration: Duration) -> Millis {
    duration.as_millis() as Millis
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The digest as Python's `hmac.new(secret, f"{t}.{body}".encode(), sha256).hexdigest()`
    /// computes it, as a seed client checks it.
    #[test]
    fn the_signature_is_the_seeds() {
        let body = r#"{"event":"enrollment.completed"}"#;
        assert_eq!(
            signature(b"whsec_test", 1_700_000_000, body),
            "t=1700000000,v1=a4127b3658d4fec1c4cce5bdeace9e4fa5f016ffb19c0f4dae21a6ab1444d19c"
        );
    }
}
