//! The JSON Lines export: one line per entry (with its exact hashed text) or
//! per signed checkpoint, so the file alone is enough to verify offline.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ExportLine {
    Entry {
        index: u64,
        /// Hex leaf hash as stored.
        leaf_hash: String,
        /// The exact entry text that was hashed.
        entry: String,
    },
    Checkpoint {
        /// The signed note, verbatim.
        note: String,
    },
}
