//! Task-scoped credentials over HTTP, on both backends: token exchange,
//! delegation that only narrows, DPoP binding, introspection, revocation,
//! cascading task ends and key rotation. Every rule is attacked.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ed25519_dalek::{Signature, SigningKey, Verifier, VerifyingKey};
use mandate_core::credential::{
    DevIssuer, GRANT_TOKEN_EXCHANGE, JwtSigner, TOKEN_TYPE_ACCESS, TOKEN_TYPE_ID, TaskClaims,
    peek_claims,
};
use mandate_core::dpop;
use mandate_core::ids::SpiffeId;
use mandate_core::time::Timestamp;
use mandate_store::testing::TestStore;
use reqwest::StatusCode;
use serde_json::{Value, json};

mod common;
use common::fixture::*;
use common::*;

/// Verifies a compact JWS with ed25519-dalek directly against the served JWKS:
/// a second implementation, independent of the jsonwebtoken crate Mandate uses.
fn verify_independently(token: &str, jwks: &Value) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&B64URL.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("the token's kid is in the served JWKS");
    assert_eq!(
        (jwk["kty"].as_str(), jwk["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    let x: [u8; 32] = B64URL
        .decode(jwk["x"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let key = VerifyingKey::from_bytes(&x).unwrap();
    let sig: [u8; 64] = B64URL.decode(parts[2]).unwrap().try_into().unwrap();
    key.verify(
        format!("{}.{}", parts[0], parts[1]).as_bytes(),
        &Signature::from_bytes(&sig),
    )
    .expect("signature verifies independently");
    serde_json::from_slice(&B64URL.decode(parts[1]).unwrap()).unwrap()
}

// ---- cases ---------------------------------------------------------------------

async fn delegation_narrows_and_ending_cascades(t: TestStore) {
    let f = Fixture::new(t).await;
    let orch = f.agent("orchestrator", ORCH);
    let worker = f.agent("worker", WORKER);
    let root = f.procurement_root().await;
    assert_eq!(root["token_type"], "Bearer");
    assert_eq!(root["issued_token_type"], TOKEN_TYPE_ACCESS);
    assert!(
        root["expires_in"].as_i64().unwrap() <= 600 && root["expires_in"].as_i64().unwrap() > 590
    );
    let parent = token_of(&root);

    // The token verifies with a second implementation against the served JWKS.
    let (st, jwks) = f.s.get("/.well-known/jwks.json").await;
    assert_eq!(st, StatusCode::OK);
    let claims = verify_independently(&parent, &jwks);
    assert_eq!(claims["sub"], f.alice.as_str());
    assert_eq!(claims["iss"], f.issuer());
    assert_eq!(claims["aud"], f.issuer());
    assert_eq!(claims["client_id"], orch.spiffe.as_str());
    assert_eq!(claims["act"], json!({ "sub": orch.spiffe.as_str() }));
    assert_eq!(claims["task_id"], root["task_id"]);
    assert_eq!(claims["authorization_details"][0]["type"], "mandate_task");
    assert_eq!(
        claims["authorization_details"][0]["limits"]["max_calls"],
        50
    );

    // Orchestrator -> worker, narrower: granted, chain nested, expiry not later.
    let (st, kid) = f
        .child(
            &parent,
            &worker,
            narrower("procurement.read", "erp:suppliers/*"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{kid}");
    let child: TaskClaims = peek_claims(&token_of(&kid)).unwrap();
    assert_eq!(
        child.act.chain(),
        vec![orch.spiffe.to_string(), worker.spiffe.to_string()]
    );
    assert_eq!(child.sub, f.alice);
    assert!(child.exp <= claims["exp"].as_i64().unwrap());

    // Wider than the parent, wider than the worker's ceiling, looser limits,
    // an unknown detail type: each refused with the offending item named.
    for (details, code, needle) in [
        (
            narrower("payments.initiate", "bank:acme/ops"),
            "invalid_scope",
            "payments.initiate",
        ),
        (
            narrower("procurement.po.create", "erp:suppliers/x"),
            "invalid_scope",
            "ceiling",
        ),
        (
            json!([{ "type": "mandate_task", "purpose": "p", "actions": ["procurement.read"],
                "resources": ["erp:a"], "limits": { "max_calls": 51 } }]),
            "invalid_scope",
            "max_calls 51 is looser than the parent task's 50",
        ),
        (
            json!([{ "type": "payment_initiation", "purpose": "p", "actions": ["x"], "resources": ["y"] }]),
            "invalid_request",
            "payment_initiation",
        ),
    ] {
        let before = f.s.state.store.audit_len().await.unwrap();
        let (st, e) = f.child(&parent, &worker, details, None).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
        assert_eq!(e["error"], code, "{e}");
        assert!(
            e["error_description"].as_str().unwrap().contains(needle),
            "{e}"
        );
        assert_eq!(
            f.s.state.store.audit_len().await.unwrap(),
            before,
            "a refusal wrote something"
        );
    }

    // Completing the parent revokes the child; the child's token is then refused.
    let child_token = token_of(&kid);
    assert_eq!(f.introspect(&child_token).await["active"], true);
    let (st, ended) = f.end(&task_of(&root), "complete", &parent, None).await;
    assert_eq!(st, StatusCode::OK, "{ended}");
    assert_eq!(ended["task"]["status"], "completed");
    assert_eq!(ended["cascaded"], json!([task_of(&kid)]));
    let i = f.introspect(&child_token).await;
    assert_eq!(i["active"], false, "{i}");
    assert_eq!(
        i.as_object().unwrap().get("sub"),
        None,
        "an inactive answer leaks claims: {i}"
    );
    assert_eq!(f.introspect(&parent).await["active"], false);
    let (st, _) = f.end(&task_of(&kid), "complete", &child_token, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, e) = f
        .child(
            &child_token,
            &f.agent("second", SECOND),
            narrower("procurement.read", "erp:suppliers/a"),
            None,
        )
        .await;
    assert_eq!(
        (st, e["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "{e}"
    );
    // Ending twice is a conflict.
    let (st, _) =
        f.s.post(&format!("/v1/tasks/{}/revoke", task_of(&root)), json!({}))
            .await;
    assert_eq!(st, StatusCode::CONFLICT);

    // The tree shows both tasks; the audit log verifies and holds no token.
    let (st, tree) = f.s.get(&format!("/v1/tasks/{}", task_of(&root))).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(tree["children"][0]["id"], kid["task_id"]);
    assert_eq!(tree["children"][0]["status"], "revoked");
    let entries = f.s.state.store.audit_entries(0, 10_000).await.unwrap();
    let text: String = entries.iter().map(|e| e.entry.as_str()).collect();
    for kind in [
        "task.created",
        "task.delegated",
        "task.completed",
        "task.revoked",
    ] {
        assert!(text.contains(kind), "no {kind} event");
    }
    assert!(
        !text.contains(&parent) && !text.contains(&child_token),
        "a token was logged"
    );
    assert!(
        !text.contains(parent.split('.').nth(2).unwrap()),
        "a signature was logged"
    );
}

async fn forged_and_stale_tokens_are_refused(t: TestStore) {
    let f = Fixture::new(t).await;
    let good = token_of(&f.procurement_root().await);
    let claims: TaskClaims = peek_claims(&good).unwrap();
    let signer = f.s.state.keys.signer();

    let expired = signer.sign(&TaskClaims {
        exp: now().as_secs() - 1,
        iat: now().as_secs() - 100,
        ..claims.clone()
    });
    let wrong_aud = signer.sign(&TaskClaims {
        aud: "https://elsewhere.example".into(),
        ..claims.clone()
    });
    let unknown_key =
        JwtSigner::new(signer.kid(), &SigningKey::from_bytes(&[99; 32])).sign(&claims);
    let other_kid =
        JwtSigner::new("not-a-mandate-key", &SigningKey::from_bytes(&[99; 32])).sign(&claims);
    // Same signature, payload widened by hand.
    let tampered = widened(&good);
    let parts: Vec<&str> = good.split('.').collect();
    let alg_none = format!(
        "{}.{}.",
        B64URL.encode(br#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    let hs256 = format!(
        "{}.{}.{}",
        B64URL.encode(br#"{"alg":"HS256","kid":"x"}"#),
        parts[1],
        parts[2]
    );

    for (what, token) in [
        ("expired", expired),
        ("wrong audience", wrong_aud),
        ("signed by an unknown key under a known kid", unknown_key),
        ("unknown kid", other_kid),
        ("tampered payload", tampered),
        ("alg none", alg_none),
        ("HS256", hs256),
        ("garbage", "not.a.token".to_owned()),
    ] {
        let i = f.introspect(&token).await;
        assert_eq!(i["active"], false, "{what} was accepted: {i}");
        let (st, _) = f
            .end(&claims.task_id.to_string(), "complete", &token, None)
            .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{what} ended a task");
    }
    assert_eq!(f.introspect(&good).await["active"], true);
}

async fn callers_must_prove_who_they_are(t: TestStore) {
    let f = Fixture::new(t).await;
    let orch = f.agent("orchestrator", ORCH);
    let alice = f.id_token("alice");

    // A replayed assertion: the first use wins, the second is refused.
    let assertion = f.assertion(&orch);
    let details = procurement().to_string();
    let form = [
        ("grant_type", GRANT_TOKEN_EXCHANGE),
        ("subject_token", alice.as_str()),
        ("subject_token_type", TOKEN_TYPE_ID),
        ("actor_token", assertion.as_str()),
        ("authorization_details", details.as_str()),
    ];
    assert_eq!(f.exchange(&form, None).await.0, StatusCode::OK);
    let (st, e) = f.exchange(&form, None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        e["error_description"].as_str().unwrap().contains("replay"),
        "{e}"
    );

    // Untrusted issuer, unregistered human, assertion with another agent's key,
    // an agent of another trust domain, wrong grant type, missing pieces.
    let rogue =
        DevIssuer::new("https://rogue.example", [21; 32]).mint("alice", &f.issuer(), now(), 300);
    let (st, e) = f.root(&rogue, &orch, procurement(), None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        e["error_description"]
            .as_str()
            .unwrap()
            .contains("not trusted"),
        "{e}"
    );
    let (st, e) = f
        .root(&f.id_token("nobody"), &orch, procurement(), None)
        .await;
    assert!(
        st == StatusCode::BAD_REQUEST
            && e["error_description"]
                .as_str()
                .unwrap()
                .contains("no human"),
        "{e}"
    );
    let impostor = AgentKey {
        key: SigningKey::from_bytes(&[WORKER; 32]),
        ..f.agent("orchestrator", ORCH)
    };
    let (st, e) = f.root(&alice, &impostor, procurement(), None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    let foreign = AgentKey {
        spiffe: SpiffeId::parse("spiffe://evil.example/agent/orchestrator")
            .map(|(td, k, n)| SpiffeId::for_agent(&td, k, &n))
            .unwrap(),
        ..f.agent("orchestrator", ORCH)
    };
    let (st, e) = f.root(&alice, &foreign, procurement(), None).await;
    assert!(
        st == StatusCode::BAD_REQUEST
            && e["error_description"]
                .as_str()
                .unwrap()
                .contains("trust domain"),
        "{e}"
    );
    let (st, e) = f
        .exchange(&[("grant_type", "client_credentials")], None)
        .await;
    assert_eq!(
        (st, e["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unsupported_grant_type"))
    );
    let (st, e) = f
        .exchange(&[("grant_type", GRANT_TOKEN_EXCHANGE)], None)
        .await;
    assert_eq!(e["error"], "invalid_request", "{st} {e}");

    // A suspended agent is refused, and suspending revoked its open task.
    let (_, live) = f.root(&alice, &orch, procurement(), None).await;
    let (st, _) = f.s.post("/v1/agents/orchestrator/suspend", json!({})).await;
    assert_eq!(st, StatusCode::OK);
    let (st, e) = f.root(&alice, &orch, procurement(), None).await;
    assert!(
        st == StatusCode::BAD_REQUEST
            && e["error_description"]
                .as_str()
                .unwrap()
                .contains("suspended"),
        "{e}"
    );
    let i = f.introspect(&token_of(&live)).await;
    assert_eq!(i["active"], false, "{i}");
}

async fn dpop_bound_tokens_need_the_key(t: TestStore) {
    let f = Fixture::new(t).await;
    let holder = SigningKey::from_bytes(&[41; 32]);
    let thief = SigningKey::from_bytes(&[42; 32]);
    let token_url = format!("{}/oauth2/token", f.s.base);
    let proof = dpop::mint_proof(&holder, "POST", &token_url, None, now(), &unique());
    let (st, b) = f
        .root(
            &f.id_token("alice"),
            &f.agent("orchestrator", ORCH),
            procurement(),
            Some(proof),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["token_type"], "DPoP");
    let token = token_of(&b);
    let claims: TaskClaims = peek_claims(&token).unwrap();
    assert_eq!(
        claims.cnf.unwrap().jkt,
        dpop::ed25519_jkt(&holder.verifying_key())
    );

    let task = task_of(&b);
    let url = format!("{}/v1/tasks/{task}/fail", f.s.base);
    let (st, e) = f.end(&task, "fail", &token, None).await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "bound token used without a proof: {e}"
    );
    let wrong_key = dpop::mint_proof(&thief, "POST", &url, Some(&token), now(), &unique());
    assert_eq!(
        f.end(&task, "fail", &token, Some(wrong_key)).await.0,
        StatusCode::UNAUTHORIZED
    );
    let wrong_url = dpop::mint_proof(&holder, "POST", &token_url, Some(&token), now(), &unique());
    assert_eq!(
        f.end(&task, "fail", &token, Some(wrong_url)).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Delegating from a bound parent needs its key too.
    let (st, e) = f
        .child(
            &token,
            &f.agent("worker", WORKER),
            narrower("procurement.read", "erp:a"),
            None,
        )
        .await;
    assert!(
        st == StatusCode::BAD_REQUEST && e["error_description"].as_str().unwrap().contains("DPoP"),
        "{e}"
    );
    let right = dpop::mint_proof(&holder, "POST", &url, Some(&token), now(), &unique());
    let (st, e) = f.end(&task, "fail", &token, Some(right.clone())).await;
    assert_eq!(st, StatusCode::OK, "{e}");
    assert_eq!(e["task"]["status"], "failed");
}

async fn who_may_revoke(t: TestStore) {
    let f = Fixture::new(t).await;
    let root = f.procurement_root().await;
    let task = task_of(&root);
    let revoke = |bearer: String| {
        let url = format!("{}/v1/tasks/{task}/revoke", f.s.base);
        let http = f.s.http.clone();
        async move { read(http.post(url).bearer_auth(bearer).send().await.unwrap()).await }
    };
    // Another human may not; a forged ID token may not; the initiator may.
    let (st, e) = revoke(f.id_token("mallory")).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{e}");
    let forged = DevIssuer::new(DEV_ISSUER, [22; 32]).mint("alice", &f.issuer(), now(), 300);
    assert_eq!(revoke(forged).await.0, StatusCode::UNAUTHORIZED);
    let (st, e) = revoke(f.id_token("alice")).await;
    assert_eq!(st, StatusCode::OK, "{e}");
    assert_eq!(e["task"]["status"], "revoked");
    assert_eq!(f.introspect(&token_of(&root)).await["active"], false);
    let _ = f.mallory;

    // RFC 7009: the holder revokes one token; unknown tokens still get 200.
    let other = token_of(&f.procurement_root().await);
    for token in [other.as_str(), "garbage"] {
        assert_eq!(f.revoke(token).await, StatusCode::OK);
    }
    assert_eq!(f.introspect(&other).await["active"], false);
    // Introspection needs an admin credential.
    let res =
        f.s.http
            .post(format!("{}/oauth2/introspect", f.s.base))
            .form(&[("token", other.as_str())])
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

async fn rotated_keys_keep_verifying_until_their_tokens_expire(t: TestStore) {
    let f = Fixture::new(t).await;
    let old = token_of(&f.procurement_root().await);
    let (_, before) = f.s.get("/.well-known/jwks.json").await;
    assert_eq!(before["keys"].as_array().unwrap().len(), 1);
    let (st, rotated) = f.s.post("/v1/keys/rotate", json!({})).await;
    assert_eq!(st, StatusCode::OK, "{rotated}");
    let new = token_of(&f.procurement_root().await);
    let (_, after) = f.s.get("/.well-known/jwks.json").await;
    assert_eq!(after["keys"].as_array().unwrap().len(), 2);
    verify_independently(&old, &after);
    let new_claims = verify_independently(&new, &after);
    assert!(new_claims["task_id"].as_str().is_some());
    let header: Value =
        serde_json::from_slice(&B64URL.decode(new.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["kid"], rotated["kid"]);
    assert_eq!(f.introspect(&old).await["active"], true);
    // Once every token the old key signed has expired, it drops out.
    let later = Timestamp::from_millis(now().as_millis() + f.s.state.bounds.max_ttl_ms + 1000);
    let keys = f.s.state.keys.jwks(later);
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1);
    assert_eq!(keys["keys"][0]["kid"], rotated["kid"]);
    let (_, meta) = f.s.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(meta["issuer"], f.issuer());
    assert!(
        meta["token_endpoint"]
            .as_str()
            .unwrap()
            .ends_with("/oauth2/token")
    );
    assert_eq!(meta["grant_types_supported"], json!([GRANT_TOKEN_EXCHANGE]));
}

mandate_store::backend_tests!(
    delegation_narrows_and_ending_cascades,
    forged_and_stale_tokens_are_refused,
    callers_must_prove_who_they_are,
    dpop_bound_tokens_need_the_key,
    who_may_revoke,
    rotated_keys_keep_verifying_until_their_tokens_expire,
);
