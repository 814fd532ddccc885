//! The HTTP API against a real server on 127.0.0.1, on both backends.

use mandate_core::audit::hash_from_hex;
use mandate_core::audit::merkle::{verify_consistency, verify_inclusion};
use mandate_store::testing::TestStore;
use reqwest::StatusCode;
use serde_json::{Value, json};

mod common;
use common::*;

// ---- cases ---------------------------------------------------------------------

async fn writes_need_a_valid_admin_credential(t: TestStore) {
    let s = start(t).await;
    let before = s.footprint().await;
    let body =
        json!({ "issuer": "https://idp.acme.example", "subject": "eve", "display_name": "Eve" });
    let url = format!("{}/v1/humans", s.base);
    let forged = format!("{}x", &s.token[..s.token.len() - 1]);
    for auth in [
        None,
        Some("Bearer nonsense".to_owned()),
        Some(format!("Bearer {forged}")),
        Some(format!("Basic {}", s.token)),
    ] {
        let mut req = s.http.post(&url).json(&body);
        if let Some(a) = &auth {
            req = req.header("authorization", a);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        assert!(res.headers().contains_key("www-authenticate"));
        read(res).await;
    }
    assert_eq!(
        s.footprint().await,
        before,
        "a refused request changed state"
    );
    // Reads of the registry need it too.
    let res = s
        .http
        .get(format!("{}/v1/agents", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

async fn registers_lists_and_manages_agents(t: TestStore) {
    let s = start(t).await;
    let alice = s.human("alice").await;
    let bob = s.human("bob").await;
    let (st, a) = s.post("/v1/agents", agent_body("research", &alice)).await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    assert_eq!(a["spiffe_id"], "spiffe://acme.example/agent/research");
    assert_eq!(
        a["keys"][0]["created_at"]
            .as_str()
            .map(|t| t.ends_with('Z')),
        Some(true)
    );
    for i in 0..4 {
        s.post("/v1/agents", agent_body(&format!("worker-{i}"), &bob))
            .await;
    }
    let (_, by_name) = s.get("/v1/agents/research").await;
    assert_eq!(by_name["id"], a["id"]);
    let (_, page1) = s.get("/v1/agents?limit=2").await;
    let next = page1["next"].as_str().unwrap().to_owned();
    let (_, page2) = s.get(&format!("/v1/agents?limit=2&after={next}")).await;
    assert_eq!(page2["items"].as_array().unwrap().len(), 2);
    assert_ne!(page1["items"][0]["id"], page2["items"][0]["id"]);
    let (_, bobs) = s
        .get(&format!("/v1/agents?owner={bob}&tag=team:finance"))
        .await;
    assert_eq!(bobs["items"].as_array().unwrap().len(), 4);

    let (st, suspended) = s.post("/v1/agents/research/suspend", json!(null)).await;
    assert_eq!(
        (st, suspended["status"].as_str()),
        (StatusCode::OK, Some("suspended"))
    );
    let (_, resumed) = s.post("/v1/agents/research/resume", json!(null)).await;
    assert_eq!(resumed["status"], "active");
    let (st, added) = s
        .post("/v1/agents/research/keys", json!({ "jwk": jwk(2) }))
        .await;
    assert_eq!(
        (st, added["keys"].as_array().unwrap().len()),
        (StatusCode::OK, 2)
    );
    let kid = added["keys"][0]["kid"].as_str().unwrap().to_owned();
    let res = s
        .req(
            reqwest::Method::DELETE,
            &format!("/v1/agents/research/keys/{kid}"),
        )
        .send()
        .await
        .unwrap();
    let (st, removed) = read(res).await;
    assert_eq!(
        (st, removed["keys"].as_array().unwrap().len()),
        (StatusCode::OK, 1)
    );

    let (_, _) = s
        .post(
            &format!("/v1/humans/{bob}/deactivate?force=true"),
            json!(null),
        )
        .await;
    let (_, orphans) = s.get("/v1/agents?orphaned=true").await;
    assert_eq!(orphans["items"].as_array().unwrap().len(), 4);
    let (st, moved) = s
        .post("/v1/agents/worker-0/transfer", json!({ "owner": alice }))
        .await;
    assert_eq!(
        (st, moved["orphaned"].as_bool()),
        (StatusCode::OK, Some(false))
    );
}

/// Every bad request: a specific 4xx problem, and nothing written.
async fn bad_input_is_refused_and_changes_nothing(t: TestStore) {
    let s = start(t).await;
    let alice = s.human("alice").await;
    let gone = s.human("gone").await;
    s.post(&format!("/v1/humans/{gone}/deactivate"), json!(null))
        .await;
    s.post("/v1/agents", agent_body("taken", &alice)).await;
    let (_, retired) = s.post("/v1/agents", agent_body("old-timer", &alice)).await;
    s.post(
        &format!("/v1/agents/{}/retire", retired["id"].as_str().unwrap()),
        json!(null),
    )
    .await;
    let before = s.footprint().await;

    let mut private = jwk(3);
    private["d"] = json!("bm90IGEgcmVhbCBrZXk");
    let mut unknown_field = agent_body("fresh", &alice);
    unknown_field["colour"] = json!("blue");
    let mut wrong_type = agent_body("fresh", &alice);
    wrong_type["ceiling"] = json!("everything");
    let mut bad_jwk = agent_body("fresh", &alice);
    bad_jwk["keys"] = json!([{ "kty": "OKP", "crv": "Ed25519", "x": "too-short" }]);
    let mut private_jwk = agent_body("fresh", &alice);
    private_jwk["keys"] = json!([private]);
    let mut bad_grant = agent_body("fresh", &alice);
    bad_grant["ceiling"] = json!([{ "action": "in*voice", "resource": "x" }]);
    let cases: Vec<(&str, Value, StatusCode, &str)> = vec![
        (
            "unknown owner",
            agent_body("fresh", "0190c6a2-0000-7000-8000-000000000000"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "no human",
        ),
        (
            "deactivated owner",
            agent_body("fresh", &gone),
            StatusCode::CONFLICT,
            "deactivated",
        ),
        (
            "duplicate name",
            agent_body("taken", &alice),
            StatusCode::CONFLICT,
            "already taken",
        ),
        (
            "retired name",
            agent_body("old-timer", &alice),
            StatusCode::CONFLICT,
            "never reused",
        ),
        (
            "invalid name",
            agent_body("Not/Valid", &alice),
            StatusCode::UNPROCESSABLE_ENTITY,
            "SPIFFE path segment",
        ),
        (
            "unknown field",
            unknown_field,
            StatusCode::UNPROCESSABLE_ENTITY,
            "colour",
        ),
        (
            "wrong type",
            wrong_type,
            StatusCode::UNPROCESSABLE_ENTITY,
            "ceiling",
        ),
        ("bad JWK", bad_jwk, StatusCode::UNPROCESSABLE_ENTITY, "JWK"),
        (
            "private JWK",
            private_jwk,
            StatusCode::UNPROCESSABLE_ENTITY,
            "private key",
        ),
        (
            "misplaced wildcard",
            bad_grant,
            StatusCode::UNPROCESSABLE_ENTITY,
            "'*' is only allowed",
        ),
    ];
    for (what, body, status, needle) in cases {
        let (st, p) = s.post("/v1/agents", body).await;
        assert_eq!(st, status, "{what}: {p}");
        assert!(
            p["detail"].as_str().unwrap().contains(needle),
            "{what}: detail {:?} lacks {needle:?}",
            p["detail"]
        );
    }

    let (st, p) = s
        .post(
            &format!("/v1/agents/{}/resume", retired["id"].as_str().unwrap()),
            json!(null),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::CONFLICT,
        "reactivating a retired agent: {p}"
    );
    assert!(p["detail"].as_str().unwrap().contains("retired"));

    let raw = |body: &'static str, ctype: &'static str| {
        s.req(reqwest::Method::POST, "/v1/agents")
            .header("content-type", ctype)
            .body(body)
            .send()
    };
    let (st, p) = read(raw("{\"name\": ", "application/json").await.unwrap()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "malformed JSON: {p}");
    let (st, _) = read(raw("{}", "text/plain").await.unwrap()).await;
    assert_eq!(st, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let huge = format!(
        "{{\"description\": \"{}\"}}",
        "x".repeat(mandate_server::MAX_BODY_BYTES + 1)
    );
    let res = s
        .req(reqwest::Method::POST, "/v1/agents")
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    let (st, p) = read(res).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{p}");
    let (st, _) = s.get("/v1/agents?limit=lots").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s.get("/v1/agents/nobody").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s.get("/v1/humans/not-a-uuid").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s
        .post(
            "/v1/humans",
            json!({ "issuer": "ftp://x", "subject": "s", "display_name": "S" }),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);

    assert_eq!(
        s.footprint().await,
        before,
        "a refused request changed state"
    );
}

async fn serves_operations_endpoints(t: TestStore) {
    let s = start(t).await;
    let (st, h) = s.get("/healthz").await;
    assert_eq!((st, h["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (st, _) = s.get("/readyz").await;
    assert_eq!(st, StatusCode::OK);
    let (st, doc) = s.get("/openapi.json").await;
    assert_eq!(st, StatusCode::OK);
    for path in [
        "/v1/agents",
        "/v1/agents/{agent}/retire",
        "/v1/humans",
        "/v1/audit/proof/inclusion",
    ] {
        assert!(doc["paths"].get(path).is_some(), "OpenAPI lacks {path}");
    }
    assert!(doc["components"]["schemas"].get("NewAgent").is_some());
    let metrics = s.metrics().await;
    assert!(metrics.contains("mandate_http_requests_total"), "{metrics}");
    // Histograms are kept bounded without a scrape: once a request has been
    // measured, the thread folding their samples in runs in this process.
    let threads: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect();
    assert!(
        threads.iter().any(|name| name == "metrics-upkeep"),
        "{threads:?}"
    );
    let (st, _) = s.get("/no/such/thing").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

async fn audit_proofs_verify_against_signed_checkpoints(t: TestStore) {
    let s = start(t).await;
    for i in 0..5 {
        s.human(&format!("h{i}")).await;
    }
    let (st, old) = s.post("/v1/audit/checkpoint", json!(null)).await;
    assert_eq!(st, StatusCode::CREATED);
    for i in 5..11 {
        s.human(&format!("h{i}")).await;
    }
    let (_, new) = s.post("/v1/audit/checkpoint", json!(null)).await;
    let (_, latest) = s.get("/v1/audit/checkpoint").await;
    assert_eq!(latest["size"], new["size"]);
    let (old_size, new_size) = (old["size"].as_u64().unwrap(), new["size"].as_u64().unwrap());
    assert_eq!((old_size, new_size), (7, 13), "2 init events + 5, then + 6");

    // The checkpoint's signature checks with the published verifier key.
    let (_, v) = s.get("/v1/audit/verifier").await;
    let verifier =
        mandate_core::audit::checkpoint::NoteVerifier::parse_vkey(v["vkey"].as_str().unwrap())
            .unwrap();
    let cp =
        mandate_core::audit::checkpoint::SignedCheckpoint::parse(new["note"].as_str().unwrap())
            .unwrap();
    cp.verify(&[verifier]).unwrap();

    let hex = |v: &Value| hash_from_hex(v.as_str().unwrap()).unwrap();
    let hexes = |v: &Value| v.as_array().unwrap().iter().map(hex).collect::<Vec<_>>();
    for index in [0, 6, 12] {
        let (st, p) = s
            .get(&format!(
                "/v1/audit/proof/inclusion?index={index}&size={new_size}"
            ))
            .await;
        assert_eq!(st, StatusCode::OK, "{p}");
        assert_eq!(p["root"], new["root"]);
        verify_inclusion(
            &hex(&p["leaf_hash"]),
            index,
            new_size,
            &hexes(&p["proof"]),
            &hex(&new["root"]),
        )
        .unwrap();
    }
    let (_, c) = s
        .get(&format!(
            "/v1/audit/proof/consistency?from={old_size}&to={new_size}"
        ))
        .await;
    verify_consistency(
        old_size,
        new_size,
        &hex(&old["root"]),
        &hex(&new["root"]),
        &hexes(&c["proof"]),
    )
    .unwrap();
    let (st, _) = s.get("/v1/audit/proof/inclusion?index=99").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Entries are not public.
    let res = s
        .http
        .get(format!("{}/v1/audit/entries", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let (_, entries) = s.get("/v1/audit/entries?from=2&limit=3").await;
    assert_eq!(entries.as_array().unwrap().len(), 3);
}

async fn every_request_has_an_id_and_is_measured(t: TestStore) {
    let s = start(t).await;
    // A client's request id is kept: echoed, and in the audit entry it caused.
    let res = s
        .req(reqwest::Method::POST, "/v1/humans")
        .header("x-request-id", "trace-42")
        .json(&json!({ "issuer": "https://idp.acme.example", "subject": "ida", "display_name": "Ida" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.headers()["x-request-id"], "trace-42");
    let human = read(res).await.1["id"].as_str().unwrap().to_owned();
    let (_, entries) = s.get("/v1/audit/entries?from=0&limit=500").await;
    let entry = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e.to_string().contains(&human))
        .expect("the registration is in the log");
    let entry: Value = serde_json::from_str(entry["entry"].as_str().unwrap()).unwrap();
    assert_eq!(entry["event"]["request_id"], "trace-42", "{entry}");
    // Without one, each request gets its own UUID.
    let ids: Vec<String> = fresh_ids(&s).await;
    assert_ne!(ids[0], ids[1]);
    for id in &ids {
        uuid::Uuid::parse_str(id).unwrap();
    }
    // Metrics are labelled by route template, never by the path's ids, and
    // a made-up method adds no series of its own.
    let (st, _) = s.get(&format!("/v1/humans/{human}")).await;
    assert_eq!(st, StatusCode::OK);
    let brew = reqwest::Method::from_bytes(b"BREW").unwrap();
    let res = s.req(brew, "/healthz").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    let metrics = s.metrics().await;
    for series in [
        r#"mandate_http_requests_total{method="POST",route="/v1/humans",status="201"}"#,
        r#"mandate_http_requests_total{method="GET",route="/v1/humans/{id}",status="200"}"#,
        r#"mandate_http_requests_total{method="other",route="/healthz",status="405"}"#,
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }
    assert!(!metrics.contains(&human), "an id leaked into a label");
    assert!(!metrics.contains("BREW"));
}

async fn fresh_ids(s: &Server) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..2 {
        let res = s
            .req(reqwest::Method::GET, "/healthz")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        ids.push(res.headers()["x-request-id"].to_str().unwrap().to_owned());
    }
    ids
}

mandate_store::backend_tests!(
    writes_need_a_valid_admin_credential,
    registers_lists_and_manages_agents,
    bad_input_is_refused_and_changes_nothing,
    serves_operations_endpoints,
    audit_proofs_verify_against_signed_checkpoints,
    every_request_has_an_id_and_is_measured,
);
