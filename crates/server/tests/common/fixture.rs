//! A server with a trusted dev issuer, three humans and three agents, and
//! helpers to exchange tokens the way agents do.

use ed25519_dalek::SigningKey;
use mandate_core::credential::{
    DevIssuer, GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS, TOKEN_TYPE_ID, TOKEN_TYPE_JWT,
    mint_assertion,
};
use mandate_core::ids::SpiffeId;
use mandate_core::time::Timestamp;
use mandate_store::testing::TestStore;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::*;

pub const DEV_ISSUER: &str = "https://dev-issuer.local";

pub fn now() -> Timestamp {
    mandate_server::now()
}

pub fn unique() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A server with a trusted dev issuer, Alice, Mallory and three agents.
pub struct Fixture {
    pub s: Server,
    pub dev: DevIssuer,
    pub alice: String,
    pub mallory: String,
    /// Bob has the approver role.
    pub bob: String,
}

pub struct AgentKey {
    pub spiffe: SpiffeId,
    pub key: SigningKey,
    pub kid: String,
}

pub const ORCH: u8 = 11;
pub const WORKER: u8 = 12;
pub const SECOND: u8 = 13;

impl Fixture {
    pub async fn new(t: TestStore) -> Fixture {
        let s = start(t).await;
        let dev = DevIssuer::new(DEV_ISSUER, [21; 32]);
        let (st, b) = s
            .post(
                "/v1/issuers",
                json!({ "issuer": DEV_ISSUER, "jwks": dev.jwks() }),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{b}");
        let mut ids = Vec::new();
        for (who, roles) in [
            ("alice", json!([])),
            ("mallory", json!([])),
            ("bob", json!(["approver"])),
        ] {
            let (st, h) = s
                .post(
                    "/v1/humans",
                    json!({ "issuer": DEV_ISSUER, "subject": who, "display_name": who, "roles": roles }),
                )
                .await;
            assert_eq!(st, StatusCode::CREATED, "{h}");
            ids.push(h["id"].as_str().unwrap().to_owned());
        }
        for (name, seed, ceiling) in [
            (
                "orchestrator",
                ORCH,
                json!([
                { "action": "procurement.*", "resource": "erp:*" },
                { "action": "payments.initiate", "resource": "bank:acme/*" }]),
            ),
            (
                "worker",
                WORKER,
                json!([{ "action": "procurement.read", "resource": "erp:*" }]),
            ),
            (
                "second",
                SECOND,
                json!([{ "action": "procurement.*", "resource": "erp:suppliers/*" }]),
            ),
        ] {
            let (st, a) = s
                .post(
                    "/v1/agents",
                    json!({
                        "name": name, "kind": "agent", "owner": ids[0], "description": name,
                        "ceiling": ceiling, "keys": [jwk(seed)], "tags": ["finance"],
                    }),
                )
                .await;
            assert_eq!(st, StatusCode::CREATED, "{a}");
        }
        Fixture {
            s,
            dev,
            alice: ids[0].clone(),
            mallory: ids[1].clone(),
            bob: ids[2].clone(),
        }
    }

    pub fn agent(&self, name: &str, seed: u8) -> AgentKey {
        let key = SigningKey::from_bytes(&[seed; 32]);
        AgentKey {
            spiffe: SpiffeId::parse(&format!("spiffe://acme.example/agent/{name}"))
                .map(|(td, k, n)| SpiffeId::for_agent(&td, k, &n))
                .unwrap(),
            kid: jwk(seed)["kid"].as_str().unwrap().to_owned(),
            key,
        }
    }

    pub fn issuer(&self) -> String {
        self.s.state.install.issuer.clone()
    }

    pub fn id_token(&self, subject: &str) -> String {
        self.dev.mint(subject, &self.issuer(), now(), 300)
    }

    pub fn assertion(&self, a: &AgentKey) -> String {
        mint_assertion(&a.key, &a.kid, &a.spiffe, &self.issuer(), now(), &unique())
    }

    pub async fn exchange(
        &self,
        form: &[(&str, &str)],
        dpop: Option<String>,
    ) -> (StatusCode, Value) {
        let mut r = self
            .s
            .http
            .post(format!("{}/oauth2/token", self.s.base))
            .form(form);
        if let Some(p) = dpop {
            r = r.header("DPoP", p);
        }
        let res = r.send().await.unwrap();
        let status = res.status();
        if !status.is_success() {
            assert_eq!(res.headers()["cache-control"], "no-store");
        }
        (status, res.json().await.unwrap())
    }

    /// Human -> agent: a root task.
    pub async fn root(
        &self,
        human_token: &str,
        a: &AgentKey,
        details: Value,
        dpop: Option<String>,
    ) -> (StatusCode, Value) {
        let assertion = self.assertion(a);
        let details = details.to_string();
        self.exchange(
            &[
                ("grant_type", GRANT_TOKEN_EXCHANGE),
                ("subject_token", human_token),
                ("subject_token_type", TOKEN_TYPE_ID),
                ("actor_token", &assertion),
                ("actor_token_type", TOKEN_TYPE_JWT),
                ("authorization_details", &details),
                ("requested_ttl", "600"),
            ],
            dpop,
        )
        .await
    }

    /// Agent -> subagent: a child task.
    pub async fn child(
        &self,
        parent: &str,
        a: &AgentKey,
        details: Value,
        dpop: Option<String>,
    ) -> (StatusCode, Value) {
        let assertion = self.assertion(a);
        let details = details.to_string();
        self.exchange(
            &[
                ("grant_type", GRANT_TOKEN_EXCHANGE),
                ("subject_token", parent),
                ("subject_token_type", TOKEN_TYPE_ACCESS),
                ("actor_token", &assertion),
                ("actor_token_type", TOKEN_TYPE_JWT),
                ("authorization_details", &details),
            ],
            dpop,
        )
        .await
    }

    /// A decision under `token`, answered 200 with its full body.
    pub async fn decide(&self, token: &str, action: &str, resource: &str, context: Value) -> Value {
        let res = self
            .s
            .http
            .post(format!("{}/v1/decisions", self.s.base))
            .bearer_auth(token)
            .json(&json!({ "action": action, "resource": { "id": resource }, "context": context }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["content-type"], "application/json");
        let (st, b) = read(res).await;
        assert_eq!(st, StatusCode::OK, "{b}");
        b
    }

    /// Just the verdict of a low-risk decision.
    pub async fn verdict(&self, token: &str, action: &str, resource: &str) -> String {
        let d = self
            .decide(token, action, resource, json!({ "risk_score": 10 }))
            .await;
        d["decision"].as_str().unwrap().to_owned()
    }

    pub async fn procurement_root(&self) -> Value {
        self.alice_root(procurement()).await
    }

    /// Alice gives the orchestrator a root task with `details`; the answer.
    pub async fn alice_root(&self, details: Value) -> Value {
        let (st, b) = self
            .root(
                &self.id_token("alice"),
                &self.agent("orchestrator", ORCH),
                details,
                None,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        b
    }

    /// RFC 7009 revocation by the token's holder: the answer's status.
    pub async fn revoke(&self, token: &str) -> StatusCode {
        self.s
            .http
            .post(format!("{}/oauth2/revoke", self.s.base))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap()
            .status()
    }

    pub async fn introspect(&self, token: &str) -> Value {
        let res = self
            .s
            .http
            .post(format!("{}/oauth2/introspect", self.s.base))
            .bearer_auth(&self.s.token)
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    pub async fn end(
        &self,
        task: &str,
        how: &str,
        bearer: &str,
        dpop: Option<String>,
    ) -> (StatusCode, Value) {
        let mut r = self
            .s
            .http
            .post(format!("{}/v1/tasks/{task}/{how}", self.s.base))
            .bearer_auth(bearer)
            .json(&json!({ "reason": format!("test {how}") }));
        if let Some(p) = dpop {
            r = r.header("DPoP", p);
        }
        read(r.send().await.unwrap()).await
    }
}

pub fn procurement() -> Value {
    json!([{ "type": "mandate_task", "purpose": "buy 20 laptops",
        "actions": ["procurement.read", "procurement.po.create"], "resources": ["erp:*"],
        "limits": { "max_calls": 50 } }])
}

pub fn narrower(action: &str, resource: &str) -> Value {
    json!([{ "type": "mandate_task", "purpose": "compare suppliers",
        "actions": [action], "resources": [resource], "limits": { "max_calls": 10 } }])
}

/// The reason codes of a decision, in order.
pub fn codes(d: &Value) -> Vec<String> {
    d["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap().to_owned())
        .collect()
}

pub fn token_of(b: &Value) -> String {
    b["access_token"].as_str().unwrap().to_owned()
}

/// `token` with its payload widened by hand to every action on every
/// resource, its header and signature kept: what a forger would try.
pub fn widened(token: &str) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
    let mut claims: mandate_core::credential::TaskClaims =
        mandate_core::credential::peek_claims(token).unwrap();
    claims.authorization_details[0].grants =
        serde_json::from_value(json!([{ "action": "*", "resource": "*" }])).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    format!(
        "{}.{}.{}",
        parts[0],
        B64URL.encode(serde_json::to_vec(&claims).unwrap()),
        parts[2]
    )
}

pub fn task_of(b: &Value) -> String {
    b["task_id"].as_str().unwrap().to_owned()
}
