//! `mandate human ...`: admin commands over `/v1/humans`.

use clap::Subcommand;
use mandate_core::human::{Human, HumanRole, NewHuman};

use crate::client::Client;
use crate::output;
use crate::{CliError, ServerArgs};

#[derive(Subcommand)]
pub enum HumanCommand {
    /// Register a human by their identity provider's issuer and subject.
    Register {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long)]
        issuer: String,
        #[arg(long)]
        subject: String,
        #[arg(long = "name")]
        display_name: String,
        #[arg(long)]
        email: Option<String>,
        /// A role, repeatable: `approver` may answer approval requests, `auditor`
        /// may read figures and the log, `admin` sees everything in the web console.
        #[arg(long = "role", value_parser = parse_role)]
        roles: Vec<HumanRole>,
    },
    /// List humans.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// active or deactivated
        #[arg(long)]
        status: Option<String>,
    },
    /// Show one human.
    Show {
        #[command(flatten)]
        server: ServerArgs,
        id: String,
    },
    /// Deactivate a human who owns no agent (else use `offboard`, or
    /// `--force` to orphan their agents in an emergency).
    Deactivate {
        #[command(flatten)]
        server: ServerArgs,
        id: String,
        /// Deactivate even though they own agents; those become orphaned
        /// until transferred, and posture lists each one.
        #[arg(long)]
        force: bool,
    },
    /// Offboard a human: transfer or retire each of their agents, then
    /// deactivate them, all at once. Every agent they own must be named.
    Offboard {
        #[command(flatten)]
        server: ServerArgs,
        id: String,
        /// AGENT=HUMAN: hand the agent (id or name) to another active human.
        #[arg(long = "transfer", value_name = "AGENT=HUMAN")]
        transfers: Vec<String>,
        /// An agent (id or name) to retire: its tasks, credentials and keys are revoked.
        #[arg(long = "retire", value_name = "AGENT")]
        retires: Vec<String>,
    },
}

fn show(server: &ServerArgs, h: &Human) {
    if server.json {
        output::json(h)
    } else {
        println!("{}", output::humans(std::slice::from_ref(h)))
    }
}

pub async fn run(cmd: HumanCommand) -> Result<(), CliError> {
    match cmd {
        HumanCommand::Register {
            server,
            issuer,
            subject,
            display_name,
            email,
            roles,
        } => {
            let c = Client::new(&server.server, server.token.clone());
            let h: Human = c
                .post(
                    "/v1/humans",
                    &NewHuman {
                        issuer,
                        subject,
                        display_name,
                        email,
                        roles: roles.into_iter().collect(),
                    },
                )
                .await?;
            show(&server, &h);
        }
        HumanCommand::List { server, status } => {
            let c = Client::new(&server.server, server.token.clone());
            let mut path = "/v1/humans?limit=500".to_owned();
            if let Some(s) = &status {
                path.push_str(&format!("&status={}", urlencode(s)));
            }
            let all: Vec<Human> = c.get_all(&path).await?;
            if server.json {
                output::json(&all)
            } else {
                println!("{}", output::humans(&all))
            }
        }
        HumanCommand::Show { server, id } => {
            let c = Client::new(&server.server, server.token.clone());
            show(
                &server,
                &c.get(&format!("/v1/humans/{}", urlencode(&id))).await?,
            );
        }
        HumanCommand::Offboard {
            server,
            id,
            transfers,
            retires,
        } => {
            let mut agents = serde_json::Map::new();
            for t in &transfers {
                let (agent, to) = t.split_once('=').ok_or_else(|| {
                    CliError::Usage(format!("--transfer {t:?}: expected AGENT=HUMAN"))
                })?;
                agents.insert(agent.to_owned(), serde_json::json!({ "transfer_to": to }));
            }
            for r in retires {
                agents.insert(r, serde_json::json!("retire"));
            }
            let c = Client::new(&server.server, server.token.clone());
            show(
                &server,
                &c.post(
                    &format!("/v1/humans/{}/offboard", urlencode(&id)),
                    &serde_json::json!({ "agents": agents }),
                )
                .await?,
            );
        }
        HumanCommand::Deactivate { server, id, force } => {
            let c = Client::new(&server.server, server.token.clone());
            let query = if force { "?force=true" } else { "" };
            show(
                &server,
                &c.post_empty(&format!("/v1/humans/{}/deactivate{query}", urlencode(&id)))
                    .await?,
            );
        }
    }
    Ok(())
}

fn parse_role(s: &str) -> Result<HumanRole, String> {
    match s {
        "approver" => Ok(HumanRole::Approver),
        "auditor" => Ok(HumanRole::Auditor),
        "admin" => Ok(HumanRole::Admin),
        _ => Err(format!(
            "unknown role {s:?}; the roles are: approver, auditor, admin"
        )),
    }
}

/// Percent-encodes a path or query component.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
