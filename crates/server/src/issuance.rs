//! Minting a task credential: the task record, its credential record and
//! the signed token, built together so they always agree. Nothing is stored
//! here; the caller stores the record (with its audit event) before it hands
//! the token out.

use mandate_core::agent::Agent;
use mandate_core::credential::{
    Act, Cnf, DETAIL_TYPE, GrantedDetail, TOKEN_TYPE_ACCESS, TaskClaims,
};
use mandate_core::delegation::Granted;
use mandate_core::ids::{HumanId, TaskId};
use mandate_core::task::{Task, TaskStatus};
use mandate_core::time::Timestamp;
use mandate_store::{CredentialRecord, NewTask};

use crate::AppState;
pub use crate::routes::oauth::TokenResponse;

/// A task ready to store, and the answer to give once it is stored.
pub struct Issued {
    pub record: NewTask,
    pub response: TokenResponse,
}

/// Builds the task, its credential and the signed token (nothing stored yet).
#[allow(clippy::too_many_arguments)]
pub fn issue(
    s: &AppState,
    agent: &Agent,
    purpose: &str,
    granted: Granted,
    initiator: HumanId,
    previous: Option<&Act>,
    parent: Option<&Task>,
    jkt: Option<String>,
    now: Timestamp,
) -> Issued {
    let id = TaskId::from_uuid(crate::install::new_uuid());
    let jti = crate::install::new_uuid().to_string();
    let act = Act::then(previous, &agent.spiffe_id);
    let detail = GrantedDetail {
        kind: DETAIL_TYPE.to_owned(),
        purpose: purpose.to_owned(),
        grants: granted.scope.clone(),
        limits: granted.limits.clone(),
    };
    let signer = s.keys.signer();
    let claims = TaskClaims {
        iss: s.install.issuer.clone(),
        sub: initiator.to_string(),
        aud: s.install.issuer.clone(),
        exp: granted.expires_at.as_secs(),
        iat: now.as_secs(),
        jti: jti.clone(),
        task_id: id,
        client_id: agent.spiffe_id.to_string(),
        authorization_details: vec![detail.clone()],
        act: act.clone(),
        cnf: jkt.clone().map(|jkt| Cnf { jkt }),
    };
    let token = signer.sign(&claims);
    let task = Task {
        id,
        parent: parent.map(|p| p.id),
        root: parent.map_or(id, |p| p.root),
        depth: granted.depth,
        purpose: purpose.to_owned(),
        initiator,
        assignee: agent.id,
        assignee_spiffe: agent.spiffe_id.clone(),
        delegator: parent.map(|p| p.assignee),
        scope: granted.scope,
        limits: granted.limits,
        expires_at: granted.expires_at,
        status: TaskStatus::Open,
        created_at: now,
        ended_at: None,
        end_reason: None,
    };
    let mut chain = vec![initiator.to_string()];
    chain.extend(act.chain());
    Issued {
        record: NewTask {
            task,
            credential: CredentialRecord {
                jti,
                task: id,
                agent: agent.id,
                kid: signer.kid().to_owned(),
                issued_at: now,
                expires_at: Timestamp::from_millis(claims.exp * 1000),
                cnf_jkt: jkt.clone(),
                revoked_at: None,
            },
            single_use: Vec::new(),
            chain,
        },
        response: TokenResponse {
            access_token: token,
            issued_token_type: TOKEN_TYPE_ACCESS.to_owned(),
            token_type: if jkt.is_some() { "DPoP" } else { "Bearer" }.to_owned(),
            expires_in: claims.exp - now.as_secs(),
            task_id: id,
            authorization_details: vec![detail],
        },
    }
}
