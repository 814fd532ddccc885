//! Trust in both directions: `mandate issuer` (OIDC issuers whose ID tokens
//! prove humans), `mandate dev-issuer` (a local one for demos and tests) and
//! `mandate keys` (Mandate's own token-signing keys).

use std::path::{Path, PathBuf};

use clap::Subcommand;
use mandate_core::credential::DevIssuer;
use serde_json::json;

use crate::client::Client;
use crate::output;
use crate::{CliError, ServerArgs};

/// The dev issuer's `iss`. Nothing trusts it until an admin runs `mandate dev-issuer trust`.
pub const DEV_ISSUER: &str = "https://dev-issuer.localhost";
const DEV_KEY_FILE: &str = "dev-issuer.key";

#[derive(Subcommand)]
pub enum IssuerCommand {
    /// Trust an OIDC issuer's ID tokens as proof of a human (or replace its keys).
    Add {
        #[command(flatten)]
        server: ServerArgs,
        /// The issuer exactly as its tokens' `iss` carries it.
        #[arg(long)]
        issuer: String,
        /// Its JWKS: @FILE, or an https URL to fetch it from.
        #[arg(long)]
        jwks: String,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// List Mandate's token-signing keys.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// A new key signs from now on; old keys verify until their tokens expire.
    Rotate {
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand)]
pub enum DevIssuerCommand {
    /// Make the server trust the local dev issuer (its key lives in the data dir).
    Trust {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, env = "MANDATE_DATA_DIR", default_value_os_t = crate::default_data_dir())]
        data_dir: PathBuf,
    },
    /// Mint an ID token for a human registered with `--issuer https://dev-issuer.localhost`.
    Token {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, env = "MANDATE_DATA_DIR", default_value_os_t = crate::default_data_dir())]
        data_dir: PathBuf,
        /// The human's subject at the dev issuer.
        #[arg(long)]
        subject: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 300)]
        ttl: i64,
    },
}

/// The data dir's dev issuer, made on first use.
pub fn dev_issuer(data_dir: &Path) -> Result<DevIssuer, CliError> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
    let path = data_dir.join(DEV_KEY_FILE);
    let seed = match std::fs::read_to_string(&path) {
        Ok(text) => B64URL
            .decode(text.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "{} is not a dev issuer key; delete it to make a new one",
                    path.display()
                ))
            })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seed: [u8; 32] = mandate_server::install::random();
            std::fs::create_dir_all(data_dir).map_err(|e| CliError::Failed(e.to_string()))?;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            use std::io::Write;
            opts.open(&path)
                .and_then(|mut f| f.write_all(B64URL.encode(seed).as_bytes()))
                .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", path.display())))?;
            seed
        }
        Err(e) => {
            return Err(CliError::Usage(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    Ok(DevIssuer::new(DEV_ISSUER, seed))
}

async fn read_jwks(source: &str) -> Result<serde_json::Value, CliError> {
    let text = match source.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| CliError::Usage(format!("cannot read {path}: {e}")))?,
        None if source.starts_with("https://") || source.starts_with("http://127.0.0.1") => {
            reqwest::get(source)
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| CliError::Usage(format!("cannot fetch the JWKS from {source}: {e}")))?
                .text()
                .await
                .map_err(|e| CliError::Failed(e.to_string()))?
        }
        None => return Err(CliError::Usage("--jwks takes @FILE or an https URL".into())),
    };
    serde_json::from_str(&text).map_err(|e| CliError::Usage(format!("the JWKS is not JSON: {e}")))
}

async fn trust(server: &ServerArgs, issuer: &str, jwks: serde_json::Value) -> Result<(), CliError> {
    let c = Client::new(&server.server, server.token.clone());
    let t: serde_json::Value = c
        .post("/v1/issuers", &json!({ "issuer": issuer, "jwks": jwks }))
        .await?;
    if server.json {
        output::json(&t);
    } else {
        println!("trusting {} (keys: {})", issuer, t["kids"]);
    }
    Ok(())
}

pub async fn issuer(cmd: IssuerCommand) -> Result<(), CliError> {
    match cmd {
        IssuerCommand::Add {
            server,
            issuer,
            jwks,
        } => trust(&server, &issuer, read_jwks(&jwks).await?).await,
    }
}

pub async fn keys(cmd: KeysCommand) -> Result<(), CliError> {
    match cmd {
        KeysCommand::List { server } => {
            let c = Client::new(&server.server, server.token.clone());
            let keys: serde_json::Value = c.get("/v1/keys").await?;
            output::json(&keys);
        }
        KeysCommand::Rotate { server } => {
            let c = Client::new(&server.server, server.token.clone());
            let k: serde_json::Value = c.post_empty("/v1/keys/rotate").await?;
            if server.json {
                output::json(&k);
            } else {
                println!(
                    "new signing key {}; earlier keys verify until their tokens expire",
                    k["kid"].as_str().unwrap_or("?")
                );
            }
        }
    }
    Ok(())
}

pub async fn dev(cmd: DevIssuerCommand) -> Result<(), CliError> {
    match cmd {
        DevIssuerCommand::Trust { server, data_dir } => {
            let dev = dev_issuer(&data_dir)?;
            trust(&server, dev.issuer(), dev.jwks()).await
        }
        DevIssuerCommand::Token {
            server,
            data_dir,
            subject,
            ttl,
        } => {
            if !(1..=3600).contains(&ttl) {
                return Err(CliError::Usage("--ttl must be 1 to 3600 seconds".into()));
            }
            let dev = dev_issuer(&data_dir)?;
            let audience = Client::new(&server.server, None).issuer().await?;
            println!(
                "{}",
                dev.mint(&subject, &audience, mandate_server::now(), ttl)
            );
            Ok(())
        }
    }
}
