//! `mandate task ...` and `mandate delegate`: tasks, their credentials and
//! their delegation trees.

use std::path::PathBuf;

use clap::Subcommand;
use mandate_core::task::Task;
use serde::Deserialize;
use serde_json::json;

use super::human::urlencode;
use crate::client::Client;
use crate::credentials::{self, AgentIdentity, Issued, Subject, TaskAsk};
use crate::output;
use crate::{CliError, ServerArgs};

/// The task a credential is asked for, and the agent that will hold it.
#[derive(clap::Args)]
pub struct TaskSpec {
    /// The agent's SPIFFE id (as printed by `mandate agent register`).
    #[arg(long)]
    agent: String,
    /// The agent's private key file (from `mandate agent keygen`).
    #[arg(long)]
    agent_key: PathBuf,
    #[arg(long)]
    purpose: String,
    /// Action pattern, repeatable (e.g. procurement.po.create, research.*).
    #[arg(long = "action", required = true)]
    actions: Vec<String>,
    /// Resource pattern, repeatable (e.g. erp:purchase-orders/*).
    #[arg(long = "resource", required = true)]
    resources: Vec<String>,
    #[arg(long)]
    max_calls: Option<u64>,
    /// Money the task may move, in minor units (cents); a child's is charged to its parents' too.
    #[arg(long)]
    budget: Option<u64>,
    /// Requested lifetime in seconds (never past the parent's expiry or the server maximum).
    #[arg(long)]
    ttl: Option<u64>,
    /// Bind the token to this key with DPoP (a key file from `mandate agent keygen`).
    #[arg(long)]
    dpop_key: Option<PathBuf>,
}

impl TaskSpec {
    fn parts(
        &self,
    ) -> Result<(AgentIdentity, TaskAsk, Option<ed25519_dalek::SigningKey>), CliError> {
        let (key, kid) = credentials::read_key_file(&self.agent_key)?;
        let agent = AgentIdentity::new(&self.agent, key, kid)?;
        let dpop = self
            .dpop_key
            .as_deref()
            .map(credentials::read_key_file)
            .transpose()?
            .map(|(k, _)| k);
        let ask = TaskAsk {
            purpose: self.purpose.clone(),
            entries: vec![(self.actions.clone(), self.resources.clone())],
            max_calls: self.max_calls,
            budget: self.budget,
            ttl_s: self.ttl,
        };
        Ok((agent, ask, dpop))
    }
}

#[derive(clap::Args)]
pub struct DelegateArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The parent task's token (the delegating agent's credential).
    #[arg(long, env = "MANDATE_TASK_TOKEN", hide_env_values = true)]
    parent_token: String,
    #[command(flatten)]
    spec: TaskSpec,
}

#[derive(Subcommand)]
pub enum TaskCommand {
    /// A human starts a task: exchange their ID token and the agent's assertion for a task token.
    Issue {
        #[command(flatten)]
        server: ServerArgs,
        /// The human's ID token from a trusted issuer (e.g. `mandate dev-issuer token`).
        #[arg(long, env = "MANDATE_ID_TOKEN", hide_env_values = true)]
        id_token: String,
        #[command(flatten)]
        spec: TaskSpec,
    },
    /// List tasks.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Assignee agent name or id.
        #[arg(long)]
        agent: Option<String>,
        /// open, completed, failed, revoked or expired
        #[arg(long)]
        status: Option<String>,
        /// Only the tree under this root task.
        #[arg(long)]
        root: Option<String>,
    },
    /// Show a task and the delegation tree below it.
    Show {
        #[command(flatten)]
        server: ServerArgs,
        task: String,
    },
    /// The assignee completes its task (every task delegated from it is revoked).
    Complete(EndArgs),
    /// The assignee reports its task failed (every task delegated from it is revoked).
    Fail(EndArgs),
    /// Revoke a task and its subtree (admin token, or --id-token of the initiator or owner).
    Revoke {
        #[command(flatten)]
        server: ServerArgs,
        task: String,
        /// Act as this human (initiator or the agent's owner) instead of as admin.
        #[arg(long)]
        id_token: Option<String>,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(clap::Args)]
pub struct EndArgs {
    #[command(flatten)]
    server: ServerArgs,
    task: String,
    /// The task's own token (or an admin's, in --task-token).
    #[command(flatten)]
    credential: credentials::TaskCredential,
    #[arg(long)]
    reason: Option<String>,
}

