//! `mandate workflow`, `outcome`, `report roai` and `evidence`: what AI work
//! returned, and the pack an auditor checks offline.

use std::path::PathBuf;

use clap::Subcommand;
use mandate_core::audit::checkpoint::NoteVerifier;
use mandate_core::ids::HumanId;
use mandate_core::outcome::{
    Amount, Claim, ClaimedCost, ClaimedValue, Currency, IdempotencyKey, Money, NewWorkflow,
    OutcomeRecord, OutcomeType, RoaiReport, ValueModel, Workflow, WorkflowName,
};
use mandate_core::time::Timestamp;
use mandate_server::routes::outcomes::Receipt;

use super::human::urlencode;
use crate::client::Client;
use crate::credentials::TaskCredential;
use crate::{CliError, ServerArgs, output};

#[derive(Subcommand)]
pub enum WorkflowCommand {
    /// Register a workflow (or update its baseline and value model).
    Register(RegisterArgs),
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    Show {
        #[command(flatten)]
        server: ServerArgs,
        name: String,
    },
}

#[derive(clap::Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[arg(long)]
    name: String,
    /// What one transaction of the workflow is.
    #[arg(long)]
    description: String,
    /// The accountable human's id.
    #[arg(long)]
    owner: String,
    /// ISO 4217 code every amount of the workflow is in.
    #[arg(long)]
    currency: String,
    /// What one transaction costs done by a human, e.g. 30.00.
    #[arg(long)]
    baseline_cost: String,
    /// How long one transaction takes a human, in minutes.
    #[arg(long)]
    baseline_minutes: u32,
    /// reported | per-transaction=AMOUNT | time-saved.
    #[arg(long, default_value = "time-saved")]
    value_model: String,
    /// Price of one million model tokens, to cost reported tokens.
    #[arg(long)]
    token_price: Option<String>,
}

#[derive(Subcommand)]
pub enum OutcomeCommand {
    /// Report a completed transaction under a task credential (what an agent does).
    Report(Box<ReportArgs>),
    /// Show one recorded outcome with its classification.
    Show {
        #[command(flatten)]
        server: ServerArgs,
        id: String,
    },
}

#[derive(clap::Args)]
pub struct ReportArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    credential: TaskCredential,
    #[arg(long)]
    workflow: String,
    /// e.g. invoice.paid.
    #[arg(long = "type")]
    outcome_type: String,
    /// One key per transaction; a retry resends the same key.
    #[arg(long)]
    key: String,
    /// Business value, in --currency.
    #[arg(long)]
    value: Option<String>,
    /// Human minutes the transaction saved.
    #[arg(long)]
    minutes_saved: Option<u32>,
    /// Money spent producing it, in --currency.
    #[arg(long)]
    cost: Option<String>,
    /// Model tokens spent producing it.
    #[arg(long)]
    tokens: Option<u64>,
    /// Currency of --value and --cost (the workflow's).
    #[arg(long)]
    currency: Option<String>,
    /// The transaction's id in the business system.
    #[arg(long = "ref")]
    external_ref: Option<String>,
}

#[derive(Subcommand)]
pub enum ReportCommand {
    /// Return on AI for a workflow over a period, beside an optional baseline period.
    Roai(RoaiArgs),
}

/// A workflow and a period. Dates are UTC days (`--to` includes its day);
/// RFC 3339 times are taken as given (`--to` exclusive).
#[derive(clap::Args)]
pub struct PeriodArgs {
    #[arg(long)]
    workflow: String,
    #[arg(long)]
    from: String,
    #[arg(long)]
    to: String,
}

