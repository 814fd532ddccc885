//! The client side of task credentials: private key files, agent
//! assertions, DPoP proofs and the token exchange, shared by the `task`,
//! `delegate` and `demo` commands.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ed25519_dalek::SigningKey;
use mandate_core::credential::{
    self, GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS, TOKEN_TYPE_ID, TOKEN_TYPE_JWT,
};
use mandate_core::dpop;
use mandate_core::ids::{SpiffeId, TaskId};
use mandate_core::jwk::Ed25519Jwk;
use serde::Deserialize;
use serde_json::json;

use crate::CliError;
use crate::client::Client;

/// A private Ed25519 key as a JWK file (`d` is the seed), mode 0600.
pub fn write_key_file(path: &Path, key: &SigningKey) -> Result<Ed25519Jwk, CliError> {
    let public = Ed25519Jwk::from_verifying_key(&key.verifying_key(), None);
    let mut v = serde_json::to_value(&public).expect("a JWK serialises");
    v["d"] = B64URL.encode(key.to_bytes()).into();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    opts.open(path)
        .and_then(|mut f| f.write_all(v.to_string().as_bytes()))
        .map_err(|e| {
            CliError::Usage(format!(
                "cannot write {}: {e} (give a new file name)",
                path.display()
            ))
        })?;
    Ok(public)
}

/// Reads a private key file made by [`write_key_file`]: the key and its kid.
pub fn read_key_file(path: &Path) -> Result<(SigningKey, String), CliError> {
    let bad = |why: String| {
        CliError::Usage(format!(
            "{}: {why} (make one with `mandate agent keygen`)",
            path.display()
        ))
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let seed: [u8; 32] = v["d"]
        .as_str()
        .and_then(|d| B64URL.decode(d).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("no Ed25519 private key (\"d\") in it".into()))?;
    let key = SigningKey::from_bytes(&seed);
    let kid = v["kid"].as_str().map(str::to_owned).unwrap_or_else(|| {
        Ed25519Jwk::from_verifying_key(&key.verifying_key(), None)
            .kid()
            .to_owned()
    });
    Ok((key, kid))
}

/// An agent able to prove itself: its SPIFFE id and one registered key.
pub struct AgentIdentity {
    pub spiffe: SpiffeId,
    pub key: SigningKey,
    pub kid: String,
}

impl AgentIdentity {
    pub fn new(spiffe: &str, key: SigningKey, kid: String) -> Result<Self, CliError> {
        let (td, kind, name) =
            SpiffeId::parse(spiffe).map_err(|e| CliError::Usage(e.to_string()))?;
        Ok(AgentIdentity {
            spiffe: SpiffeId::for_agent(&td, kind, &name),
            key,
            kid,
        })
    }
}

/// What a task is for and may do.
pub struct TaskAsk {
    pub purpose: String,
    /// Each entry grants every action on every resource it lists.
    pub entries: Vec<(Vec<String>, Vec<String>)>,
    pub max_calls: Option<u64>,
    /// Money the task may move, in minor units (context.amount).
    pub budget: Option<u64>,
    pub ttl_s: Option<u64>,
}

/// Who the new task's authority comes from.
pub enum Subject<'a> {
    /// A human's ID token from a trusted issuer.
    Human(&'a str),
    /// The parent task's token: the new task is delegated from it.
    Parent(&'a str),
}

#[derive(Debug, Deserialize, serde::Serialize)]
pub struct Issued {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    pub task_id: TaskId,
    pub authorization_details: serde_json::Value,
}

fn now() -> mandate_core::time::Timestamp {
    mandate_server::now()
}

fn unique() -> String {
    mandate_server::install::new_uuid().to_string()
}

/// RFC 8693 exchange at `c`: the subject, the agent's fresh assertion, the
/// task as RFC 9396 details, and a DPoP proof when `dpop` is given.
pub async fn exchange(
    c: &Client,
    subject: Subject<'_>,
    agent: &AgentIdentity,
    ask: &TaskAsk,
    dpop_key: Option<&SigningKey>,
) -> Result<Issued, CliError> {
    let issuer = c.issuer().await?;
    let assertion = credential::mint_assertion(
        &agent.key,
        &agent.kid,
        &agent.spiffe,
        &issuer,
        now(),
        &unique(),
    );
    let details: Vec<_> = ask
        .entries
        .iter()
        .map(|(actions, resources)| {
            let mut d = json!({ "type": credential::DETAIL_TYPE, "purpose": ask.purpose,
                "actions": actions, "resources": resources });
            let limits = mandate_core::task::Limits {
                max_calls: ask.max_calls,
                budget: ask.budget,
            };
            if limits != mandate_core::task::Limits::default() {
                d["limits"] = json!(limits);
            }
            d
        })
        .collect();
    let details = serde_json::Value::from(details).to_string();
    let (token, kind) = match subject {
        Subject::Human(t) => (t, TOKEN_TYPE_ID),
        Subject::Parent(t) => (t, TOKEN_TYPE_ACCESS),
    };
    let ttl = ask.ttl_s.map(|t| t.to_string());
    let mut form = vec![
        ("grant_type", GRANT_TOKEN_EXCHANGE),
        ("subject_token", token),
        ("subject_token_type", kind),
        ("actor_token", assertion.as_str()),
        ("actor_token_type", TOKEN_TYPE_JWT),
        ("authorization_details", details.as_str()),
    ];
    if let Some(t) = &ttl {
        form.push(("requested_ttl", t));
    }
    let url = format!("{}/oauth2/token", c.base());
    // A bound parent is proven with its own key (the proof names the parent token).
    let parent = match subject {
        Subject::Parent(t) => Some(t),
        Subject::Human(_) => None,
    };
    let headers: Vec<(&str, String)> = dpop_key
        .map(|k| {
            (
                "DPoP",
                dpop::mint_proof(k, "POST", &url, parent, now(), &unique()),
            )
        })
        .into_iter()
        .collect();
    Client::new(c.base(), None)
        .post_form("/oauth2/token", &form, &headers)
        .await
}

/// The DPoP header for a request with a bound token, when a key is given.
pub fn dpop_header(
    key: Option<&SigningKey>,
    method: &str,
    url: &str,
    token: &str,
) -> Vec<(&'static str, String)> {
    key.map(|k| {
        (
            "DPoP",
            dpop::mint_proof(k, method, url, Some(token), now(), &unique()),
        )
    })
    .into_iter()
    .collect()
}

/// Extra request headers (a DPoP proof).
pub type Headers = Vec<(&'static str, String)>;

/// The task credential an agent acts under, as command-line options.
#[derive(clap::Args, Debug, Clone)]
pub struct TaskCredential {
    /// The task token the action is done under.
    #[arg(
        long = "task-token",
        env = "MANDATE_TASK_TOKEN",
        hide_env_values = true
    )]
    pub task_token: String,
    /// The DPoP key the token is bound to, if it is.
    #[arg(long)]
    pub dpop_key: Option<std::path::PathBuf>,
}

impl TaskCredential {
    /// A client presenting the token, and the headers (a fresh DPoP proof
    /// when bound) for one `method` request to `path`.
    pub fn request(
        &self,
        server: &str,
        method: &str,
        path: &str,
    ) -> Result<(crate::client::Client, Headers), CliError> {
        let c = crate::client::Client::new(server, Some(self.task_token.clone()));
        let key = self
            .dpop_key
            .as_deref()
            .map(read_key_file)
            .transpose()?
            .map(|(k, _)| k);
        let url = format!("{}{path}", c.base());
        let headers = dpop_header(key.as_ref(), method, &url, &self.task_token);
        Ok((c, headers))
    }
}
