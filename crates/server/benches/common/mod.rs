//! What every server benchmark starts from: an initialised store with a
//! trusted dev issuer, Alice, and an orchestrator agent with a known key.
#![allow(dead_code)]

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use mandate_core::agent::{Agent, AgentKind, NewAgent};
use mandate_core::audit::Actor;
use mandate_core::credential::DevIssuer;
use mandate_core::human::NewHuman;
use mandate_core::ids::{AgentId, AgentName, HumanId, SpiffeId, TrustDomain};
use mandate_core::jwk::Ed25519Jwk;
use mandate_core::scope::{Grant, Scope};
use mandate_core::sealed::MasterKey;
use mandate_server::{AppState, InitOptions, app_state, initialize, now};
use mandate_store::testing::TestStore;
use mandate_store::{Change, Store};

pub fn change() -> Change {
    Change {
        actor: Actor::System,
        at: now(),
        request_id: None,
    }
}

pub struct Setup {
    pub state: AppState,
    pub human: HumanId,
    pub agent: Agent,
    pub agent_key: SigningKey,
    pub dev: DevIssuer,
    pub _t: TestStore,
}

pub async fn setup(t: TestStore) -> Setup {
    let store: Arc<dyn Store> = t.store.clone();
    let master = MasterKey::from_bytes([7; 32]);
    let opts = InitOptions {
        trust_domain: TrustDomain::parse("bench.example").unwrap(),
        issuer: None,
    };
    initialize(store.as_ref(), opts, &master).await.unwrap();
    let state = app_state(store.clone(), &master, Default::default())
        .await
        .unwrap();
    let dev = DevIssuer::new("https://dev-issuer.localhost", [3; 32]);
    store
        .trust_issuer(&change(), dev.issuer(), &dev.jwks())
        .await
        .unwrap();
    let human = HumanId::from_uuid(uuid::Uuid::now_v7());
    store
        .create_human(
            &change(),
            human,
            &NewHuman {
                issuer: dev.issuer().into(),
                subject: "alice".into(),
                display_name: "Alice".into(),
                email: None,
                roles: Default::default(),
            },
        )
        .await
        .unwrap();
    let agent_key = SigningKey::from_bytes(&[5; 32]);
    let name = AgentName::parse("orchestrator").unwrap();
    let spiffe = SpiffeId::for_agent(&state.install.trust_domain, AgentKind::Agent, &name);
    let agent = store
        .create_agent(
            &change(),
            AgentId::from_uuid(uuid::Uuid::now_v7()),
            &spiffe,
            &NewAgent {
                name,
                kind: AgentKind::Agent,
                owner: human,
                description: "bench".into(),
                ceiling: scope(),
                keys: vec![Ed25519Jwk::from_verifying_key(
                    &agent_key.verifying_key(),
                    None,
                )],
                tools: vec![],
                data_sources: vec![],
                tags: Default::default(),
            },
        )
        .await
        .unwrap();
    Setup {
        state,
        human,
        agent,
        agent_key,
        dev,
        _t: t,
    }
}

pub fn scope() -> Scope {
    Scope::new([Grant::new("procurement.*", "erp:*").unwrap()]).unwrap()
}

/// Serves `state` on a free loopback port: the base URL, and a handle that
/// the sender that stops it, and its task.
pub async fn serve_on_loopback(
    state: &AppState,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(mandate_server::serve(
        listener,
        state.clone(),
        std::time::Duration::from_secs(3600),
        async {
            let _ = stopped.await;
        },
    ));
    (base, stop, server)
}

/// Issues a root task token to `agent` for `human`, as the token endpoint
/// does once it has authenticated both: signed token plus durable records.
pub async fn issue_root(state: &AppState, agent: &Agent, human: HumanId) -> String {
    let req = mandate_core::delegation::TaskRequest {
        purpose: "bench".into(),
        scope: scope(),
        limits: mandate_core::task::Limits::default(),
        ttl_ms: Some(600_000),
    };
    let at = now();
    let granted = mandate_core::delegation::grant_root(&req, agent, at, state.bounds).unwrap();
    let issued = mandate_server::issuance::issue(
        state, agent, "bench", granted, human, None, None, None, at,
    );
    state
        .store
        .create_task(&change(), &issued.record)
        .await
        .unwrap();
    issued.response.access_token
}
