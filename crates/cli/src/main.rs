//! `mandate`: the one binary. A thin layer of argument parsing over the
//! server, store and core crates; every command fails with one line on
//! stderr and a non-zero exit.

#![forbid(unsafe_code)]

mod client;
mod commands;
mod credentials;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// glibc's malloc and free took about a fifth of a decision's CPU under load;
/// mimalloc takes far less (see the README's benchmarks).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Default listen port: unassigned by IANA and clear of the usual service ports.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7461";
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7461";

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The user asked for something that cannot work as given.
    #[error("{0}")]
    Usage(String),
    /// The server refused the request.
    #[error("{detail} (HTTP {status})")]
    Api { status: u16, detail: String },
    /// Something failed while carrying the command out.
    #[error("{0}")]
    Failed(String),
}

impl From<mandate_store::StoreError> for CliError {
    fn from(e: mandate_store::StoreError) -> Self {
        CliError::Failed(e.to_string())
    }
}

impl From<mandate_server::StartError> for CliError {
    fn from(e: mandate_server::StartError) -> Self {
        CliError::Failed(e.to_string())
    }
}

#[derive(Parser)]
#[command(
    name = "mandate",
    version,
    about = "Identity control plane and runtime authorization for AI agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the state lives: the embedded SQLite in a data dir, or PostgreSQL.
#[derive(clap::Args, Clone, Debug)]
pub struct StoreArgs {
    /// Data directory (SQLite database and master key).
    #[arg(long, env = "MANDATE_DATA_DIR", default_value_os_t = default_data_dir())]
    pub data_dir: PathBuf,
    /// PostgreSQL URL; when set, state lives there instead of the data dir's SQLite.
    #[arg(long, env = "MANDATE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

/// How admin commands reach a server.
#[derive(clap::Args, Clone, Debug)]
pub struct ServerArgs {
    #[arg(long, env = "MANDATE_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// Admin token (from `mandate init`).
    #[arg(long, env = "MANDATE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

pub(crate) fn default_data_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".mandate")
}

#[derive(Subcommand)]
enum Command {
    /// Create the data dir (or PostgreSQL schema), trust domain, signing key and first admin token.
    Init(commands::init::InitArgs),
    /// Run the HTTP server.
    Serve(commands::serve::ServeArgs),
    /// Every agent with owner, delegators, actual use, last activity and live holdings.
    Inventory(commands::inventory::InventoryArgs),
    /// Posture findings with OWASP NHI and NIST CSF ids (table, --json, --sarif).
    Posture(commands::posture::PostureArgs),
    /// Access reviews: an owner keeps, reduces or retires each agent's ceiling.
    #[command(subcommand)]
    Review(commands::review::ReviewCommand),
    /// Run the gateway: MCP and HTTP tool calls decided, audited, secrets injected.
    Gateway(commands::gateway::GatewayArgs),
    /// Downstream secrets the gateway injects (stored sealed, rotatable).
    #[command(subcommand)]
    Secret(commands::gateway::SecretCommand),
    /// Run the end-to-end demonstration on a fresh embedded store.
    Demo(commands::demo::DemoArgs),
    /// Register and manage human principals.
    #[command(subcommand)]
    Human(commands::human::HumanCommand),
    /// Register and manage agents (non-human identities).
    #[command(subcommand)]
    Agent(commands::agent::AgentCommand),
    /// Issue, list, show, complete and revoke tasks and their credentials.
    #[command(subcommand)]
    Task(commands::task::TaskCommand),
    /// An agent delegates a narrower subtask to another agent.
    Delegate(commands::task::DelegateArgs),
    /// Inspect task tokens.
    #[command(subcommand)]
    Token(commands::token::TokenCommand),
    /// Trust external OIDC issuers for human sign-in.
    #[command(subcommand)]
    Issuer(commands::trust::IssuerCommand),
    /// A local OIDC-style issuer for demos and tests.
    #[command(subcommand)]
    DevIssuer(commands::trust::DevIssuerCommand),
    /// Mandate's token-signing keys.
    #[command(subcommand)]
    Keys(commands::trust::KeysCommand),
    /// Validate, push, list, show and diff Cedar policy sets.
    #[command(subcommand)]
    Policy(commands::policy::PolicyCommand),
    /// Ask for a runtime decision under a task token (allow, deny or needs_approval).
    Decide(commands::decide::DecideArgs),
    /// The human approval queue.
    #[command(subcommand)]
    Approvals(commands::approvals::ApprovalsCommand),
    /// Emergency grants outside normal policy, and their review.
    #[command(subcommand)]
    Breakglass(commands::approvals::BreakGlassCommand),
    /// Register workflows whose outcomes count as Return on AI.
    #[command(subcommand)]
    Workflow(commands::outcome::WorkflowCommand),
    /// Report an outcome under a task credential, or show one.
    #[command(subcommand)]
    Outcome(commands::outcome::OutcomeCommand),
    /// Return-on-AI reports (table, --json, --csv, --html).
    #[command(subcommand)]
    Report(commands::outcome::ReportCommand),
    /// Export an evidence pack, or verify one offline.
    #[command(subcommand)]
    Evidence(commands::outcome::EvidenceCommand),
    /// Verify, export and checkpoint the audit log.
    #[command(subcommand)]
    Audit(commands::audit::AuditCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MANDATE_LOG")
                // rmcp logs every JSON-RPC error it sends as a warning; a
                // refused tool call is Mandate working, not a fault.
                .unwrap_or_else(|_| "warn,mandate=info,rmcp=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Init(a) => commands::init::run(a).await,
            Command::Serve(a) => commands::serve::run(a).await,
            Command::Inventory(a) => commands::inventory::run(a).await,
            Command::Posture(a) => commands::posture::run(a).await,
            Command::Review(c) => commands::review::run(c).await,
            Command::Gateway(a) => commands::gateway::run(a).await,
            Command::Secret(c) => commands::gateway::secret(c).await,
            Command::Demo(a) => commands::demo::run(a).await,
            Command::Human(c) => commands::human::run(c).await,
            Command::Agent(c) => commands::agent::run(c).await,
            Command::Task(c) => commands::task::run(c).await,
            Command::Delegate(a) => commands::task::delegate(a).await,
            Command::Token(c) => commands::token::run(c).await,
            Command::Issuer(c) => commands::trust::issuer(c).await,
            Command::DevIssuer(c) => commands::trust::dev(c).await,
            Command::Keys(c) => commands::trust::keys(c).await,
            Command::Policy(c) => commands::policy::run(c).await,
            Command::Decide(a) => commands::decide::run(a).await,
            Command::Approvals(c) => commands::approvals::approvals(c).await,
            Command::Breakglass(c) => commands::approvals::breakglass(c).await,
            Command::Workflow(c) => commands::outcome::workflow(c).await,
            Command::Outcome(c) => commands::outcome::outcome(c).await,
            Command::Report(c) => commands::outcome::report_cmd(c).await,
            Command::Evidence(c) => commands::outcome::evidence(c).await,
            Command::Audit(c) => commands::audit::run(c).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    /// Clap's own consistency checks over every command (duplicate names, ...).
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
