//! The server on 127.0.0.1 with a fresh store, and helpers to call it.
#![allow(dead_code)]

pub mod fixture;

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use mandate_core::ids::TrustDomain;
use mandate_core::jwk::Ed25519Jwk;
use mandate_core::sealed::MasterKey;
use mandate_server::{AppState, InitOptions, app_state, initialize, serve};
use mandate_store::Store;
use mandate_store::testing::TestStore;
use reqwest::StatusCode;
use serde_json::{Value, json};

pub struct Server {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
    pub state: AppState,
    _store: TestStore,
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub async fn start(t: TestStore) -> Server {
    let master = MasterKey::from_bytes([7; 32]);
    let store: Arc<dyn Store> = t.store.clone();
    let opts = InitOptions {
        trust_domain: TrustDomain::parse("acme.example").unwrap(),
        issuer: None,
    };
    let (_, token) = initialize(store.as_ref(), opts, &master).await.unwrap();
    let state = app_state(store, &master, Default::default()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(
        listener,
        state.clone(),
        Duration::from_secs(3600),
        async {
            let _ = stopped.await;
        },
    ));
    Server {
        base,
        token: token.expose(),
        http: reqwest::Client::new(),
        state,
        _store: t,
        _stop: stop,
    }
}

impl Server {
    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let res = self
            .req(reqwest::Method::POST, path)
            .json(&body)
            .send()
            .await
            .unwrap();
        read(res).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        read(self.req(reqwest::Method::GET, path).send().await.unwrap()).await
    }

    pub async fn human(&self, subject: &str) -> String {
        let (s, h) = self
            .post("/v1/humans", json!({ "issuer": "https://idp.acme.example", "subject": subject, "display_name": subject }))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{h}");
        h["id"].as_str().unwrap().to_owned()
    }

    /// What /metrics shows now (it needs no credential).
    pub async fn metrics(&self) -> String {
        let res = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        res.text().await.unwrap()
    }

    /// Audit length and agent count: what "nothing changed" is checked against.
    pub async fn footprint(&self) -> (u64, usize) {
        let (_, agents) = self.get("/v1/agents?limit=500").await;
        (
            self.state.store.audit_len().await.unwrap(),
            agents["items"].as_array().unwrap().len(),
        )
    }
}

/// Serves `app` on a free loopback port; returns its base URL.
pub async fn spawn(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(mandate_server::without_delay(listener), app).await });
    format!("http://{addr}")
}

pub async fn read(res: reqwest::Response) -> (StatusCode, Value) {
    let status = res.status();
    let problem = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: Value = res.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        assert_eq!(
            problem.as_deref(),
            Some("application/problem+json"),
            "error without problem+json: {body}"
        );
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "problem without detail: {body}"
        );
        assert_eq!(body["status"].as_u64(), Some(status.as_u16() as u64));
    }
    (status, body)
}

pub fn jwk(seed: u8) -> Value {
    serde_json::to_value(Ed25519Jwk::from_verifying_key(
        &SigningKey::from_bytes(&[seed; 32]).verifying_key(),
        None,
    ))
    .unwrap()
}

pub fn agent_body(name: &str, owner: &str) -> Value {
    json!({
        "name": name, "kind": "agent", "owner": owner, "description": "test agent",
        "ceiling": [{ "action": "invoice.*", "resource": "erp:invoices/*" }],
        "keys": [jwk(1)], "tags": ["team:finance"],
    })
}
