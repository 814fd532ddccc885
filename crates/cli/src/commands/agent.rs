//! `mandate agent ...`: admin commands over `/v1/agents`.

use std::collections::{BTreeSet, HashMap};

use clap::Subcommand;
use mandate_core::agent::{Agent, AgentKind, NewAgent};
use mandate_core::human::Human;
use mandate_core::ids::AgentName;
use mandate_core::jwk::Ed25519Jwk;
use mandate_core::scope::{Grant, Scope};
use serde_json::json;

use super::human::urlencode;
use crate::client::Client;
use crate::output;
use crate::{CliError, ServerArgs};

#[derive(Subcommand)]
pub enum AgentCommand {
    /// Register an agent with an owner, a ceiling and its public keys.
    Register {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long)]
        name: String,
        /// agent, model, pipeline or service
        #[arg(long, default_value = "agent")]
        kind: String,
        /// Owner's human id.
        #[arg(long)]
        owner: String,
        #[arg(long)]
        description: String,
        /// Entitlement ceiling grant ACTION=RESOURCE, repeatable (e.g. invoice.*=erp:invoices/*).
        #[arg(long = "grant", required = true)]
        grants: Vec<String>,
        /// Ed25519 public JWK as JSON, or @FILE; repeatable.
        #[arg(long = "key")]
        keys: Vec<String>,
        #[arg(long = "tool")]
        tools: Vec<String>,
        #[arg(long = "data-source")]
        data_sources: Vec<String>,
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// Make an Ed25519 key pair for an agent: the private JWK goes to FILE
    /// (mode 0600, stays with the agent), the public JWK to stdout for `register --key`.
    Keygen {
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// List agents (the inventory).
    List {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        select: AgentSelection,
    },
    /// Show one agent by id or name.
    Show {
        #[command(flatten)]
        server: ServerArgs,
        agent: String,
    },
    /// Suspend an active agent.
    Suspend {
        #[command(flatten)]
        server: ServerArgs,
        agent: String,
    },
    /// Resume a suspended agent.
    Resume {
        #[command(flatten)]
        server: ServerArgs,
        agent: String,
    },
    /// Retire an agent permanently.
    Retire {
        #[command(flatten)]
        server: ServerArgs,
        agent: String,
    },
    /// Transfer an agent to another active owner.
    Transfer {
        #[command(flatten)]
        server: ServerArgs,
        agent: String,
        #[arg(long)]
        owner: String,
    },
    /// Add an attestation key (JSON or @FILE).
    AddKey {
        #[command(flatten)]
        server: ServerArgs,
        agent: String,
        jwk: String,
    },
    /// Remove an attestation key by kid.
    RemoveKey {
        #[command(flatten)]
        server: ServerArgs,
        agent: String,
        kid: String,
    },
}

pub fn parse_grant(s: &str) -> Result<Grant, CliError> {
    let (a, r) = s.split_once('=').ok_or_else(|| {
        CliError::Usage(format!(
            "grant {s:?} must be ACTION=RESOURCE, e.g. invoice.read=erp:invoices/*"
        ))
    })?;
    Grant::new(a, r).map_err(|e| CliError::Usage(e.to_string()))
}

fn parse_jwk(s: &str) -> Result<Ed25519Jwk, CliError> {
    let text = match s.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| CliError::Usage(format!("cannot read key file {path}: {e}")))?,
        None => s.to_owned(),
    };
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| CliError::Usage(format!("the key is not JSON: {e}")))?;
    Ed25519Jwk::from_json(&v).map_err(|e| CliError::Usage(e.to_string()))
}

fn show(server: &ServerArgs, a: &Agent) {
    if server.json {
        output::json(a)
    } else {
        println!("{}", output::agent_detail(a))
    }
}

/// Fetches every agent matching the query string, following cursors.
/// Which agents: the registry's filters, shared by `agent list` and `inventory`.
#[derive(clap::Args)]
pub struct AgentSelection {
    /// The owner's human id.
    #[arg(long)]
    owner: Option<String>,
    #[arg(long)]
    kind: Option<String>,
    #[arg(long)]
    status: Option<String>,
    #[arg(long)]
    tag: Option<String>,
    /// Only agents whose owner is deactivated.
    #[arg(long)]
    orphaned: bool,
}

impl AgentSelection {
    /// The filters as query parameters, each starting with `&`.
    pub fn query(&self) -> String {
        let mut q = String::new();
        for (k, v) in [
            ("owner", &self.owner),
            ("kind", &self.kind),
            ("status", &self.status),
            ("tag", &self.tag),
        ] {
            if let Some(v) = v {
                q.push_str(&format!("&{k}={}", urlencode(v)));
            }
        }
        if self.orphaned {
            q.push_str("&orphaned=true");
        }
        q
    }
}