/// A task with the tree below it, as `GET /v1/tasks/{id}` returns it.
#[derive(Debug, Deserialize, serde::Serialize)]
pub struct TaskNode {
    #[serde(flatten)]
    pub task: Task,
    pub effective_status: String,
    pub children: Vec<TaskNode>,
}

/// Prints the delegation tree, one line per task, children indented.
pub fn print_tree(node: &TaskNode, indent: usize) {
    let grants: Vec<String> = node.task.scope.grants().map(|g| g.to_string()).collect();
    println!(
        "{:indent$}{} {} [{}] {} -> {}",
        "",
        if indent == 0 { "*" } else { "└─" },
        node.task.assignee_spiffe,
        node.effective_status,
        node.task.purpose,
        grants.join(", "),
        indent = indent
    );
    for c in &node.children {
        print_tree(c, indent + 3);
    }
}

fn report_issued(server: &ServerArgs, issued: &Issued) {
    if server.json {
        output::json(issued);
        return;
    }
    eprintln!(
        "task {} issued ({} token, expires in {} s)",
        issued.task_id, issued.token_type, issued.expires_in
    );
    println!("{}", issued.access_token);
}

pub async fn delegate(a: DelegateArgs) -> Result<(), CliError> {
    let (agent, ask, dpop) = a.spec.parts()?;
    let c = Client::new(&a.server.server, None);
    let issued = credentials::exchange(
        &c,
        Subject::Parent(&a.parent_token),
        &agent,
        &ask,
        dpop.as_ref(),
    )
    .await?;
    report_issued(&a.server, &issued);
    Ok(())
}

async fn end(a: EndArgs, how: &str) -> Result<(), CliError> {
    let path = format!("/v1/tasks/{}/{how}", urlencode(&a.task));
    let (c, headers) = a.credential.request(&a.server.server, "POST", &path)?;
    let ended: serde_json::Value = c
        .post_with(&path, &json!({ "reason": a.reason }), &headers)
        .await?;
    print_ended(&a.server, &ended);
    Ok(())
}

fn print_ended(server: &ServerArgs, ended: &serde_json::Value) {
    if server.json {
        output::json(ended);
        return;
    }
    let cascaded = ended["cascaded"].as_array().map_or(0, Vec::len);
    println!(
        "task {} is {}; {} delegated task(s) revoked with it",
        ended["task"]["id"].as_str().unwrap_or("?"),
        ended["task"]["status"].as_str().unwrap_or("?"),
        cascaded
    );
}

pub async fn run(cmd: TaskCommand) -> Result<(), CliError> {
    match cmd {
        TaskCommand::Issue {
            server,
            id_token,
            spec,
        } => {
            let (agent, ask, dpop) = spec.parts()?;
            let c = Client::new(&server.server, None);
            let issued =
                credentials::exchange(&c, Subject::Human(&id_token), &agent, &ask, dpop.as_ref())
                    .await?;
            report_issued(&server, &issued);
        }
        TaskCommand::List {
            server,
            agent,
            status,
            root,
        } => {
            let c = Client::new(&server.server, server.token.clone());
            let mut q = String::from("/v1/tasks?limit=500");
            for (k, v) in [("agent", agent), ("status", status), ("root", root)] {
                if let Some(v) = v {
                    q.push_str(&format!("&{k}={}", urlencode(&v)));
                }
            }
            let tasks: Vec<Task> = c.get_all(&q).await?;
            if server.json {
                output::json(&tasks);
            } else {
                println!("{}", output::tasks(&tasks));
            }
        }
        TaskCommand::Show { server, task } => {
            let c = Client::new(&server.server, server.token.clone());
            let node: TaskNode = c.get(&format!("/v1/tasks/{}", urlencode(&task))).await?;
            if server.json {
                output::json(&node);
            } else {
                print_tree(&node, 0);
            }
        }
        TaskCommand::Complete(a) => end(a, "complete").await?,
        TaskCommand::Fail(a) => end(a, "fail").await?,
        TaskCommand::Revoke {
            server,
            task,
            id_token,
            reason,
        } => {
            let c = Client::new(&server.server, id_token.or(server.token.clone()));
            let ended: serde_json::Value = c
                .post(
                    &format!("/v1/tasks/{}/revoke", urlencode(&task)),
                    &json!({ "reason": reason }),
                )
                .await?;
            print_ended(&server, &ended);
        }
    }
    Ok(())
}
