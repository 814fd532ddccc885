//! `mandate review ...`: access reviews. An admin starts a campaign for an
//! owner; the owner, with their ID token, keeps, reduces or retires each
//! agent's ceiling.

use clap::Subcommand;
use mandate_core::review::ReviewDecision;
use mandate_core::scope::Scope;
use mandate_server::routes::reviews::ReviewView;
use serde_json::json;

use super::agent::parse_grant;
use super::human::urlencode;
use crate::client::Client;
use crate::output;
use crate::{CliError, ServerArgs};

#[derive(Subcommand)]
pub enum ReviewCommand {
    /// Open a review of every agent an owner holds (admin).
    Start {
        #[command(flatten)]
        server: ServerArgs,
        /// The owner's human id.
        #[arg(long)]
        owner: String,
        /// Days the owner has to decide; undecided items then become findings.
        #[arg(long, default_value_t = 14)]
        deadline_days: u32,
        /// Days of use behind each proposed reduction.
        #[arg(long, default_value_t = 30)]
        window_days: u32,
    },
    /// List reviews, newest first (as admin, or as the owner with --id-token).
    List {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long)]
        owner: Option<String>,
        /// Only reviews with items still undecided.
        #[arg(long)]
        incomplete: bool,
        #[arg(long, env = "MANDATE_ID_TOKEN", hide_env_values = true)]
        id_token: Option<String>,
    },
    /// Show one review with each agent's ceiling, proposal and decision.
    Show {
        #[command(flatten)]
        server: ServerArgs,
        review: String,
        #[arg(long, env = "MANDATE_ID_TOKEN", hide_env_values = true)]
        id_token: Option<String>,
    },
    /// The owner's decision on one agent, applied at once.
    Decide {
        #[command(flatten)]
        server: ServerArgs,
        review: String,
        /// Agent name or id.
        #[arg(long)]
        agent: String,
        #[arg(long, group = "decision", required = true)]
        keep: bool,
        /// Reduce the ceiling: to the --grant list, or to the review's proposal.
        #[arg(long, group = "decision")]
        reduce: bool,
        #[arg(long, group = "decision")]
        retire: bool,
        /// With --reduce: a grant of the new ceiling as ACTION=RESOURCE, repeatable.
        #[arg(long = "grant", requires = "reduce")]
        grants: Vec<String>,
        /// Why: mandatory, kept in the audit log.
        #[arg(long)]
        note: String,
        /// The owner's ID token.
        #[arg(long, env = "MANDATE_ID_TOKEN", hide_env_values = true)]
        id_token: String,
    },
}

pub fn print(v: &ReviewView) {
    let r = &v.review;
    println!(
        "review {}  owner {}  {:?}  deadline {}  window {} days",
        r.id,
        r.owner,
        v.status,
        r.deadline.rfc3339(),
        r.window_days
    );
    let list = |s: &Scope| {
        s.grants()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut t = output::table(&["agent", "ceiling", "proposed", "unused", "decision"]);
    for i in &r.items {
        let unused: Vec<String> = i.unused.iter().map(ToString::to_string).collect();
        let decided = match &i.decided {
            None => "pending".to_owned(),
            Some(d) => format!(
                "{}{}: {}",
                d.decision.as_str(),
                if d.late { " (late)" } else { "" },
                d.note
            ),
        };
        t.add_row(vec![
            i.name.to_string(),
            list(&i.ceiling),
            list(&i.proposed),
            unused.join("\n"),
            decided,
        ]);
    }
    println!("{t}");
}

fn show(json: bool, v: &ReviewView) {
    if json {
        output::json(v);
    } else {
        print(v);
    }
}

pub async fn run(cmd: ReviewCommand) -> Result<(), CliError> {
    match cmd {
        ReviewCommand::Start {
            server,
            owner,
            deadline_days,
            window_days,
        } => {
            let c = Client::new(&server.server, server.token.clone());
            let body = json!({ "owner": owner, "deadline_days": deadline_days, "window_days": window_days });
            show(server.json, &c.post("/v1/reviews", &body).await?);
        }
        ReviewCommand::List {
            server,
            owner,
            incomplete,
            id_token,
        } => {
            let c = Client::new(&server.server, id_token.or(server.token.clone()));
            let mut path = format!("/v1/reviews?incomplete={incomplete}");
            if let Some(o) = owner {
                path.push_str(&format!("&owner={}", urlencode(&o)));
            }
            let all: Vec<ReviewView> = c.get(&path).await?;
            if server.json {
                output::json(&all);
            } else if all.is_empty() {
                println!("no reviews");
            } else {
                all.iter().for_each(print);
            }
        }
        ReviewCommand::Show {
            server,
            review,
            id_token,
        } => {
            let c = Client::new(&server.server, id_token.or(server.token.clone()));
            let path = format!("/v1/reviews/{}", urlencode(&review));
            show(server.json, &c.get(&path).await?);
        }
        ReviewCommand::Decide {
            server,
            review,
            agent,
            keep,
            reduce,
            retire: _,
            grants,
            note,
            id_token,
        } => {
            let c = Client::new(&server.server, Some(id_token));
            let path = format!("/v1/reviews/{}", urlencode(&review));
            let decision = if keep {
                ReviewDecision::Keep
            } else if reduce {
                let ceiling = if grants.is_empty() {
                    proposal(&c.get(&path).await?, &agent)?
                } else {
                    let grants = grants.iter().map(|g| parse_grant(g));
                    Scope::new(grants.collect::<Result<Vec<_>, _>>()?)
                        .map_err(|e| CliError::Usage(e.to_string()))?
                };
                ReviewDecision::Reduce { ceiling }
            } else {
                ReviewDecision::Retire
            };
            let mut body = json!({ "agent": agent, "decision": decision.as_str(), "note": note });
            if let ReviewDecision::Reduce { ceiling } = &decision {
                body["ceiling"] = json!(ceiling);
            }
            show(
                server.json,
                &c.post(&format!("{path}/decisions"), &body).await?,
            );
        }
    }
    Ok(())
}

/// The review's proposed ceiling for `agent` (by name or id).
fn proposal(v: &ReviewView, agent: &str) -> Result<Scope, CliError> {
    let item = v
        .review
        .items
        .iter()
        .find(|i| i.name.as_str() == agent || i.agent.to_string() == agent)
        .ok_or_else(|| {
            CliError::Usage(format!(
                "{agent} is not in review {}; `mandate review show` lists its agents",
                v.review.id
            ))
        })?;
    if item.proposed.is_empty() {
        return Err(CliError::Usage(format!(
            "{agent} used nothing in the window, so there is no reduction to propose: \
             give --grant ACTION=RESOURCE, or decide --retire"
        )));
    }
    Ok(item.proposed.clone())
}
