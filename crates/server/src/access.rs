//! Who is calling: task tokens (with their DPoP binding), agent assertions
//! and human ID tokens, each checked against the live store.
//!
//! A task token is only as good as its task: the signature and times are
//! checked first, then the credential record (revoked means refused) and the
//! task state (ended or expired means refused), so a revocation that has
//! committed is seen by the very next request on every node.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName};
use mandate_core::agent::{Agent, AgentStatus};
use mandate_core::credential::{self, AssertionClaims, IdClaims, TaskClaims, TokenError};
use mandate_core::dpop;
use mandate_core::human::{Human, HumanStatus};
use mandate_core::ids::SpiffeId;
use mandate_core::task::Task;
use mandate_core::time::Timestamp;
use mandate_store::{CredentialRecord, DecisionContext, StoreError};
use sha2::{Digest, Sha256};

use crate::AppState;

/// Why a presented credential was refused. The text is safe to return.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Token(#[from] TokenError),
    #[error("the token was revoked")]
    Revoked,
    #[error("the task {0} is {1}")]
    TaskEnded(String, &'static str),
    #[error("the token is not one Mandate issued")]
    UnknownCredential,
    #[error("the token is DPoP-bound: send a DPoP proof made with its key")]
    DpopMissing,
    #[error("the DPoP proof is for another key than the token is bound to")]
    DpopMismatch,
    #[error("DPoP proof: {0}")]
    Dpop(TokenError),
    #[error("the DPoP proof was already used: replay refused")]
    DpopReplay,
    #[error("{0}")]
    Principal(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Refusal::Store(e)
    }
}

/// A refused credential is a 401 with the reason; a store failure keeps its
/// own status (503 while the database is away).
impl From<Refusal> for crate::problem::Problem {
    fn from(e: Refusal) -> Self {
        match e {
            Refusal::Store(s) => s.into(),
            other => crate::problem::Problem::unauthorized(other.to_string()),
        }
    }
}

/// The task token of an `Authorization: Bearer` or `DPoP` header.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("DPoP "))
        })
        .map(str::trim)
}

/// Headers read on every decision, named once rather than parsed per lookup.
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const DPOP: HeaderName = HeaderName::from_static("dpop");

/// The DPoP side of a request: the proof header and what it must be bound to.
pub struct Presented {
    pub proof: Option<String>,
    pub method: String,
    /// The request URL without query, as the client addressed it (`htu`).
    pub url: String,
}

impl Presented {
    pub fn from_parts(parts: &Parts) -> Self {
        Self::new(&parts.headers, parts.method.as_str(), parts.uri.path())
    }

    pub fn new(headers: &HeaderMap, method: &str, path: &str) -> Self {
        let host = headers
            .get(X_FORWARDED_HOST)
            .or_else(|| headers.get(axum::http::header::HOST))
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let scheme = headers
            .get(X_FORWARDED_PROTO)
            .and_then(|h| h.to_str().ok())
            .filter(|p| *p == "https")
            .unwrap_or("http");
        Presented {
            proof: headers
                .get(DPOP)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned),
            method: method.to_owned(),
            url: format!("{scheme}://{host}{path}"),
        }
    }
}

/// A task token that passed every check.
#[derive(Debug, Clone)]
pub struct Verified {
    pub token: String,
    pub claims: TaskClaims,
    pub task: Task,
    pub credential: CredentialRecord,
}

/// Verifies a DPoP proof and spends its jti. `token` is set when the proof
/// accompanies an access token (RFC 9449 `ath`).
pub async fn dpop_proof(
    s: &AppState,
    p: &Presented,
    token: Option<&str>,
    now: Timestamp,
) -> Result<Option<dpop::VerifiedProof>, Refusal> {
    let Some(proof) = &p.proof else {
        return Ok(None);
    };
    let v = dpop::verify_proof(proof, &p.method, &p.url, token, now).map_err(Refusal::Dpop)?;
    let until = Timestamp::from_millis(now.as_millis() + 2 * dpop::PROOF_WINDOW_S * 1000);
    match s.store.consume_jti(&format!("dpop:{}", v.jti), until).await {
        Ok(()) => Ok(Some(v)),
        Err(StoreError::Rule(_)) => Err(Refusal::DpopReplay),
        Err(e) => Err(e.into()),
    }
}

