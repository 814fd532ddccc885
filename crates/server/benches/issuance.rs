//! Credential figures: issuances per second (signed token + durable task,
//! credential and audit records) on each backend, the full RFC 8693 exchange
//! over HTTP on loopback, and token verifications per second.
//!
//! Run: `cargo bench -p mandate-server --bench issuance`
//! (PostgreSQL figures when MANDATE_TEST_DATABASE_URL is set).

use std::time::Instant;

use mandate_core::credential::{self, GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ID, TOKEN_TYPE_JWT};
use mandate_server::now;
use mandate_store::Backend;
use mandate_store::testing;

mod common;
use common::{Setup, issue_root, serve_on_loopback, setup};

/// The `mandate` binary's allocator, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ISSUANCES: usize = 6_000;
const ISSUERS: usize = 64;
const HTTP_EXCHANGES: usize = 2_000;
const HTTP_CLIENTS: usize = 32;
const VERIFICATIONS: usize = 50_000;

/// Token minting plus the durable records, concurrently, as the token
/// endpoint does after it has authenticated the caller.
async fn issuances(s: &Setup, label: &str) -> Vec<String> {
    let start = Instant::now();
    let workers: Vec<_> = (0..ISSUERS)
        .map(|w| {
            let state = s.state.clone();
            let agent = s.agent.clone();
            let human = s.human;
            tokio::spawn(async move {
                let mut tokens = Vec::new();
                for _ in (w..ISSUANCES).step_by(ISSUERS) {
                    tokens.push(issue_root(&state, &agent, human).await);
                }
                tokens
            })
        })
        .collect();
    let mut tokens = Vec::new();
    for w in workers {
        tokens.extend(w.await.unwrap());
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{label:<10} credential issuances (signed token + durable task, credential, audit event; {ISSUERS} concurrent): {:>7.0}/s",
        ISSUANCES as f64 / secs
    );
    tokens
}

/// The whole RFC 8693 exchange over HTTP: ID token and assertion verified,
/// jti spent, task stored, token signed.
async fn http_exchanges(s: &Setup, label: &str) {
    let (base, stop, server) = serve_on_loopback(&s.state).await;
    let http = reqwest::Client::new();
    let issuer = s.state.install.issuer.clone();
    let details = serde_json::json!([{ "type": "mandate_task", "purpose": "bench",
        "actions": ["procurement.read"], "resources": ["erp:*"] }])
    .to_string();
    let start = Instant::now();
    let clients: Vec<_> = (0..HTTP_CLIENTS)
        .map(|c| {
            let (http, base, issuer, details) =
                (http.clone(), base.clone(), issuer.clone(), details.clone());
            let key = s.agent_key.clone();
            let kid = s.agent.keys[0].kid.clone();
            let spiffe = s.agent.spiffe_id.clone();
            let id_token = s.dev.mint("alice", &issuer, now(), 600);
            tokio::spawn(async move {
                for _ in (c..HTTP_EXCHANGES).step_by(HTTP_CLIENTS) {
                    let jti = uuid::Uuid::now_v7().to_string();
                    let assertion =
                        credential::mint_assertion(&key, &kid, &spiffe, &issuer, now(), &jti);
                    let res = http
                        .post(format!("{base}/oauth2/token"))
                        .form(&[
                            ("grant_type", GRANT_TOKEN_EXCHANGE),
                            ("subject_token", id_token.as_str()),
                            ("subject_token_type", TOKEN_TYPE_ID),
                            ("actor_token", assertion.as_str()),
                            ("actor_token_type", TOKEN_TYPE_JWT),
                            ("authorization_details", details.as_str()),
                        ])
                        .send()
                        .await
                        .unwrap();
                    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{label:<10} token exchanges over HTTP on loopback (verify ID token + assertion, store, sign; {HTTP_CLIENTS} clients): {:>7.0}/s",
        HTTP_EXCHANGES as f64 / secs
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

fn verifications(s: &Setup, token: &str) {
    let at = now();
    let key = s.state.keys.signer().kid().to_owned();
    let start = Instant::now();
    for _ in 0..VERIFICATIONS {
        let claims = credential::verify_task_token(
            token,
            |kid| s.state.keys.key(kid, at),
            &s.state.install.issuer,
            &s.state.install.issuer,
            at,
        )
        .unwrap();
        assert_eq!(claims.iss, s.state.install.issuer);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "token verifications (EdDSA signature, iss, aud, times; kid {}; one core): {:>7.0}/s",
        &key[..8],
        VERIFICATIONS as f64 / secs
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sqlite = setup(testing::store(Backend::Sqlite).await).await;
        let tokens = issuances(&sqlite, "sqlite").await;
        http_exchanges(&sqlite, "sqlite").await;
        verifications(&sqlite, &tokens[0]);
        if std::env::var("MANDATE_TEST_DATABASE_URL").is_ok() {
            let pg = setup(testing::store(Backend::Postgres).await).await;
            issuances(&pg, "postgres").await;
            http_exchanges(&pg, "postgres").await;
        } else {
            println!("postgres   skipped: set MANDATE_TEST_DATABASE_URL for PostgreSQL figures");
        }
    });
}