pub async fn list_all(c: &Client, query: &str) -> Result<Vec<Agent>, CliError> {
    c.get_all(&format!("/v1/agents?limit=500{query}")).await
}

/// Prints the inventory table with owner names resolved.
pub async fn print_inventory(c: &Client, agents: &[Agent]) -> Result<(), CliError> {
    let humans: Vec<Human> = c.get_all("/v1/humans?limit=500").await?;
    let names: HashMap<_, _> = humans.into_iter().map(|h| (h.id, h.display_name)).collect();
    println!(
        "{}",
        output::agents(agents, |a| names
            .get(&a.owner)
            .cloned()
            .unwrap_or_else(|| a.owner.to_string()))
    );
    Ok(())
}

pub async fn run(cmd: AgentCommand) -> Result<(), CliError> {
    match cmd {
        AgentCommand::Register {
            server,
            name,
            kind,
            owner,
            description,
            grants,
            keys,
            tools,
            data_sources,
            tags,
        } => {
            let new = NewAgent {
                name: AgentName::parse(&name).map_err(|e| CliError::Usage(e.to_string()))?,
                kind: kind
                    .parse::<AgentKind>()
                    .map_err(|e| CliError::Usage(e.to_string()))?,
                owner: owner.parse().map_err(|_| {
                    CliError::Usage(format!("--owner {owner:?} is not a human id (UUID)"))
                })?,
                description,
                ceiling: Scope::new(
                    grants
                        .iter()
                        .map(|g| parse_grant(g))
                        .collect::<Result<Vec<_>, _>>()?,
                )
                .map_err(|e| CliError::Usage(e.to_string()))?,
                keys: keys
                    .iter()
                    .map(|k| parse_jwk(k))
                    .collect::<Result<_, _>>()?,
                tools,
                data_sources,
                tags: tags.into_iter().collect::<BTreeSet<_>>(),
            };
            let c = Client::new(&server.server, server.token.clone());
            show(&server, &c.post("/v1/agents", &new).await?);
        }
        AgentCommand::List { server, select } => {
            let c = Client::new(&server.server, server.token.clone());
            let q = select.query();
            let agents = list_all(&c, &q).await?;
            if server.json {
                output::json(&agents)
            } else {
                print_inventory(&c, &agents).await?
            }
        }
        AgentCommand::Show { server, agent } => {
            let c = Client::new(&server.server, server.token.clone());
            show(
                &server,
                &c.get(&format!("/v1/agents/{}", urlencode(&agent))).await?,
            );
        }
        AgentCommand::Keygen { out } => {
            let key = ed25519_dalek::SigningKey::from_bytes(&mandate_server::install::random());
            let public = crate::credentials::write_key_file(&out, &key)?;
            output::json(&public);
        }
        AgentCommand::Suspend { server, agent } => lifecycle(&server, &agent, "suspend").await?,
        AgentCommand::Resume { server, agent } => lifecycle(&server, &agent, "resume").await?,
        AgentCommand::Retire { server, agent } => lifecycle(&server, &agent, "retire").await?,
        AgentCommand::Transfer {
            server,
            agent,
            owner,
        } => {
            let c = Client::new(&server.server, server.token.clone());
            show(
                &server,
                &c.post(
                    &format!("/v1/agents/{}/transfer", urlencode(&agent)),
                    &json!({ "owner": owner }),
                )
                .await?,
            );
        }
        AgentCommand::AddKey { server, agent, jwk } => {
            let jwk = parse_jwk(&jwk)?;
            let c = Client::new(&server.server, server.token.clone());
            show(
                &server,
                &c.post(
                    &format!("/v1/agents/{}/keys", urlencode(&agent)),
                    &json!({ "jwk": jwk }),
                )
                .await?,
            );
        }
        AgentCommand::RemoveKey { server, agent, kid } => {
            let c = Client::new(&server.server, server.token.clone());
            show(
                &server,
                &c.delete(&format!(
                    "/v1/agents/{}/keys/{}",
                    urlencode(&agent),
                    urlencode(&kid)
                ))
                .await?,
            );
        }
    }
    Ok(())
}

async fn lifecycle(server: &ServerArgs, agent: &str, op: &str) -> Result<(), CliError> {
    let c = Client::new(&server.server, server.token.clone());
    show(
        server,
        &c.post_empty(&format!("/v1/agents/{}/{op}", urlencode(agent)))
            .await?,
    );
    Ok(())
}