/// Task tokens whose signature, issuer and audience already verified, by the
/// SHA-256 of the whole token, until they expire. A signature check costs
/// tens of microseconds and an agent presents the same token on every call;
/// a verified signature is a pure function of the token's bytes and the
/// key, so it is all that is kept. Revocation is unaffected because the
/// credential and task are still read from the store on every request, and
/// an entry counts only while its key is still published (see [`Keyring::key`]).
///
/// [`Keyring::key`]: crate::keyring::Keyring::key
#[derive(Default)]
pub struct VerifiedTokens(Mutex<HashMap<[u8; 32], Checked>>);

/// A verified token's claims and the key that signed it.
#[derive(Clone)]
struct Checked {
    claims: TaskClaims,
    kid: String,
}

/// Entries beyond this are dropped (expired ones first) rather than grow.
const MAX_VERIFIED: usize = 100_000;

impl VerifiedTokens {
    fn get(&self, digest: &[u8; 32], now: Timestamp) -> Option<Checked> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(digest)
            // Only expiry can change with time: `iat` was checked on insert.
            .filter(|c| now.as_secs() < c.claims.exp)
            .cloned()
    }

    fn put(&self, digest: [u8; 32], checked: Checked, now: Timestamp) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_VERIFIED {
            map.retain(|_, c| c.claims.exp > now.as_secs());
            if map.len() >= MAX_VERIFIED {
                map.clear();
            }
        }
        map.insert(digest, checked);
    }
}

/// Signature, issuer, audience and times of a task token, without the store.
pub async fn verify_signature(
    s: &AppState,
    token: &str,
    now: Timestamp,
) -> Result<TaskClaims, Refusal> {
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    if let Some(hit) = s.verified.get(&digest, now)
        // A key no longer published verifies nothing, cached or not.
        && s.keys.key(&hit.kid, now).is_some()
    {
        return Ok(hit.claims);
    }
    let kid = peek_kid(token)?;
    // Make sure a key rotated on another node is known before verifying.
    s.keys.key_or_reload(s.store.as_ref(), &kid, now).await?;
    let claims = credential::verify_task_token(
        token,
        |kid| s.keys.key(kid, now),
        &s.install.issuer,
        &s.install.issuer,
        now,
    )?;
    s.verified.put(
        digest,
        Checked {
            claims: claims.clone(),
            kid,
        },
        now,
    );
    Ok(claims)
}

