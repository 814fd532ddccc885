//! `mandate demo --ui`: after the demo, keep a server with its data running
//! (API and web console) and say how to sign in.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mandate_core::human::Human;
use mandate_server::decision::ContextIn;
use mandate_server::{ServeOptions, app_state, serve_app};
use mandate_store::Store;
use serde_json::json;
use tokio::net::TcpListener;

use super::super::serve::{shutdown_signal, with_console};
use super::super::trust::{DEV_ISSUER, dev_issuer};
use super::{ask, decide, step, strings};
use crate::CliError;
use crate::client::Client;
use crate::credentials::{self, AgentIdentity, Subject, TaskAsk};

/// How long the printed sign-in token lasts (the dev issuer's longest).
const TOKEN_TTL_S: i64 = 3600;

pub(super) async fn serve(
    store: Arc<dyn Store>,
    master: &mandate_core::sealed::MasterKey,
    dir: &Path,
    admin_token: String,
    agents: &HashMap<&str, AgentIdentity>,
    listen: &str,
) -> Result<(), CliError> {
    step(25, "The web console: the demo's data, served until Ctrl-C");
    let state = app_state(store, master, Default::default()).await?;
    let listener = TcpListener::bind(listen).await.map_err(|e| {
        CliError::Usage(format!(
            "cannot listen on {listen}: {e} (choose another with --listen)"
        ))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let options = ServeOptions {
        checkpoint_every: Duration::from_secs(10),
        otlp: None,
    };
    let server = tokio::spawn(serve_app(
        listener,
        state.clone(),
        with_console(&state),
        options,
        shutdown_signal(),
    ));
    let base = format!("http://{addr}");
    let c = Client::new(&base, Some(admin_token));

    // Someone who sees every page and may approve (Alice started the task).
    let dana: Human = c
        .post(
            "/v1/humans",
            &json!({ "issuer": DEV_ISSUER, "subject": "dana",
            "display_name": "Dana Okafor (Security, console admin)", "email": "dana@acme.example",
            "roles": ["admin", "auditor", "approver"] }),
        )
        .await?;
    // One more large payment, left waiting in the approval queue.
    let dev = dev_issuer(dir)?;
    let issuer = c.issuer().await?;
    let alice = dev.mint("alice", &issuer, mandate_server::now(), 300);
    let pay = credentials::exchange(
        &c,
        Subject::Human(&alice),
        &agents["procurement-agent"],
        &TaskAsk {
            entries: vec![(strings(&["payments.initiate"]), strings(&["bank:acme/ops"]))],
            ..ask("Pay the monitor supplier's invoice", &[], &[], 5)
        },
        None,
    )
    .await?;
    let agent = Client::new(&base, Some(pay.access_token.clone()));
    let waiting = ContextIn {
        risk_score: Some(10),
        amount: Some(2_400_000),
        ..ContextIn::default()
    };
    let o = decide(&agent, "payments.initiate", "bank:acme/ops", waiting).await?;
    println!(
        "registered {} (admin, auditor, approver); a 24,000.00 payment waits for approval ({})",
        dana.display_name,
        o.approval_id.map(|a| a.to_string()).unwrap_or_default()
    );
    let token = dev.mint("dana", &issuer, mandate_server::now(), TOKEN_TTL_S);
    println!("\nweb console: {base}/ui");
    println!(
        "sign in by pasting this ID token (Dana, valid {} minutes):\n\n{token}\n",
        TOKEN_TTL_S / 60
    );
    println!(
        "a fresh one: mandate dev-issuer token --data-dir {} --server {base} --subject dana --ttl 3600",
        dir.display()
    );
    println!("(subjects: alice owns agents, carol approves, dana sees everything)");
    println!("press Ctrl-C to stop the server");
    server
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?
        .map_err(|e| CliError::Failed(format!("server error: {e}")))
}
