//! `mandate approvals ...` and `mandate breakglass ...`: the human side of
//! runtime authorization.

use clap::Subcommand;
use mandate_core::approval::Approval;
use mandate_core::breakglass::BreakGlass;
use serde_json::json;

use super::human::urlencode;
use crate::client::Client;
use crate::{CliError, ServerArgs};

#[derive(Subcommand)]
pub enum ApprovalsCommand {
    /// List approval requests (pending by default).
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// pending, approved, denied or used; `all` for every one.
        #[arg(long, default_value = "pending")]
        status: String,
        /// Read as this approver instead of as admin.
        #[arg(long, env = "MANDATE_ID_TOKEN", hide_env_values = true)]
        id_token: Option<String>,
    },
    /// Approve a request: the same request then gets `allow`, once.
    Approve(AnswerArgs),
    /// Deny a request.
    Deny(AnswerArgs),
}

#[derive(clap::Args)]
pub struct AnswerArgs {
    #[command(flatten)]
    server: ServerArgs,
    approval: String,
    /// The approver's ID token (a human with the approver role, not the task's initiator).
    #[arg(long, env = "MANDATE_ID_TOKEN", hide_env_values = true)]
    id_token: String,
    #[arg(long)]
    note: Option<String>,
}

#[derive(Subcommand)]
pub enum BreakGlassCommand {
    /// Grant an agent emergency access outside normal policy (admin).
    Grant {
        #[command(flatten)]
        server: ServerArgs,
        /// Agent name or id.
        #[arg(long)]
        agent: String,
        /// A grant as ACTION=RESOURCE (e.g. payments.*=erp:vendors/*), repeatable.
        #[arg(long = "scope", required = true)]
        scope: Vec<String>,
        /// Seconds, at most 3600.
        #[arg(long, default_value_t = 900)]
        ttl: i64,
        /// Why: mandatory, kept in the audit log.
        #[arg(long)]
        reason: String,
    },
    /// List grants (only unreviewed ones with --unreviewed).
    List {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long)]
        unreviewed: bool,
    },
    /// Record a human's review of a grant.
    Review {
        #[command(flatten)]
        server: ServerArgs,
        grant: String,
        /// The reviewer's ID token.
        #[arg(long, env = "MANDATE_ID_TOKEN", hide_env_values = true)]
        id_token: String,
        #[arg(long)]
        note: String,
    },
}

pub fn print_approval(a: &Approval) {
    println!(
        "{}  {:<8}  {} on {}  task {}  policies {}  expires {}",
        a.id,
        a.status.as_str(),
        a.action,
        a.resource,
        a.task,
        a.policies.join(","),
        a.expires_at.rfc3339()
    );
}

pub fn print_grant(g: &BreakGlass) {
    let scope: Vec<String> = g.scope.grants().map(ToString::to_string).collect();
    println!(
        "{}  agent {}  [{}]  until {}  {}  reason: {}",
        g.id,
        g.agent,
        scope.join("; "),
        g.expires_at.rfc3339(),
        if g.is_reviewed() {
            "reviewed"
        } else {
            "UNREVIEWED"
        },
        g.reason
    );
}

pub async fn approvals(cmd: ApprovalsCommand) -> Result<(), CliError> {
    match cmd {
        ApprovalsCommand::List {
            server,
            status,
            id_token,
        } => {
            let c = Client::new(&server.server, id_token.or(server.token.clone()));
            let path = match status.as_str() {
                "all" => "/v1/approvals".to_owned(),
                s => format!("/v1/approvals?status={}", urlencode(s)),
            };
            let all: Vec<Approval> = c.get(&path).await?;
            if server.json {
                crate::output::json(&all);
            } else if all.is_empty() {
                println!("no approvals");
            } else {
                all.iter().for_each(print_approval);
            }
        }
        ApprovalsCommand::Approve(a) => answer(a, "approve").await?,
        ApprovalsCommand::Deny(a) => answer(a, "deny").await?,
    }
    Ok(())
}

async fn answer(a: AnswerArgs, verb: &str) -> Result<(), CliError> {
    let c = Client::new(&a.server.server, Some(a.id_token));
    let done: Approval = c
        .post(
            &format!("/v1/approvals/{}/{verb}", urlencode(&a.approval)),
            &json!({ "note": a.note }),
        )
        .await?;
    if a.server.json {
        crate::output::json(&done);
    } else {
        print_approval(&done);
    }
    Ok(())
}

/// `ACTION=RESOURCE` as the API's grant object.
fn grant_arg(s: &str) -> Result<serde_json::Value, CliError> {
    let (action, resource) = s.split_once('=').ok_or_else(|| {
        CliError::Usage(format!(
            "--scope {s:?}: write ACTION=RESOURCE, e.g. payments.*=erp:vendors/*"
        ))
    })?;
    Ok(json!({ "action": action, "resource": resource }))
}

pub async fn breakglass(cmd: BreakGlassCommand) -> Result<(), CliError> {
    match cmd {
        BreakGlassCommand::Grant {
            server,
            agent,
            scope,
            ttl,
            reason,
        } => {
            let scope = scope
                .iter()
                .map(|s| grant_arg(s))
                .collect::<Result<Vec<_>, _>>()?;
            let c = Client::new(&server.server, server.token.clone());
            let g: BreakGlass = c
                .post(
                    "/v1/breakglass",
                    &json!({ "agent": agent, "scope": scope, "ttl_s": ttl, "reason": reason }),
                )
                .await?;
            if server.json {
                crate::output::json(&g);
            } else {
                print_grant(&g);
            }
        }
        BreakGlassCommand::List { server, unreviewed } => {
            let c = Client::new(&server.server, server.token.clone());
            let all: Vec<BreakGlass> = c
                .get(&format!("/v1/breakglass?unreviewed={unreviewed}"))
                .await?;
            if server.json {
                crate::output::json(&all);
            } else if all.is_empty() {
                println!("no break-glass grants");
            } else {
                all.iter().for_each(print_grant);
            }
        }
        BreakGlassCommand::Review {
            server,
            grant,
            id_token,
            note,
        } => {
            let c = Client::new(&server.server, Some(id_token));
            let g: BreakGlass = c
                .post(
                    &format!("/v1/breakglass/{}/review", urlencode(&grant)),
                    &json!({ "note": note }),
                )
                .await?;
            if server.json {
                crate::output::json(&g);
            } else {
                print_grant(&g);
            }
        }
    }
    Ok(())
}
