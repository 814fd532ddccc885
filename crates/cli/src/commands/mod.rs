//! One module per top-level command.

pub mod agent;
pub mod approvals;
pub mod audit;
pub mod decide;
pub mod demo;
pub mod gateway;
pub mod human;
pub mod init;
pub mod inventory;
pub mod outcome;
pub mod policy;
pub mod posture;
pub mod review;
pub mod serve;
pub mod task;
pub mod token;
pub mod trust;

use std::sync::Arc;

use mandate_store::{SqlStore, Store};

use crate::{CliError, StoreArgs};

/// Opens the configured store (PostgreSQL when a URL is given, else SQLite).
pub async fn open_store(args: &StoreArgs) -> Result<Arc<dyn Store>, CliError> {
    let store = match &args.database_url {
        Some(url) => SqlStore::connect(url, None).await?,
        None => SqlStore::open_sqlite(&args.data_dir).await?,
    };
    Ok(Arc::new(store))
}
