//! `mandate gateway` (the enforcement point in front of MCP servers and
//! REST APIs) and `mandate secret` (the downstream secrets it injects).

use std::io::Read;
use std::path::PathBuf;

use clap::Subcommand;
use mandate_core::secret::{SecretInfo, SecretName, SecretValue};
use mandate_gateway::{Gateway, GatewayConfig};
use mandate_server::{app_state, load_master_key};
use serde_json::json;
use tokio::net::TcpListener;

use super::open_store;
use crate::client::Client;
use crate::output;
use crate::{CliError, ServerArgs, StoreArgs};

#[derive(clap::Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The gateway's TOML configuration (see the README's example).
    #[arg(long, env = "MANDATE_GATEWAY_CONFIG")]
    config: PathBuf,
}

pub async fn run(a: GatewayArgs) -> Result<(), CliError> {
    let text = std::fs::read_to_string(&a.config)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", a.config.display())))?;
    let config = GatewayConfig::parse(&text).map_err(|e| CliError::Usage(e.to_string()))?;
    let store = open_store(&a.store).await?;
    let (master, _) = load_master_key(&a.store.data_dir, false)?;
    let state = app_state(store, &master, Default::default()).await?;
    let listener = TcpListener::bind(&config.listen).await.map_err(|e| {
        CliError::Usage(format!(
            "cannot listen on {}: {e} (change `listen` in {})",
            config.listen,
            a.config.display()
        ))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Failed(e.to_string()))?;
    eprintln!(
        "mandate gateway on http://{addr}: MCP at {}, {} MCP server(s), {} HTTP route(s)",
        mandate_gateway::MCP_PATH,
        config.mcp.len(),
        config.http.len()
    );
    let gw = Gateway::new(state, config).map_err(|e| CliError::Usage(e.to_string()))?;
    mandate_gateway::serve(listener, gw, super::serve::shutdown_signal())
        .await
        .map_err(|e| CliError::Failed(format!("gateway error: {e}")))
}

#[derive(Subcommand)]
pub enum SecretCommand {
    /// Store a secret the gateway injects (read from stdin, or an env var).
    Set(SecretValueArgs),
    /// Replace a secret's value; the gateway uses it from its next request.
    Rotate(SecretValueArgs),
    /// The stored secrets: names, versions and dates, never values.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(clap::Args)]
pub struct SecretValueArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The secret's name, as the gateway config's `secret` names it.
    name: String,
    /// Read the value from this environment variable instead of stdin (a
    /// value is never taken on the command line, where `ps` would show it).
    #[arg(long)]
    from_env: Option<String>,
}

pub async fn secret(cmd: SecretCommand) -> Result<(), CliError> {
    match cmd {
        SecretCommand::Set(a) => put(a, false).await,
        SecretCommand::Rotate(a) => put(a, true).await,
        SecretCommand::List { server } => {
            let c = Client::new(&server.server, server.token.clone());
            let list: Vec<SecretInfo> = c.get("/v1/secrets").await?;
            if server.json {
                output::json(&list);
            } else {
                let mut t = output::table(&["name", "version", "created", "rotated"]);
                for s in &list {
                    t.add_row(vec![
                        s.name.to_string(),
                        s.version.to_string(),
                        s.created_at.rfc3339(),
                        s.rotated_at.rfc3339(),
                    ]);
                }
                println!("{t}");
            }
            Ok(())
        }
    }
}

async fn put(a: SecretValueArgs, rotate: bool) -> Result<(), CliError> {
    let name = SecretName::parse(&a.name).map_err(|e| CliError::Usage(e.to_string()))?;
    let raw = match &a.from_env {
        Some(var) => std::env::var(var)
            .map_err(|_| CliError::Usage(format!("environment variable {var} is not set")))?,
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| CliError::Usage(format!("cannot read the value from stdin: {e}")))?;
            s
        }
    };
    let value = SecretValue::new(raw.trim_end_matches(['\r', '\n']).to_owned()).map_err(|e| {
        CliError::Usage(format!(
            "{e} (pipe the value on stdin, or use --from-env VAR)"
        ))
    })?;
    let c = Client::new(&a.server.server, a.server.token.clone());
    if rotate {
        let known: Vec<SecretInfo> = c.get("/v1/secrets").await?;
        if !known.iter().any(|s| s.name == name) {
            return Err(CliError::Usage(format!(
                "no secret {name} to rotate; store it first with `mandate secret set {name}`"
            )));
        }
    }
    let info: SecretInfo = c
        .put(
            &format!("/v1/secrets/{name}"),
            &json!({ "value": value.expose() }),
        )
        .await?;
    if a.server.json {
        output::json(&info);
    } else {
        println!(
            "secret {} is at version {}; the gateway uses it from its next request",
            info.name, info.version
        );
    }
    Ok(())
}
