//! `mandate demo`: the main job on the embedded default, end to end over the
//! real HTTP API of an in-process server on loopback.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use mandate_core::agent::Agent;
use mandate_core::human::Human;
use mandate_core::ids::TrustDomain;
use mandate_core::jwk::Ed25519Jwk;
use mandate_server::{InitOptions, app_state, initialize, load_master_key, serve};
use mandate_store::{SqlStore, Store};
use serde_json::json;
use tokio::net::TcpListener;

use super::agent::{list_all, parse_grant, print_inventory};
use super::audit::{print_report, verify_store};
use crate::CliError;
use crate::client::Client;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Use this (empty) data dir instead of a temporary one, to inspect it afterwards.
    #[arg(long)]
    data_dir: Option<PathBuf>,
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

    let state = app_state(store.clone(), &master).await?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, state, Duration::from_secs(3600), async {
        let _ = stopped.await;
    }));
    println!("server listening on http://{addr}");
    let c = Client::new(&format!("http://{addr}"), Some(token.expose()));

    step(2, "Register the humans who own and delegate to agents");
    let alice: Human = c
        .post(
            "/v1/humans",
            &json!({ "issuer": "https://idp.acme.example", "subject": "alice",
            "display_name": "Alice Martin (Head of Procurement)", "email": "alice@acme.example" }),
        )
        .await?;
    let bob: Human = c
        .post(
            "/v1/humans",
            &json!({ "issuer": "https://idp.acme.example", "subject": "bob",
            "display_name": "Bob Chen (Platform Engineering)", "email": "bob@acme.example" }),
        )
        .await?;
    println!("registered {} and {}", alice.display_name, bob.display_name);

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
            vec!["team:procurement", "data:confidential"],
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
    for (i, (name, kind, owner, description, grants, tags)) in specs.iter().enumerate() {
        let key = SigningKey::from_bytes(&mandate_server::install::random()).verifying_key();
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
        .post_empty(&format!("/v1/humans/{}/deactivate", bob.id))
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

    step(7, "Audit: sign a checkpoint and verify the whole log");
    let cp: serde_json::Value = c.post_empty("/v1/audit/checkpoint").await?;
    print!("{}", cp["note"].as_str().unwrap_or_default());
    let _ = stop.send(());
    server
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let report = verify_store(store.as_ref(), None, None).await?;
    print_report(&report);
    Ok(())
}
