//! `mandate token inspect`: decode and verify a task token against the
//! server's JWKS, show its chain, and ask the server whether it is live.

use mandate_core::credential::{self, TaskClaims};
use mandate_core::jwk::Ed25519Jwk;
use mandate_core::time::Timestamp;

use crate::client::Client;
use crate::output;
use crate::{CliError, ServerArgs};

#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Verify a task token's signature and show its task, scope and delegation chain.
    Inspect {
        #[command(flatten)]
        server: ServerArgs,
        /// The token ("-" reads it from stdin).
        #[arg(value_name = "TOKEN")]
        jwt: String,
    },
}

pub async fn run(cmd: TokenCommand) -> Result<(), CliError> {
    let TokenCommand::Inspect { server, jwt: token } = cmd;
    let token = if token == "-" {
        std::io::read_to_string(std::io::stdin())
            .map_err(|e| CliError::Usage(format!("cannot read stdin: {e}")))?
    } else {
        token
    };
    let token = token.trim();
    let c = Client::new(&server.server, None);
    let issuer = c.issuer().await?;
    let jwks: serde_json::Value = c.get("/.well-known/jwks.json").await?;
    let keys: Vec<Ed25519Jwk> = jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| Ed25519Jwk::from_json(k).ok())
        .collect();
    let claims: TaskClaims = credential::verify_task_token(
        token,
        |kid| {
            keys.iter()
                .find(|k| k.kid() == kid)
                .map(Ed25519Jwk::verifying_key)
        },
        &issuer,
        &issuer,
        mandate_server::now(),
    )
    .map_err(|e| {
        CliError::Failed(format!(
            "the token does not verify against {}: {e}",
            c.base()
        ))
    })?;
    // Whether it is still live is the server's to say (revocation, task state).
    let live: Option<serde_json::Value> = match &server.token {
        Some(t) => Some(
            Client::new(&server.server, Some(t.clone()))
                .post_form("/oauth2/introspect", &[("token", token)], &[])
                .await?,
        ),
        None => None,
    };
    if server.json {
        output::json(&serde_json::json!({ "claims": claims, "introspection": live }));
        return Ok(());
    }
    println!("signature: valid (kid from {})", c.base());
    println!("task:      {}", claims.task_id);
    println!("initiator: human {}", claims.sub);
    println!(
        "chain:     human {} -> {}",
        claims.sub,
        claims.act.chain().join(" -> ")
    );
    for d in &claims.authorization_details {
        println!("purpose:   {}", d.purpose);
        for g in d.grants.grants() {
            println!("grant:     {g}");
        }
        if let Some(n) = d.limits.max_calls {
            println!("max calls: {n}");
        }
        if let Some(n) = d.limits.budget {
            println!("budget:    {n} (minor units)");
        }
    }
    println!(
        "issued:    {}",
        Timestamp::from_millis(claims.iat * 1000).rfc3339()
    );
    println!(
        "expires:   {}",
        Timestamp::from_millis(claims.exp * 1000).rfc3339()
    );
    if let Some(cnf) = &claims.cnf {
        println!("bound to:  DPoP key {}", cnf.jkt);
    }
    match live {
        Some(v) if v["active"] == true => println!("status:    active"),
        Some(v) => println!(
            "status:    INACTIVE ({})",
            v["reason"].as_str().unwrap_or("refused")
        ),
        None => println!("status:    not checked (pass --token with an admin token to introspect)"),
    }
    Ok(())
}
