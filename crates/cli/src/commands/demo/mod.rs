//! `mandate demo`: the main job on the embedded default, end to end over the
//! real HTTP API of an in-process server on loopback.

mod gateway;
mod ui;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use mandate_core::agent::Agent;
use mandate_core::audit::trace::{TraceTarget, Tracer};
use mandate_core::human::Human;
use mandate_core::ids::{TaskId, TrustDomain};
use mandate_core::jwk::Ed25519Jwk;
use mandate_server::{InitOptions, app_state, initialize, load_master_key, serve};
use mandate_store::{SqlStore, Store};
use serde_json::json;
use tokio::net::TcpListener;

use super::agent::{list_all, parse_grant, print_inventory};
use super::audit::{print_report, render_trace, trace_store, verify_store};
use super::task::{TaskNode, print_tree};
use super::trust::{DEV_ISSUER, dev_issuer};
use crate::CliError;
use crate::client::Client;
use crate::credentials::{self, AgentIdentity, Subject, TaskAsk, TaskCredential};
use mandate_core::decision::Verdict;
use mandate_core::outcome::{Claim, ClaimedCost, IdempotencyKey, Money, OutcomeType, WorkflowName};
use mandate_server::decision::{ContextIn, Outcome};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Use this (empty) data dir instead of a temporary one, to inspect it afterwards.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Afterwards, keep serving the demo's data with the web console (`/ui`)
    /// until Ctrl-C, and print how to sign in.
    #[arg(long)]
    ui: bool,
    /// Where `--ui` serves.
    #[arg(long, default_value = crate::DEFAULT_LISTEN, requires = "ui")]
    listen: String,
}

fn step(n: u32, text: &str) {
    println!("\n== {n}. {text}");
}