#[derive(clap::Args)]
pub struct RoaiArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    period: PeriodArgs,
    #[arg(long, requires = "baseline_to")]
    baseline_from: Option<String>,
    #[arg(long, requires = "baseline_from")]
    baseline_to: Option<String>,
    /// Print CSV instead of tables.
    #[arg(long, conflicts_with = "html")]
    csv: bool,
    /// Write a self-contained HTML report with charts to this file.
    #[arg(long)]
    html: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum EvidenceCommand {
    /// Download the evidence pack for a workflow and period.
    Export {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        period: PeriodArgs,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Check a pack offline: signatures, proofs and that the totals recompute.
    Verify {
        pack: PathBuf,
        /// Pin the audit log key (C2SP vkey, from `mandate audit vkey`) the pack must be signed with.
        #[arg(long)]
        vkey: Option<String>,
        /// Print the checks as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn usage(e: impl std::fmt::Display) -> CliError {
    CliError::Usage(e.to_string())
}

/// A UTC date (`2026-11-01`) or an RFC 3339 time. A date as the end of a
/// period means the end of that day.
fn when(s: &str, end: bool) -> Result<Timestamp, CliError> {
    let date = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(s, &date) {
        let d = if end { d.next_day().unwrap_or(d) } else { d };
        return Ok(Timestamp::from_offset(d.midnight().assume_utc()));
    }
    Timestamp::parse_rfc3339(s).map_err(|_| {
        usage(format!(
            "{s:?} is neither a date (2026-11-01) nor an RFC 3339 time (2026-11-01T09:00:00Z)"
        ))
    })
}

impl PeriodArgs {
    fn query(&self) -> Result<String, CliError> {
        let name = WorkflowName::parse(&self.workflow).map_err(usage)?;
        Ok(format!(
            "workflow={}&from={}&to={}",
            urlencode(name.as_str()),
            urlencode(&when(&self.from, false)?.rfc3339()),
            urlencode(&when(&self.to, true)?.rfc3339())
        ))
    }
}

fn value_model(s: &str) -> Result<ValueModel, CliError> {
    match s.split_once('=') {
        None if s == "reported" => Ok(ValueModel::Reported),
        None if s == "time-saved" => Ok(ValueModel::TimeSaved),
        Some(("per-transaction", amount)) => Ok(ValueModel::PerTransaction {
            amount: amount.parse().map_err(usage)?,
        }),
        _ => Err(usage(format!(
            "--value-model {s:?}: use reported, time-saved or per-transaction=AMOUNT"
        ))),
    }
}

pub async fn workflow(cmd: WorkflowCommand) -> Result<(), CliError> {
    match cmd {
        WorkflowCommand::Register(a) => {
            let wf = NewWorkflow {
                name: WorkflowName::parse(&a.name).map_err(usage)?,
                description: a.description,
                owner: a
                    .owner
                    .parse::<HumanId>()
                    .map_err(|_| usage(format!("--owner {:?} is not a human id", a.owner)))?,
                currency: a.currency.parse().map_err(usage)?,
                baseline_cost: a.baseline_cost.parse().map_err(usage)?,
                baseline_minutes: a.baseline_minutes,
                value_model: value_model(&a.value_model)?,
                token_price: a
                    .token_price
                    .as_deref()
                    .map(str::parse)
                    .transpose()
                    .map_err(usage)?,
            };
            wf.validate().map_err(usage)?;
            let c = Client::new(&a.server.server, a.server.token.clone());
            let stored: Workflow = c.post("/v1/workflows", &wf).await?;
            show_workflow(&a.server, &stored);
        }
        WorkflowCommand::List { server } => {
            let c = Client::new(&server.server, server.token.clone());
            let list: Vec<Workflow> = c.get("/v1/workflows").await?;
            if server.json {
                output::json(&list);
            } else {
                let mut t =
                    output::table(&["name", "owner", "baseline", "value model", "description"]);
                for w in &list {
                    t.add_row([
                        w.def.name.to_string(),
                        w.def.owner.to_string(),
                        format!(
                            "{} {} / {} min",
                            w.def.baseline_cost, w.def.currency, w.def.baseline_minutes
                        ),
                        w.def.value_model.as_str().to_owned(),
                        w.def.description.clone(),
                    ]);
                }
                println!("{t}");
            }
        }
        WorkflowCommand::Show { server, name } => {
            let c = Client::new(&server.server, server.token.clone());
            let w: Workflow = c
                .get(&format!("/v1/workflows/{}", urlencode(&name)))
                .await?;
            show_workflow(&server, &w);
        }
    }
    Ok(())
}

fn show_workflow(server: &ServerArgs, w: &Workflow) {
    if server.json {
        output::json(w);
    } else {
        println!(
            "workflow {}: {} (owner {}); human baseline {} {} and {} min per transaction; value model {}",
            w.def.name,
            w.def.description,
            w.def.owner,
            w.def.baseline_cost,
            w.def.currency,
            w.def.baseline_minutes,
            w.def.value_model.as_str()
        );
    }
}

fn money(amount: &Option<String>, currency: Option<Currency>) -> Result<Option<Money>, CliError> {
    let Some(a) = amount else { return Ok(None) };
    let amount: Amount = a.parse().map_err(usage)?;
    let currency =
        currency.ok_or_else(|| usage("--value and --cost need --currency (the workflow's)"))?;
    Ok(Some(Money { amount, currency }))
}

/// The claim as the agent states it.
fn claim(a: &ReportArgs) -> Result<Claim, CliError> {
    let currency = a
        .currency
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(usage)?;
    let value = money(&a.value, currency)?;
    let cost = money(&a.cost, currency)?;
    let claim = Claim {
        workflow: WorkflowName::parse(&a.workflow).map_err(usage)?,
        outcome_type: OutcomeType::parse(&a.outcome_type).map_err(usage)?,
        idempotency_key: IdempotencyKey::parse(&a.key).map_err(usage)?,
        value: (value.is_some() || a.minutes_saved.is_some()).then_some(ClaimedValue {
            money: value,
            minutes_saved: a.minutes_saved,
        }),
        cost: (cost.is_some() || a.tokens.is_some()).then_some(ClaimedCost {
            model_tokens: a.tokens,
            money: cost,
        }),
        external_ref: a.external_ref.clone(),
    };
    claim.validate().map_err(usage)?;
    Ok(claim)
}

/// Reports a claim and returns the receipt (used by the demo too).
pub async fn report(
    server: &str,
    credential: &TaskCredential,
    claim: &Claim,
) -> Result<Receipt, CliError> {
    let (c, headers) = credential.request(server, "POST", "/v1/outcomes")?;
    c.post_with("/v1/outcomes", claim, &headers).await
}

/// One line: class, explanation, and for a retry what it duplicated.
pub fn describe(r: &OutcomeRecord) -> String {
    format!(
        "{:<20} {} {} ({}): {}",
        r.classification.as_str(),
        r.outcome_type.as_str(),
        r.idempotency_key.as_str(),
        r.id,
        r.explanation
    )
}

pub async fn outcome(cmd: OutcomeCommand) -> Result<(), CliError> {
    match cmd {
        OutcomeCommand::Report(a) => {
            let receipt = report(&a.server.server, &a.credential, &claim(&a)?).await?;
            if a.server.json {
                output::json(&receipt);
            } else {
                if let Some(d) = receipt.duplicate_id {
                    println!("retry recorded as duplicate {d}; the first report stands:");
                }
                println!("{}", describe(&receipt.outcome));
            }
        }
        OutcomeCommand::Show { server, id } => {
            let c = Client::new(&server.server, server.token.clone());
            let r: OutcomeRecord = c.get(&format!("/v1/outcomes/{}", urlencode(&id))).await?;
            if server.json {
                output::json(&r);
            } else {
                println!("{}", describe(&r));
                println!("chain: {}", r.chain.join(" -> "));
            }
        }
    }
    Ok(())
}

/// Fetches a report (used by the demo too).
pub async fn fetch_roai(
    c: &Client,
    period: &PeriodArgs,
    baseline: Option<(&str, &str)>,
) -> Result<RoaiReport, CliError> {
    let mut q = period.query()?;
    if let Some((from, to)) = baseline {
        q.push_str(&format!(
            "&baseline_from={}&baseline_to={}",
            urlencode(&when(from, false)?.rfc3339()),
            urlencode(&when(to, true)?.rfc3339())
        ));
    }
    c.get(&format!("/v1/reports/roai?{q}")).await
}

pub async fn report_cmd(cmd: ReportCommand) -> Result<(), CliError> {
    let ReportCommand::Roai(a) = cmd;
    let c = Client::new(&a.server.server, a.server.token.clone());
    let baseline = a.baseline_from.as_deref().zip(a.baseline_to.as_deref());
    let r = fetch_roai(&c, &a.period, baseline).await?;
    if let Some(path) = &a.html {
        std::fs::write(path, mandate_report::html(&r))
            .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", path.display())))?;
        println!("wrote {}", path.display());
    } else if a.csv {
        print!("{}", mandate_report::csv(&r));
    } else if a.server.json {
        output::json(&r);
    } else {
        print!("{}", mandate_report::table(&r));
    }
    Ok(())
}

impl PeriodArgs {
    pub fn new(workflow: &str, from: &str, to: &str) -> Self {
        PeriodArgs {
            workflow: workflow.to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
        }
    }
}

/// Downloads a pack to `output` (used by the demo too).
pub async fn export(c: &Client, period: &PeriodArgs, output: &PathBuf) -> Result<usize, CliError> {
    let zip = c
        .get_bytes(&format!("/v1/evidence?{}", period.query()?))
        .await?;
    std::fs::write(output, &zip)
        .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", output.display())))?;
    Ok(zip.len())
}

/// Verifies a pack offline and prints every check; an error when it fails.
pub fn verify(pack: &PathBuf, vkey: Option<&str>, json: bool) -> Result<(), CliError> {
    let bytes =
        std::fs::read(pack).map_err(|e| usage(format!("cannot read {}: {e}", pack.display())))?;
    let pinned = vkey
        .map(|k| {
            NoteVerifier::parse_vkey(k.trim())
                .map_err(|e| usage(format!("--vkey is not a C2SP verifier key: {e}")))
        })
        .transpose()?;
    let v = mandate_evidence::verify(&bytes, pinned.as_ref());
    if json {
        output::json(&serde_json::json!({
            "passed": v.passed(),
            "checks": v.checks.iter().map(|c| serde_json::json!({
                "name": c.name, "ok": c.ok, "detail": c.detail,
            })).collect::<Vec<_>>(),
        }));
    } else {
        for c in &v.checks {
            println!(
                "{} {:<14} {}",
                if c.ok { "ok  " } else { "FAIL" },
                c.name,
                c.detail
            );
        }
        if let Some(s) = &v.summary {
            println!(
                "{} transactions of {} ({} counted)",
                s.transactions, s.workflow, s.counted
            );
            if !s.pinned {
                println!(
                    "note: the key was taken from the pack itself; pin it with --vkey (from `mandate audit vkey`)"
                );
            }
        }
    }
    if v.passed() {
        println!("PASS");
        Ok(())
    } else {
        let failed = v.checks.iter().filter(|c| !c.ok).count();
        Err(CliError::Failed(format!(
            "FAIL: {failed} check(s) failed; the pack is not evidence"
        )))
    }
}

pub async fn evidence(cmd: EvidenceCommand) -> Result<(), CliError> {
    match cmd {
        EvidenceCommand::Export {
            server,
            period,
            output,
        } => {
            let c = Client::new(&server.server, server.token.clone());
            let n = export(&c, &period, &output).await?;
            println!("wrote {} ({n} bytes)", output.display());
        }
        EvidenceCommand::Verify { pack, vkey, json } => verify(&pack, vkey.as_deref(), json)?,
    }
    Ok(())
}