fn peek_kid(token: &str) -> Result<String, Refusal> {
    let header = token
        .split('.')
        .next()
        .and_then(|h| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .ok_or_else(|| TokenError::Malformed("the token is not a JWS".into()))?;
    header["kid"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| TokenError::Malformed("no kid in the header".into()).into())
}

/// A live task token: signature, times, credential not revoked, task open.
/// The DPoP binding is not checked here (introspection reports `cnf` for the
/// resource server to check); [`verify_presented`] checks both.
pub async fn verify_task_token(
    s: &AppState,
    token: &str,
    now: Timestamp,
) -> Result<Verified, Refusal> {
    let claims = verify_signature(s, token, now).await?;
    let (credential, task) = issued(s, &claims).await?;
    if credential.revoked_at.is_some() {
        return Err(Refusal::Revoked);
    }
    if !task.is_live(now) {
        return Err(Refusal::TaskEnded(
            task.id.to_string(),
            task.status_at(now).as_str(),
        ));
    }
    Ok(Verified {
        token: token.to_owned(),
        claims,
        task,
        credential,
    })
}

/// The credential record and the task a genuine token names, as stored now
/// (revoked or ended included: callers decide what that means for them).
pub async fn issued(
    s: &AppState,
    claims: &TaskClaims,
) -> Result<(CredentialRecord, Task), Refusal> {
    let credential = s
        .store
        .credential(&claims.jti)
        .await?
        .filter(|c| c.task == claims.task_id)
        .ok_or(Refusal::UnknownCredential)?;
    let task = s
        .store
        .task(claims.task_id)
        .await?
        .ok_or(Refusal::UnknownCredential)?;
    Ok((credential, task))
}

/// What a decision reads about a genuine token, in one store call (see
/// [`mandate_store::Store::decision_context`]): the credential (refused as
/// unknown unless it is this task's), taken out of the context, and the
/// task, its chain and the active policy's hash, as stored now.
pub async fn decision_context(
    s: &AppState,
    claims: &TaskClaims,
) -> Result<(CredentialRecord, DecisionContext), Refusal> {
    let mut ctx = s
        .store
        .decision_context(&claims.jti, claims.task_id)
        .await?
        .ok_or(Refusal::UnknownCredential)?;
    let credential = ctx
        .credential
        .take()
        .filter(|c| c.task == claims.task_id)
        .ok_or(Refusal::UnknownCredential)?;
    Ok((credential, ctx))
}

/// Proof of possession for a bound token: a fresh DPoP proof for this
/// request, made with the key the token is bound to (`cnf.jkt`). Unbound
/// tokens pass.
pub async fn check_binding(
    s: &AppState,
    claims: &TaskClaims,
    token: &str,
    p: &Presented,
    now: Timestamp,
) -> Result<(), Refusal> {
    let Some(cnf) = &claims.cnf else {
        return Ok(());
    };
    let proof = dpop_proof(s, p, Some(token), now)
        .await?
        .ok_or(Refusal::DpopMissing)?;
    if proof.jkt != cnf.jkt {
        return Err(Refusal::DpopMismatch);
    }
    Ok(())
}

/// Everything a task token must pass before anything is done on its behalf,
/// the proof of possession included when the token is bound.
pub async fn verify_presented(
    s: &AppState,
    token: &str,
    p: &Presented,
    now: Timestamp,
) -> Result<Verified, Refusal> {
    let v = verify_task_token(s, token, now).await?;
    check_binding(s, &v.claims, token, p, now).await?;
    Ok(v)
}

/// A human proven by an ID token from a trusted issuer, active in the registry.
pub async fn verify_human(s: &AppState, token: &str, now: Timestamp) -> Result<Human, Refusal> {
    let unverified: IdClaims = credential::peek_claims(token)?;
    let jwks = s
        .store
        .trusted_issuer(&unverified.iss)
        .await?
        .ok_or_else(|| {
            Refusal::Principal(format!("the issuer {:?} is not trusted", unverified.iss))
        })?;
    let jwks = credential::parse_jwks(&jwks)?;
    let claims =
        credential::verify_id_token(token, &unverified.iss, &jwks, &s.install.issuer, now)?;
    let human = s
        .store
        .human_by_subject(&claims.iss, &claims.sub)
        .await?
        .ok_or_else(|| {
            Refusal::Principal(format!(
                "no human is registered as {} at {}",
                claims.sub, claims.iss
            ))
        })?;
    if human.status != HumanStatus::Active {
        return Err(Refusal::Principal(format!(
            "human {} is deactivated",
            human.id
        )));
    }
    Ok(human)
}

/// An agent proven by an RFC 7523 assertion signed with one of its keys. The
/// returned claims' jti must still be spent (in the write it authorises).
pub async fn verify_agent(
    s: &AppState,
    token: &str,
    now: Timestamp,
) -> Result<(Agent, AssertionClaims), Refusal> {
    let unverified: AssertionClaims = credential::peek_claims(token)?;
    let (td, _, name) = SpiffeId::parse(&unverified.iss)
        .map_err(|e| Refusal::Principal(format!("the assertion's issuer: {e}")))?;
    if td != s.install.trust_domain {
        return Err(Refusal::Principal(format!(
            "{} is not in the trust domain {}",
            unverified.iss, s.install.trust_domain
        )));
    }
    let agent = s
        .store
        .agent_by_name(&name)
        .await?
        .filter(|a| a.spiffe_id.as_str() == unverified.iss)
        .ok_or_else(|| Refusal::Principal(format!("no agent {} is registered", unverified.iss)))?;
    let keys: Vec<_> = agent
        .keys
        .iter()
        .map(|k| (k.kid.clone(), k.jwk.verifying_key()))
        .collect();
    let claims =
        credential::verify_assertion(token, &agent.spiffe_id, &keys, &s.install.issuer, now)?;
    if agent.status != AgentStatus::Active {
        return Err(Refusal::Principal(format!(
            "agent {} is {}",
            agent.spiffe_id,
            agent.status.as_str()
        )));
    }
    Ok((agent, claims))
}