pub async fn run(a: DemoArgs) -> Result<(), CliError> {
    let temp;
    let dir = match a.data_dir {
        Some(d) => {
            if d.join("mandate.db").exists() {
                return Err(CliError::Usage(format!(
                    "{} already holds a Mandate store; give an empty --data-dir",
                    d.display()
                )));
            }
            d
        }
        None => {
            temp = tempfile::tempdir()
                .map_err(|e| CliError::Failed(format!("cannot create a temp dir: {e}")))?;
            temp.path().to_path_buf()
        }
    };

    step(1, "Initialise an empty embedded store");
    // The demo keeps its master key in its own data dir, never the caller's environment.
    let store: Arc<dyn Store> = Arc::new(SqlStore::open_sqlite(&dir).await?);
    let (master, _) = load_master_key(&dir, true)?;
    let trust_domain = TrustDomain::parse("acme.example").expect("valid trust domain");
    let (install, token) = initialize(
        store.as_ref(),
        InitOptions {
            trust_domain,
            issuer: None,
        },
        &master,
    )
    .await?;
    println!(
        "data dir {}; trust domain {}; admin token minted (shown once by `mandate init`)",
        dir.display(),
        install.trust_domain
    );

    let state = app_state(store.clone(), &master, Default::default()).await?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        state.clone(),
        Duration::from_secs(3600),
        async {
            let _ = stopped.await;
        },
    ));
    println!("server listening on http://{addr}");
    let c = Client::new(&format!("http://{addr}"), Some(token.expose()));

    step(2, "Register the humans who own and delegate to agents");
    let alice: Human = c
        .post(
            "/v1/humans",
            &json!({ "issuer": DEV_ISSUER, "subject": "alice",
            "display_name": "Alice Martin (Head of Procurement)", "email": "alice@acme.example" }),
        )
        .await?;
    let bob: Human = c
        .post(
            "/v1/humans",
            &json!({ "issuer": DEV_ISSUER, "subject": "bob",
            "display_name": "Bob Chen (Platform Engineering)", "email": "bob@acme.example" }),
        )
        .await?;
    let carol: Human = c
        .post(
            "/v1/humans",
            &json!({ "issuer": DEV_ISSUER, "subject": "carol",
            "display_name": "Carol Diaz (Finance Controller)", "email": "carol@acme.example",
            "roles": ["approver"] }),
        )
        .await?;
    println!(
        "registered {}, {} and {} (approver)",
        alice.display_name, bob.display_name, carol.display_name
    );

    step(
        3,
        "Register agents with owners, entitlement ceilings and attestation keys",
    );
    let specs = [
        (
            "orchestrator",
            "agent",
            &alice,
            "Plans procurement work and delegates it to specialist agents",
            vec![
                "procurement.*=erp:*",
                "research.*=web:*",
                "payments.initiate=bank:acme/*",
            ],
            vec!["team:procurement"],
        ),
        (
            "research-agent",
            "agent",
            &alice,
            "Compares suppliers and prices from public sources",
            vec!["research.search=web:*", "research.read=web:*"],
            vec!["team:procurement", "data:public"],
        ),
        (
            "procurement-agent",
            "agent",
            &alice,
            "Raises purchase orders and prepares supplier payments",
            vec![
                "procurement.po.create=erp:purchase-orders/*",
                "procurement.read=erp:*",
                "payments.initiate=bank:acme/ops",
            ],
            vec!["team:procurement", "finance"],
        ),
        (
            "code-agent",
            "pipeline",
            &bob,
            "Opens pull requests for integration changes",
            vec![
                "repo.read=git:acme/*",
                "repo.pr.create=git:acme/integrations",
            ],
            vec!["team:platform"],
        ),
    ];
    let mut identities = std::collections::HashMap::new();
    for (i, (name, kind, owner, description, grants, tags)) in specs.iter().enumerate() {
        let secret = SigningKey::from_bytes(&mandate_server::install::random());
        let key = secret.verifying_key();
        let ceiling = grants
            .iter()
            .map(|g| parse_grant(g))
            .collect::<Result<Vec<_>, _>>()?;
        let agent: Agent = c
            .post(
                "/v1/agents",
                &json!({
                    "name": name, "kind": kind, "owner": owner.id, "description": description,
                    "ceiling": ceiling, "keys": [Ed25519Jwk::from_verifying_key(&key, None)],
                    "tools": [], "data_sources": [], "tags": tags,
                }),
            )
            .await?;
        println!(
            "{}. {} -> {} (owner {})",
            i + 1,
            agent.name,
            agent.spiffe_id,
            owner.display_name
        );
        let kid = Ed25519Jwk::from_verifying_key(&key, None).kid().to_owned();
        identities.insert(
            *name,
            AgentIdentity::new(agent.spiffe_id.as_str(), secret, kid)?,
        );
    }

    step(4, "Bad registrations are refused, and nothing is written");
    for (what, body) in [
        (
            "a name that is not a SPIFFE path segment",
            json!({ "name": "Rogue Agent", "kind": "agent", "owner": bob.id,
            "description": "x", "ceiling": [] }),
        ),
        (
            "an owner nobody registered",
            json!({ "name": "shadow-agent", "kind": "agent",
            "owner": "0190c6a2-0000-7000-8000-000000000000", "description": "x", "ceiling": [] }),
        ),
        (
            "a name already taken",
            json!({ "name": "research-agent", "kind": "agent", "owner": bob.id,
            "description": "x", "ceiling": [] }),
        ),
    ] {
        match c.post::<_, Agent>("/v1/agents", &body).await {
            Err(e) => println!("refused {what}: {e}"),
            Ok(a) => {
                return Err(CliError::Failed(format!(
                    "the demo expected {what} to be refused, but {} was registered",
                    a.name
                )));
            }
        }
    }

    step(
        5,
        "Bob leaves: his agents are orphaned until ownership moves",
    );
    let _: Human = c
        .post_empty(&format!("/v1/humans/{}/deactivate?force=true", bob.id))
        .await?;
    let orphans = list_all(&c, "&orphaned=true").await?;
    println!(
        "orphaned: {}",
        orphans
            .iter()
            .map(|a| a.name.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let refused = c
        .post::<_, Agent>(
            "/v1/agents",
            &json!({ "name": "late-agent", "kind": "agent", "owner": bob.id,
            "description": "x", "ceiling": [] }),
        )
        .await;
    if let Err(e) = refused {
        println!("refused a new agent for the deactivated owner: {e}");
    }

    step(6, "Inventory");
    print_inventory(&c, &list_all(&c, "").await?).await?;

    delegation(&c, &dir, &identities).await?;
    let payment = runtime_authorization(&c, &dir, &identities).await?;
    return_on_ai(&c, &dir, &identities, &alice).await?;
    gateway::tools(&c, &dir, &identities, state).await?;

    step(
        22,
        "Inventory: each agent's owner, who delegated to it, what it actually did, what it holds now",
    );
    let items = super::inventory::fetch(&c, "").await?;
    super::inventory::print_table(&c, &items).await?;

    access_review(&c, &dir, &alice).await?;

    step(
        24,
        "Posture: findings as of 100 days from now (one of each kind shown), with OWASP NHI and NIST CSF ids",
    );
    let at = mandate_core::time::Timestamp::from_millis(
        mandate_server::now().as_millis() + 100 * 86_400_000,
    );
    let mut p = super::posture::fetch(
        &c,
        &format!("at={}", super::human::urlencode(&at.rfc3339())),
    )
    .await?;
    let mut seen = std::collections::BTreeSet::new();
    p.findings.retain(|f| seen.insert(f.kind));
    super::posture::print(&p);

    step(
        25,
        "Audit: sign a checkpoint, trace the payment task from the log alone, and verify the whole log",
    );
    let cp: serde_json::Value = c.post_empty("/v1/audit/checkpoint").await?;
    print!("{}", cp["note"].as_str().unwrap_or_default());
    let _ = stop.send(());
    server
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?
        .map_err(|e| CliError::Failed(e.to_string()))?;
    println!("\n$ mandate audit trace {payment}");
    let trace = trace_store(store.as_ref(), Tracer::new(TraceTarget::Task(payment))).await?;
    print!("{}", render_trace(&trace));
    println!();
    let report = verify_store(store.as_ref(), None, None).await?;
    print_report(&report);
    if a.ui {
        ui::serve(store, &master, &dir, token.expose(), &identities, &a.listen).await?;
    }
    Ok(())
}

/// Step 23: Alice reviews her agents' ceilings. One is cut to what it used,
/// one is kept; the rest are left undecided and escalate at the deadline.
async fn access_review(c: &Client, dir: &std::path::Path, alice: &Human) -> Result<(), CliError> {
    use mandate_server::routes::reviews::ReviewView;
    step(
        23,
        "Access review: Alice re-certifies her agents' ceilings; the proposal is what each actually used",
    );
    let review: ReviewView = c
        .post(
            "/v1/reviews",
            &json!({ "owner": alice.id, "deadline_days": 14 }),
        )
        .await?;
    let r = &review.review;
    let reduce = r
        .items
        .iter()
        .find(|i| !i.proposed.is_empty() && !i.unused.is_empty())
        .ok_or_else(|| CliError::Failed("the demo expected an agent with unused grants".into()))?;
    let keep = r
        .items
        .iter()
        .find(|i| i.agent != reduce.agent)
        .ok_or_else(|| CliError::Failed("the demo expected a second agent to review".into()))?;
    let dev = dev_issuer(dir)?;
    let token = dev.mint("alice", &c.issuer().await?, mandate_server::now(), 300);
    let owner = Client::new(c.base(), Some(token));
    let path = format!("/v1/reviews/{}/decisions", r.id);
    let _: ReviewView = owner
        .post(
            &path,
            &json!({ "agent": reduce.agent, "decision": "reduce", "ceiling": reduce.proposed,
                     "note": "cut to what it used in the last 30 days" }),
        )
        .await?;
    let done: ReviewView = owner
        .post(
            &path,
            &json!({ "agent": keep.agent, "decision": "keep", "note": "still needed for quarter close" }),
        )
        .await?;
    super::review::print(&done);
    println!(
        "{} reduced, {} kept; the other {} stay undecided and escalate after {}",
        reduce.name,
        keep.name,
        r.items.len() - 2,
        r.deadline.rfc3339()
    );
    Ok(())
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn ask(purpose: &str, actions: &[&str], resources: &[&str], max_calls: u64) -> TaskAsk {
    TaskAsk {
        purpose: purpose.to_owned(),
        entries: vec![(strings(actions), strings(resources))],
        max_calls: Some(max_calls),
        budget: None,
        ttl_s: Some(900),
    }
}

async fn introspect(c: &Client, token: &str) -> Result<serde_json::Value, CliError> {
    c.post_form("/oauth2/introspect", &[("token", token)], &[])
        .await
}

/// Steps 7-11: a task through the orchestrator, narrower subtasks, a refused
/// over-broad delegation, and the cascade when the parent completes.
async fn delegation(
    c: &Client,
    dir: &std::path::Path,
    agents: &std::collections::HashMap<&str, AgentIdentity>,
) -> Result<(), CliError> {
    step(
        7,
        "Trust the dev issuer; Alice signs in with an ID token from it",
    );
    let dev = dev_issuer(dir)?;
    let _: serde_json::Value = c
        .post(
            "/v1/issuers",
            &json!({ "issuer": dev.issuer(), "jwks": dev.jwks() }),
        )
        .await?;
    let id_token = dev.mint("alice", &c.issuer().await?, mandate_server::now(), 300);
    println!("trusting {}; Alice holds a 5-minute ID token", dev.issuer());

    step(
        8,
        "Alice starts a procurement task through the orchestrator (RFC 8693 token exchange)",
    );
    let root = credentials::exchange(
        c,
        Subject::Human(&id_token),
        &agents["orchestrator"],
        &TaskAsk {
            entries: vec![
                (
                    strings(&["procurement.read", "procurement.po.create"]),
                    strings(&["erp:*"]),
                ),
                (
                    strings(&["research.search", "research.read"]),
                    strings(&["web:*"]),
                ),
            ],
            ..ask("Buy 20 laptops for the new Lyon office", &[], &[], 200)
        },
        None,
    )
    .await?;
    println!(
        "task {} -> orchestrator, {} token valid {} s",
        root.task_id, root.token_type, root.expires_in
    );

    step(
        9,
        "The orchestrator delegates narrower subtasks to two agents",
    );
    let research = credentials::exchange(
        c,
        Subject::Parent(&root.access_token),
        &agents["research-agent"],
        &ask(
            "Compare laptop suppliers",
            &["research.search", "research.read"],
            &["web:suppliers/*"],
            50,
        ),
        None,
    )
    .await?;
    let purchase = credentials::exchange(
        c,
        Subject::Parent(&root.access_token),
        &agents["procurement-agent"],
        &ask(
            "Raise the laptop purchase order",
            &["procurement.po.create"],
            &["erp:purchase-orders/*"],
            5,
        ),
        None,
    )
    .await?;
    let claims: mandate_core::credential::TaskClaims =
        mandate_core::credential::peek_claims(&purchase.access_token)
            .map_err(|e| CliError::Failed(e.to_string()))?;
    println!(
        "chain in the purchase token: human {} -> {}",
        claims.sub,
        claims.act.chain().join(" -> ")
    );
    let tree: TaskNode = c.get(&format!("/v1/tasks/{}", root.task_id)).await?;
    print_tree(&tree, 0);

    step(10, "Over-broad delegations are refused with the reason");
    for (agent, what, a) in [
        (
            "procurement-agent",
            "payments, outside the parent task (though inside the agent's ceiling)",
            ask(
                "Pay the supplier",
                &["payments.initiate"],
                &["bank:acme/ops"],
                1,
            ),
        ),
        (
            "research-agent",
            "purchase orders, outside the research agent's ceiling",
            ask(
                "Raise a PO too",
                &["procurement.po.create"],
                &["erp:purchase-orders/*"],
                1,
            ),
        ),
    ] {
        match credentials::exchange(
            c,
            Subject::Parent(&root.access_token),
            &agents[agent],
            &a,
            None,
        )
        .await
        {
            Err(e) => println!("refused {what}: {e}"),
            Ok(t) => {
                return Err(CliError::Failed(format!(
                    "the demo expected {what} to be refused, but task {} was issued",
                    t.task_id
                )));
            }
        }
    }

    step(
        11,
        "The orchestrator completes the parent task: the subtasks end with it",
    );
    let task_client = Client::new(c.base(), Some(root.access_token.clone()));
    let ended: serde_json::Value = task_client
        .post(
            &format!("/v1/tasks/{}/complete", root.task_id),
            &json!({ "reason": "PO raised" }),
        )
        .await?;
    println!(
        "task {} {}; cascaded to {} subtask(s)",
        root.task_id,
        ended["task"]["status"].as_str().unwrap_or("?"),
        ended["cascaded"].as_array().map_or(0, Vec::len)
    );
    for (name, t) in [("research", &research), ("purchase", &purchase)] {
        let i = introspect(c, &t.access_token).await?;
        println!(
            "{name} token: active={} ({})",
            i["active"],
            i["reason"].as_str().unwrap_or("-")
        );
        if i["active"] != false {
            return Err(CliError::Failed(format!(
                "the {name} token should be refused after the cascade"
            )));
        }
    }
    let child_client = Client::new(c.base(), Some(purchase.access_token.clone()));
    match child_client
        .post::<_, serde_json::Value>(
            &format!("/v1/tasks/{}/complete", purchase.task_id),
            &json!({}),
        )
        .await
    {
        Err(e) => println!("the purchase agent's token is refused: {e}"),
        Ok(_) => {
            return Err(CliError::Failed(
                "a revoked child token was accepted".into(),
            ));
        }
    }
    let tree: TaskNode = c.get(&format!("/v1/tasks/{}", root.task_id)).await?;
    print_tree(&tree, 0);
    Ok(())
}

/// The policy set the demo pushes: the example shipped with the policy crate.
const DEFAULT_POLICY: &str = include_str!("../../../../policy/examples/default.cedar");

async fn decide(
    task: &Client,
    action: &str,
    resource: &str,
    context: ContextIn,
) -> Result<Outcome, CliError> {
    let o: Outcome = task
        .post(
            "/v1/decisions",
            &super::decide::request(action, resource, "internal", context),
        )
        .await?;
    super::decide::print(&o);
    Ok(o)
}

fn expect(o: &Outcome, verdict: Verdict, what: &str) -> Result<(), CliError> {
    expect_verdict(o.decision, verdict, what)
}

/// Steps 12-16: policy-as-code, the four outcomes of a decision with their
/// reasons, a human approval under separation of duties, and break-glass.
/// Returns the payment task, whose trace ends the demo: it holds every kind
/// of decision, an approval and a break-glass use.
async fn runtime_authorization(
    c: &Client,
    dir: &std::path::Path,
    agents: &std::collections::HashMap<&str, AgentIdentity>,
) -> Result<TaskId, CliError> {
    step(
        12,
        "Push the policy set (Cedar), validated against Mandate's schema",
    );
    let broken =
        "@id(\"typo\")\npermit (principal, action, resource)\nwhen { context.risk < 50 };\n";
    match c
        .post::<_, serde_json::Value>("/v1/policies", &json!({ "text": broken }))
        .await
    {
        Err(e) => println!("refused a policy with a typo: {e}"),
        Ok(_) => {
            return Err(CliError::Failed(
                "an invalid policy set was accepted".into(),
            ));
        }
    }
    let v: serde_json::Value = c
        .post("/v1/policies", &json!({ "text": DEFAULT_POLICY }))
        .await?;
    let ids: Vec<&str> = v["policies"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["id"].as_str()).collect())
        .unwrap_or_default();
    println!(
        "active: version {} ({}…): {}",
        v["version"],
        &v["hash"].as_str().unwrap_or_default()[..12],
        ids.join(", ")
    );

    step(
        13,
        "Alice gives the procurement agent a payment task; each action is decided as it happens",
    );
    let dev = dev_issuer(dir)?;
    let issuer = c.issuer().await?;
    let alice = dev.mint("alice", &issuer, mandate_server::now(), 300);
    let carol = dev.mint("carol", &issuer, mandate_server::now(), 300);
    let pay = credentials::exchange(
        c,
        Subject::Human(&alice),
        &agents["procurement-agent"],
        &TaskAsk {
            entries: vec![
                (strings(&["procurement.read"]), strings(&["erp:*"])),
                (strings(&["payments.initiate"]), strings(&["bank:acme/ops"])),
            ],
            ..ask("Pay the laptop supplier's invoice", &[], &[], 20)
        },
        None,
    )
    .await?;
    let agent = Client::new(c.base(), Some(pay.access_token.clone()));
    let low = ContextIn {
        risk_score: Some(10),
        ..ContextIn::default()
    };
    let o = decide(
        &agent,
        "procurement.read",
        "erp:invoices/inv-2291",
        low.clone(),
    )
    .await?;
    expect(&o, Verdict::Allow, "reading the invoice")?;
    let o = decide(
        &agent,
        "procurement.po.create",
        "erp:purchase-orders/po-9",
        low.clone(),
    )
    .await?;
    expect(&o, Verdict::Deny, "raising a PO outside the task")?;

    step(
        14,
        "A large payment waits for a human; Alice (the initiator) may not approve it, Carol does",
    );
    let payment = ContextIn {
        amount: Some(1_850_000),
        ..low.clone()
    };
    let o = decide(
        &agent,
        "payments.initiate",
        "bank:acme/ops",
        payment.clone(),
    )
    .await?;
    expect(&o, Verdict::NeedsApproval, "a 18,500.00 payment")?;
    let approval = o
        .approval_id
        .ok_or_else(|| CliError::Failed("needs_approval without an approval id".into()))?;
    let path = format!("/v1/approvals/{approval}/approve");
    match Client::new(c.base(), Some(alice))
        .post::<_, serde_json::Value>(&path, &json!({ "note": "my own task" }))
        .await
    {
        Err(e) => println!("Alice (the initiator) cannot approve: {e}"),
        Ok(_) => {
            return Err(CliError::Failed(
                "the initiator approved her own task".into(),
            ));
        }
    }
    let a: mandate_core::approval::Approval = Client::new(c.base(), Some(carol))
        .post(
            &path,
            &json!({ "note": "matches PO-2291 and the signed quote" }),
        )
        .await?;
    println!("Carol approved {} ({})", a.id, a.note.unwrap_or_default());
    let o = decide(
        &agent,
        "payments.initiate",
        "bank:acme/ops",
        payment.clone(),
    )
    .await?;
    expect(&o, Verdict::Allow, "the approved payment")?;
    let o = decide(&agent, "payments.initiate", "bank:acme/ops", payment).await?;
    expect(
        &o,
        Verdict::NeedsApproval,
        "the same payment a second time (approvals are single-use)",
    )?;

    step(
        15,
        "Break-glass: an admin grants what the task lacks, with a reason, for 15 minutes",
    );
    let g: mandate_core::breakglass::BreakGlass = c
        .post(
            "/v1/breakglass",
            &json!({ "agent": "procurement-agent",
                "scope": [{ "action": "procurement.po.create", "resource": "erp:purchase-orders/*" }],
                "ttl_s": 900, "reason": "ERP workflow outage INC-4471: raise the PO by hand" }),
        )
        .await?;
    super::approvals::print_grant(&g);
    let o = decide(
        &agent,
        "procurement.po.create",
        "erp:purchase-orders/po-9",
        low,
    )
    .await?;
    expect(&o, Verdict::Allow, "the PO under break-glass")?;
    let open: Vec<mandate_core::breakglass::BreakGlass> =
        c.get("/v1/breakglass?unreviewed=true").await?;
    println!("{} break-glass grant(s) awaiting review", open.len());

    step(16, "Every decision, approval and grant is on the audit log");
    let entries: Vec<mandate_server::routes::audit::EntryView> =
        c.get("/v1/audit/entries?limit=1000").await?;
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for e in &entries {
        let v: serde_json::Value = serde_json::from_str(&e.entry).unwrap_or_default();
        let kind = v["event"]["kind"].as_str().unwrap_or_default().to_owned();
        if ["decision.", "approval.", "breakglass.", "policy."]
            .iter()
            .any(|p| kind.starts_with(p))
        {
            *counts.entry(kind).or_default() += 1;
        }
    }
    for (kind, n) in &counts {
        println!("{n:>3} {kind}");
    }
    Ok(pay.task_id)
}

/// A decision made without printing it (the ROAI steps make many).
async fn act(task: &Client, action: &str, resource: &str) -> Result<Verdict, CliError> {
    let o: Outcome = task
        .post(
            "/v1/decisions",
            &super::decide::request(
                action,
                resource,
                "internal",
                ContextIn {
                    risk_score: Some(10),
                    ..ContextIn::default()
                },
            ),
        )
        .await?;
    Ok(o.decision)
}

/// An agent's claim of one completed transaction.
fn claim(
    workflow: &str,
    kind: &str,
    key: &str,
    cost: &str,
    tokens: u64,
) -> Result<Claim, CliError> {
    let bad = |e: mandate_core::RuleError| CliError::Failed(e.to_string());
    Ok(Claim {
        workflow: WorkflowName::parse(workflow).map_err(bad)?,
        outcome_type: OutcomeType::parse(kind).map_err(bad)?,
        idempotency_key: IdempotencyKey::parse(key).map_err(bad)?,
        value: None,
        cost: Some(ClaimedCost {
            model_tokens: Some(tokens),
            money: Some(Money {
                amount: cost.parse().map_err(bad)?,
                currency: "EUR".parse().map_err(bad)?,
            }),
        }),
        external_ref: Some(key.to_uppercase()),
    })
}

/// Steps 17-20: workflows with a human baseline, outcomes reported under
/// task credentials (with retries, a revoked task, refused work and a claim
/// with nothing behind it), the Return-on-AI report, and an evidence pack
/// verified offline.
async fn return_on_ai(
    c: &Client,
    dir: &std::path::Path,
    agents: &std::collections::HashMap<&str, AgentIdentity>,
    alice: &Human,
) -> Result<(), CliError> {
    step(
        17,
        "Alice registers her workflows with the human baseline per transaction",
    );
    for (name, description, cost, minutes, model) in [
        (
            "invoice-processing",
            "one supplier invoice checked against its PO and booked",
            "12.00",
            15,
            json!({ "kind": "time_saved" }),
        ),
        (
            "supplier-onboarding",
            "one new supplier vetted and set up in the ERP",
            "85.00",
            90,
            json!({ "kind": "per_transaction", "amount": "85.00" }),
        ),
    ] {
        let w: mandate_core::outcome::Workflow = c
            .post(
                "/v1/workflows",
                &json!({ "name": name, "description": description, "owner": alice.id,
                    "currency": "EUR", "baseline_cost": cost, "baseline_minutes": minutes,
                    "value_model": model, "token_price": "2.00" }),
            )
            .await?;
        println!(
            "{}: {} (a human: {} EUR, {} min; value model {})",
            w.def.name,
            w.def.description,
            w.def.baseline_cost,
            w.def.baseline_minutes,
            w.def.value_model.as_str()
        );
    }

    step(
        18,
        "Agents report outcomes under their task credentials: retries, a revoked task, refused work and an empty claim",
    );
    let dev = dev_issuer(dir)?;
    let id_token = dev.mint("alice", &c.issuer().await?, mandate_server::now(), 300);
    let invoices = || {
        ask(
            "Process this week's supplier invoices",
            &["procurement.read"],
            &["erp:invoices/*"],
            50,
        )
    };
    let new_task = |agent: &'static str, a: TaskAsk| {
        let id_token = id_token.clone();
        async move {
            credentials::exchange(c, Subject::Human(&id_token), &agents[agent], &a, None).await
        }
    };
    let as_agent = |t: &credentials::Issued| TaskCredential {
        task_token: t.access_token.clone(),
        dpop_key: None,
    };
    let mut shown = Vec::new();
    let report = |who: TaskCredential, claim: Claim| {
        let base = c.base().to_owned();
        async move { super::outcome::report(&base, &who, &claim).await }
    };

    let batch = new_task("procurement-agent", invoices()).await?;
    let agent = Client::new(c.base(), Some(batch.access_token.clone()));
    for n in 1..=6 {
        let key = format!("inv-300{n}");
        let v = act(&agent, "procurement.read", &format!("erp:invoices/{key}")).await?;
        expect_verdict(v, Verdict::Allow, "reading an invoice in the batch")?;
        let r = report(
            as_agent(&batch),
            claim("invoice-processing", "invoice.booked", &key, "0.04", 30_000)?,
        )
        .await?;
        shown.push(r.outcome);
    }
    for key in ["inv-3002", "inv-3005"] {
        // A network retry: same key, same claim. The first answer comes back.
        let r = report(
            as_agent(&batch),
            claim("invoice-processing", "invoice.booked", key, "0.04", 30_000)?,
        )
        .await?;
        println!(
            "retry of {key}: answered with the first report {}, recorded as duplicate {}",
            r.outcome.id,
            r.duplicate_id.map(|d| d.to_string()).unwrap_or_default()
        );
    }

    let onboarding = new_task(
        "orchestrator",
        ask(
            "Onboard two new laptop suppliers",
            &["procurement.read"],
            &["erp:suppliers/*"],
            20,
        ),
    )
    .await?;
    let orch = Client::new(c.base(), Some(onboarding.access_token.clone()));
    for key in ["sup-41", "sup-42"] {
        expect_verdict(
            act(&orch, "procurement.read", &format!("erp:suppliers/{key}")).await?,
            Verdict::Allow,
            "reading a supplier record",
        )?;
        let r = report(
            as_agent(&onboarding),
            claim(
                "supplier-onboarding",
                "supplier.onboarded",
                key,
                "0.30",
                120_000,
            )?,
        )
        .await?;
        shown.push(r.outcome);
    }

    let revoked = new_task("procurement-agent", invoices()).await?;
    let agent = Client::new(c.base(), Some(revoked.access_token.clone()));
    act(&agent, "procurement.read", "erp:invoices/inv-3007").await?;
    let _: serde_json::Value = c
        .post(
            &format!("/v1/tasks/{}/revoke", revoked.task_id),
            &json!({ "reason": "invoice batch reassigned" }),
        )
        .await?;
    let r = report(
        as_agent(&revoked),
        claim(
            "invoice-processing",
            "invoice.booked",
            "inv-3007",
            "0.04",
            30_000,
        )?,
    )
    .await?;
    shown.push(r.outcome);

    let wide = new_task("procurement-agent", invoices()).await?;
    let agent = Client::new(c.base(), Some(wide.access_token.clone()));
    act(&agent, "procurement.read", "erp:invoices/inv-3009").await?;
    expect_verdict(
        act(&agent, "payments.initiate", "bank:acme/ops").await?,
        Verdict::Deny,
        "a payment from an invoice-reading task",
    )?;
    let r = report(
        as_agent(&wide),
        claim(
            "invoice-processing",
            "invoice.booked",
            "inv-3009",
            "0.04",
            30_000,
        )?,
    )
    .await?;
    shown.push(r.outcome);

    let idle = new_task("procurement-agent", invoices()).await?;
    let r = report(
        as_agent(&idle),
        claim(
            "invoice-processing",
            "invoice.booked",
            "inv-3010",
            "0.04",
            30_000,
        )?,
    )
    .await?;
    shown.push(r.outcome);
    for o in &shown {
        println!("{}", super::outcome::describe(o));
    }

    step(
        19,
        "The Return-on-AI report: only counted transactions carry value; every exception says why",
    );
    let today = mandate_server::now().rfc3339();
    let today = today.get(..10).unwrap_or("1970-01-01");
    let period = super::outcome::PeriodArgs::new("invoice-processing", today, today);
    let report = super::outcome::fetch_roai(c, &period, None).await?;
    print!("{}", mandate_report::table(&report));
    let html = dir.join("roai-invoice-processing.html");
    std::fs::write(&html, mandate_report::html(&report))
        .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", html.display())))?;
    let onboarding = super::outcome::fetch_roai(
        c,
        &super::outcome::PeriodArgs::new("supplier-onboarding", today, today),
        None,
    )
    .await?;
    let t = &onboarding.current.totals;
    println!(
        "supplier-onboarding: {} counted, value {} EUR, cost {} EUR",
        t.counted, t.value, t.cost
    );
    println!("HTML report with charts: {}", html.display());

    step(
        20,
        "Evidence pack: exported, verified offline against the pinned log key, and a tampered copy fails",
    );
    let pack = dir.join("evidence-invoice-processing.zip");
    let n = super::outcome::export(c, &period, &pack).await?;
    println!("wrote {} ({n} bytes)", pack.display());
    let vkey: serde_json::Value = c.get("/v1/audit/verifier").await?;
    let vkey = vkey["vkey"].as_str().unwrap_or_default().to_owned();
    super::outcome::verify(&pack, Some(&vkey), false)?;
    let mut bytes = std::fs::read(&pack).map_err(|e| CliError::Failed(e.to_string()))?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    let tampered = dir.join("evidence-tampered.zip");
    std::fs::write(&tampered, &bytes).map_err(|e| CliError::Failed(e.to_string()))?;
    let v = mandate_evidence::verify(&bytes, None);
    if v.passed() {
        return Err(CliError::Failed("a tampered evidence pack verified".into()));
    }
    let first = v.checks.iter().find(|c| !c.ok);
    println!(
        "one byte changed at offset {mid}: FAIL ({})",
        first
            .map(|c| format!("{}: {}", c.name, c.detail))
            .unwrap_or_default()
    );
    Ok(())
}

fn expect_verdict(got: Verdict, want: Verdict, what: &str) -> Result<(), CliError> {
    if got == want {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "the demo expected {what} to be {}, got {}",
            want.as_str(),
            got.as_str()
        )))
    }
}
