//! A server with the console on 127.0.0.1 and demo-like data: humans with
//! every role, agents, a policy that gates large payments, a workflow, a
//! delegated task with decisions and an outcome, and a payment waiting for
//! approval. Shared by the HTTP tests and the browser test.
#![allow(dead_code)]

#[path = "../../../server/tests/common/mod.rs"]
pub mod common;

use std::time::Duration;

use common::fixture::*;
pub use common::fixture::{Fixture, ORCH, WORKER};
use mandate_server::ServeOptions;
use mandate_store::testing::TestStore;
use reqwest::StatusCode;
use serde_json::{Value, json};

const POLICY: &str = include_str!("../../../policy/examples/default.cedar");

pub struct Console {
    pub f: Fixture,
    /// The server with the console, e.g. `http://127.0.0.1:41234`.
    pub base: String,
    /// A client that never follows redirects, so tests see them.
    pub http: reqwest::Client,
    /// The orchestrator's task token (Alice started the task).
    pub token: String,
    pub task: String,
    pub child: String,
    /// The payment waiting for approval.
    pub approval: String,
    /// The store itself, for benchmarks that bulk-load it with SQL.
    pub sql: std::sync::Arc<mandate_store::SqlStore>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// The payment the policy holds for approval (over 10,000.00).
pub fn big_payment() -> Value {
    json!({ "risk_score": 10, "amount": 1_850_000 })
}

pub async fn setup(t: TestStore) -> Console {
    setup_with(t, mandate_console::Settings::default()).await
}

/// [`setup`] with the console set up as given.
pub async fn setup_with(t: TestStore, settings: mandate_console::Settings) -> Console {
    let sql = t.store.clone();
    let f = Fixture::new(t).await;
    for (who, roles) in [
        ("dana", json!(["auditor"])),
        ("erin", json!(["admin", "approver", "auditor"])),
    ] {
        let (st, h) = f
            .s
            .post(
                "/v1/humans",
                json!({ "issuer": DEV_ISSUER, "subject": who, "display_name": who, "roles": roles }),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{h}");
    }
    let (st, b) = f.s.post("/v1/policies", json!({ "text": POLICY })).await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let (st, b) =
        f.s.post(
            "/v1/workflows",
            json!({
                "name": "procurement", "description": "one purchase order placed", "owner": f.alice,
                "currency": "EUR", "baseline_cost": "30.00", "baseline_minutes": 20,
                "value_model": { "kind": "per_transaction", "amount": "50" },
            }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");

    let details = json!([
        { "type": "mandate_task", "purpose": "pay the laptop invoice",
          "actions": ["procurement.read", "procurement.po.create"], "resources": ["erp:*"], "limits": { "max_calls": 50 } },
        { "type": "mandate_task", "purpose": "pay the laptop invoice",
          "actions": ["payments.initiate"], "resources": ["bank:acme/*"], "limits": { "max_calls": 50 } },
    ]);
    let (st, b) = f
        .root(
            &f.id_token("alice"),
            &f.agent("orchestrator", ORCH),
            details,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let (token, task) = (token_of(&b), task_of(&b));
    let (st, b) = f
        .child(
            &token,
            &f.agent("worker", WORKER),
            narrower("procurement.read", "erp:suppliers/*"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let child = task_of(&b);
    assert_eq!(
        f.verdict(&token, "procurement.read", "erp:suppliers/7")
            .await,
        "allow"
    );
    assert_eq!(
        f.verdict(&token, "procurement.po.create", "erp:purchase-orders/1")
            .await,
        "allow"
    );
    let res =
        f.s.http
            .post(format!("{}/v1/outcomes", f.s.base))
            .bearer_auth(&token)
            .json(&json!({
                "workflow": "procurement", "outcome_type": "po.created", "idempotency_key": "po-1",
                "cost": { "money": { "amount": "0.25", "currency": "EUR" } },
            }))
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    // A refusal after the outcome, so the outcome stays counted.
    assert_eq!(
        f.verdict(&token, "payments.initiate", "erp:elsewhere")
            .await,
        "deny"
    );
    let d = f
        .decide(&token, "payments.initiate", "bank:acme/ops", big_payment())
        .await;
    assert_eq!(d["decision"], "needs_approval", "{d}");
    let approval = d["approval_id"].as_str().unwrap().to_owned();
    // A checkpoint, so entries have inclusion proofs against a signed tree.
    let (st, _) = f.s.post("/v1/audit/checkpoint", json!({})).await;
    assert_eq!(st, StatusCode::CREATED);

    let state = f.s.state.clone();
    let app = mandate_server::router(state.clone())
        .merge(mandate_console::router_with(state.clone(), settings));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = ServeOptions {
        checkpoint_every: Duration::from_secs(3600),
        otlp: None,
    };
    tokio::spawn(mandate_server::serve_app(
        listener,
        state,
        app,
        options,
        async {
            let _ = stopped.await;
        },
    ));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    Console {
        f,
        base,
        http,
        token,
        task,
        child,
        approval,
        sql,
        _stop: stop,
    }
}

/// A signed-in session as a browser would hold it.
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

/// The value of the first hidden `csrf` field of a page.
pub fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

/// `name=value` of the session cookie a response sets.
pub fn cookie_of(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("mandate_console="))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

impl Console {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str, s: Option<&Session>) -> reqwest::Response {
        let mut r = self.http.get(self.url(path));
        if let Some(s) = s {
            r = r.header("cookie", &s.cookie);
        }
        r.send().await.unwrap()
    }

    pub async fn post(
        &self,
        path: &str,
        s: Option<&Session>,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut r = self.http.post(self.url(path)).form(form);
        if let Some(s) = s {
            r = r.header("cookie", &s.cookie);
        }
        r.send().await.unwrap()
    }

    /// Opens the sign-in form and signs in with `id_token`; returns the
    /// response of the sign-in post and the pre-sign-in session.
    pub async fn try_sign_in(&self, id_token: &str) -> (reqwest::Response, Session) {
        let form = self.get("/ui/sign-in", None).await;
        assert_eq!(form.status(), StatusCode::OK);
        let cookie = cookie_of(&form).expect("the sign-in form starts a session");
        let csrf = csrf_of(&form.text().await.unwrap());
        let anon = Session { cookie, csrf };
        let res = self
            .post(
                "/ui/sign-in",
                Some(&anon),
                &[("csrf", &anon.csrf), ("id_token", id_token)],
            )
            .await;
        (res, anon)
    }

    /// A signed-in session for the dev issuer's `subject`.
    pub async fn sign_in(&self, subject: &str) -> Session {
        let (res, anon) = self.try_sign_in(&self.f.id_token(subject)).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "sign-in of {subject}");
        let cookie = cookie_of(&res).expect("a new session cookie");
        assert_ne!(cookie, anon.cookie, "signing in replaces the session");
        let page = self
            .get(
                "/ui/roai",
                Some(&Session {
                    cookie: cookie.clone(),
                    csrf: String::new(),
                }),
            )
            .await;
        let html = page.text().await.unwrap();
        Session {
            csrf: csrf_of(&html),
            cookie,
        }
    }

    pub async fn approval_status(&self) -> String {
        let (st, a) = self
            .f
            .s
            .get(&format!("/v1/approvals/{}", self.approval))
            .await;
        assert_eq!(st, StatusCode::OK, "{a}");
        a["status"].as_str().unwrap().to_owned()
    }
}
