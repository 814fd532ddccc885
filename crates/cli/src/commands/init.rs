//! `mandate init`.

use mandate_core::ids::TrustDomain;
use mandate_server::{InitOptions, MasterKeySource, initialize, load_master_key};

use super::open_store;
use crate::{CliError, StoreArgs};

#[derive(clap::Args)]
pub struct InitArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// SPIFFE trust domain for agent identities, e.g. acme.example.
    #[arg(long)]
    trust_domain: String,
    /// Issuer URL for tokens Mandate signs (default https://mandate.<trust domain>).
    #[arg(long)]
    issuer: Option<String>,
}

pub async fn run(a: InitArgs) -> Result<(), CliError> {
    let trust_domain = TrustDomain::parse(&a.trust_domain)
        .map_err(|e| CliError::Usage(format!("{e} (e.g. --trust-domain acme.example)")))?;
    let store = open_store(&a.store).await?;
    if store.installation().await?.is_some() {
        return Err(CliError::Usage(format!(
            "{} is already initialised; use it with `mandate serve`, or pick another --data-dir",
            a.store
                .database_url
                .as_deref()
                .map(|_| "this database".to_owned())
                .unwrap_or_else(|| a.store.data_dir.display().to_string())
        )));
    }
    let (master, source) = load_master_key(&a.store.data_dir, true)?;
    let (install, token) = initialize(
        store.as_ref(),
        InitOptions {
            trust_domain,
            issuer: a.issuer,
        },
        &master,
    )
    .await?;
    println!(
        "Initialised Mandate for trust domain {}",
        install.trust_domain
    );
    println!("  issuer:      {}", install.issuer);
    println!("  audit log:   {}", install.log_origin);
    match source {
        MasterKeySource::Env => println!("  master key:  from MANDATE_MASTER_KEY"),
        MasterKeySource::File(p) => println!(
            "  master key:  {} (keep it safe; it unseals the signing key)",
            p.display()
        ),
    }
    println!();
    println!("Admin token (shown once, stored only as a hash):");
    println!("  {}", token.expose());
    println!();
    println!("Next: mandate serve   and   export MANDATE_TOKEN=<the token above>");
    Ok(())
}
