//! HTTP handlers, one module per resource.

pub mod agents;
pub mod approvals;
pub mod audit;
pub mod breakglass;
pub mod decisions;
pub mod evidence;
pub mod humans;
pub mod keys;
pub mod oauth;
pub mod operations;
pub mod outcomes;
pub mod policies;
pub mod posture;
pub mod reviews;
pub mod secrets;
pub mod tasks;

use serde::{Deserialize, Serialize};

/// One page of a listing.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

impl<T> From<mandate_store::Page<T>> for Page<T> {
    fn from(p: mandate_store::Page<T>) -> Self {
        Page {
            items: p.items,
            next: p.next,
        }
    }
}
