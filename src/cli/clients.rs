//! `face-service clients`: tenants, managed by the operator on the server's own store. Each
//! command prints JSON on stdout; a new key and secret are printed once, here, and kept only
//! hashed and sealed.

use serde_json::json;

use crate::cli::AnyError;
use crate::store::StoreConfig;
use crate::tenants::{NewClient, Tenants};

#[derive(Debug, clap::Args)]
pub struct ClientsArgs {
    #[command(flatten)]
    store: StoreConfig,
    #[command(subcommand)]
    command: ClientsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ClientsCommand {
    /// Create a client; prints its `client_id`, `api_key` and `api_secret`, once.
    Create(NewClient),
    /// List the clients (no credentials).
    List,
    /// Suspend a client: its key, secret and JWTs stop working.
    Disable { client_id: String },
    /// Make a suspended client active again.
    Enable { client_id: String },
    /// New key and secret for a client; prints them, once. The old ones stop working.
    Rotate { client_id: String },
}

pub fn run(args: ClientsArgs) -> Result<(), AnyError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let tenants = Tenants::open(&args.store).await?;
        let printed = match args.command {
            ClientsCommand::Create(client) => {
                serde_json::to_value(tenants.create_client(&client).await?)?
            }
            ClientsCommand::List => {
                let clients: Vec<_> = tenants
                    .clients()
                    .await?
                    .into_iter()
                    .map(|client| {
                        json!({
                            "client_id": client.id,
                            "name": client.name,
                            "tier": client.tier.name(),
                            "status": client.status,
                            "rate_limits": { "per_hour": client.per_hour, "per_day": client.per_day },
                            "created_at": crate::api::iso(client.created_at),
                        })
                    })
                    .collect();
                json!(clients)
            }
            ClientsCommand::Disable { client_id } => {
                set_status(&tenants, &client_id, "suspended").await?
            }
            ClientsCommand::Enable { client_id } => set_status(&tenants, &client_id, "active").await?,
            ClientsCommand::Rotate { client_id } => {
                let issued = tenants
                    .rotate(&client_id)
                    .await?
                    .ok_or_else(|| format!("no client {client_id}"))?;
                tenants
                    .audit(Some(&client_id), "credentials_rotated", true, "by the operator", None)
                    .await?;
                serde_json::to_value(issued)?
            }
        };
        println!("{printed}");
        tenants.store().close().await;
        Ok(())
    })
}

async fn set_status(
    tenants: &Tenants,
    client_id: &str,
    status: &str,
) -> Result<serde_json::Value, AnyError> {
    if !tenants.set_status(client_id, status).await? {
        return Err(format!("no client {client_id}").into());
    }
    Ok(json!({ "client_id": client_id, "status": status }))
}
