//! `mandate decide`: ask for a runtime decision under a task token, the way
//! an agent or its gateway does before acting.

use mandate_server::decision::{ContextIn, Outcome, ResourceIn};
use mandate_server::routes::decisions::DecisionRequest;

use crate::credentials;
use crate::{CliError, ServerArgs};

#[derive(clap::Args)]
pub struct DecideArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    credential: credentials::TaskCredential,
    /// The action, e.g. payments.initiate.
    #[arg(long)]
    action: String,
    /// The resource, e.g. erp:purchase-orders/po-1.
    #[arg(long)]
    resource: String,
    /// public, internal, confidential or restricted.
    #[arg(long, default_value = "internal")]
    sensitivity: String,
    #[arg(long)]
    tool: Option<String>,
    /// dev, staging or prod (default prod).
    #[arg(long)]
    environment: Option<String>,
    /// 0 to 100.
    #[arg(long)]
    risk: Option<u8>,
    /// Money moved, in minor units (cents).
    #[arg(long)]
    amount: Option<i64>,
}

pub fn request(
    action: &str,
    resource: &str,
    sensitivity: &str,
    context: ContextIn,
) -> DecisionRequest {
    DecisionRequest {
        action: action.to_owned(),
        resource: ResourceIn {
            id: resource.to_owned(),
            sensitivity: sensitivity.to_owned(),
            labels: Vec::new(),
        },
        context,
    }
}

/// One line per reason, for people.
pub fn print(o: &Outcome) {
    let mut head = format!("{}  {} on {}", o.decision.as_str(), o.action, o.resource);
    if let Some(a) = o.approval_id {
        head.push_str(&format!("  (approval {a})"));
    }
    if let Some(b) = o.breakglass_id {
        head.push_str(&format!("  (break-glass {b})"));
    }
    println!("{head}");
    for r in &o.reasons {
        match &r.policy_id {
            Some(p) => println!("    {} [{p}]: {}", r.code, r.message),
            None => println!("    {}: {}", r.code, r.message),
        }
    }
}

pub async fn run(a: DecideArgs) -> Result<(), CliError> {
    if a.risk.is_some_and(|r| r > 100) {
        return Err(CliError::Usage("--risk must be 0 to 100".into()));
    }
    let (c, headers) = a
        .credential
        .request(&a.server.server, "POST", "/v1/decisions")?;
    let body = request(
        &a.action,
        &a.resource,
        &a.sensitivity,
        ContextIn {
            tool: a.tool,
            environment: a.environment,
            data_sensitivity: None,
            risk_score: a.risk,
            amount: a.amount,
        },
    );
    let o: Outcome = c.post_with("/v1/decisions", &body, &headers).await?;
    if a.server.json {
        crate::output::json(&o);
    } else {
        print(&o);
    }
    Ok(())
}
