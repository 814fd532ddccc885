//! `mandate init`: the installation record, the first admin credential, the
//! server signing key, and the master key that seals it.

use std::io::Write;
use std::path::{Path, PathBuf};

use mandate_core::admin::AdminToken;
use mandate_core::ids::{AdminCredentialId, TrustDomain};
use mandate_core::sealed::MasterKey;
use mandate_store::{Installation, Store};

use crate::StartError;

/// Environment variable holding the master key (unpadded base64url, 32 bytes).
pub const MASTER_KEY_VAR: &str = "MANDATE_MASTER_KEY";
const MASTER_KEY_FILE: &str = "master.key";

pub struct InitOptions {
    pub trust_domain: TrustDomain,
    /// The `iss` of tokens Mandate will sign; defaults to `https://mandate.<trust domain>`.
    pub issuer: Option<String>,
}

/// Where the master key came from (for the operator's information).
#[derive(Debug, Clone)]
pub enum MasterKeySource {
    Env,
    File(PathBuf),
}

pub fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the operating system's random source failed");
    b
}

pub fn new_uuid() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}

/// Reads the master key from `MANDATE_MASTER_KEY` or `<data-dir>/master.key`;
/// with `create`, makes a new key file (mode 0600) when neither exists.
pub fn load_master_key(
    data_dir: &Path,
    create: bool,
) -> Result<(MasterKey, MasterKeySource), StartError> {
    if let Ok(v) = std::env::var(MASTER_KEY_VAR) {
        let key = MasterKey::parse(&v)
            .map_err(|e| StartError::MasterKey(format!("{MASTER_KEY_VAR}: {e}")))?;
        return Ok((key, MasterKeySource::Env));
    }
    let path = data_dir.join(MASTER_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let key = MasterKey::parse(&text)
                .map_err(|e| StartError::MasterKey(format!("{}: {e}", path.display())))?;
            Ok((key, MasterKeySource::File(path)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let key = MasterKey::from_bytes(random());
            std::fs::create_dir_all(data_dir).map_err(|e| StartError::MasterKey(e.to_string()))?;
            write_private(&path, &key.encode())
                .map_err(|e| StartError::MasterKey(format!("{}: {e}", path.display())))?;
            Ok((key, MasterKeySource::File(path)))
        }
        Err(e) => Err(StartError::MasterKey(format!(
            "cannot read {}: {e} (set {MASTER_KEY_VAR} or point --data-dir at the directory made by `mandate init`)",
            path.display()
        ))),
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(text.as_bytes())
}

/// Initialises an empty store and returns the first admin token, which is
/// stored only as a hash. Refused (and nothing written) if already initialised.
pub async fn initialize(
    store: &dyn Store,
    opts: InitOptions,
    master: &MasterKey,
) -> Result<(Installation, AdminToken), StartError> {
    let td = opts.trust_domain;
    let install = Installation {
        issuer: opts
            .issuer
            .unwrap_or_else(|| format!("https://mandate.{td}")),
        log_origin: format!("{td}/mandate/audit"),
        trust_domain: td,
        created_at: crate::now(),
    };
    let token = AdminToken::from_parts(AdminCredentialId::from_uuid(new_uuid()), random());
    let key = crate::keyring::new_signing_key(master, install.created_at);
    store
        .initialize(&install, (token.id(), token.hash()), &key)
        .await?;
    Ok((install, token))
}
