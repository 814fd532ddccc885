//! What changed between two versions of a policy set, policy by policy.
//!
//! Policies are matched by `@id`, which is why every policy must have one.
//! A policy counts as changed when its meaning or annotations differ
//! (Cedar's JSON form is compared); moving it, re-indenting it or editing
//! comments around it is not a change, so `mandate policy diff` shows what a
//! reviewer has to think about.

use serde::{Deserialize, Serialize};

use crate::policy_set::PolicySet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Added,
    Removed,
    Changed,
}

/// One policy that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyChange {
    pub id: String,
    pub change: Change,
    /// Its text in the old set (absent when added).
    pub old: Option<String>,
    /// Its text in the new set (absent when removed).
    pub new: Option<String>,
}

/// The policies that differ from `old` to `new`, sorted by id. Empty when
/// the sets mean the same thing, even if their texts (and hashes) differ.
pub fn diff(old: &PolicySet, new: &PolicySet) -> Vec<PolicyChange> {
    let mut changes = Vec::new();
    for p in old.policies() {
        match new.policy(&p.id) {
            None => changes.push(PolicyChange {
                id: p.id.clone(),
                change: Change::Removed,
                old: Some(p.text.clone()),
                new: None,
            }),
            Some(q) if q.canonical != p.canonical => changes.push(PolicyChange {
                id: p.id.clone(),
                change: Change::Changed,
                old: Some(p.text.clone()),
                new: Some(q.text.clone()),
            }),
            Some(_) => {}
        }
    }
    for q in new.policies() {
        if old.policy(&q.id).is_none() {
            changes.push(PolicyChange {
                id: q.id.clone(),
                change: Change::Added,
                old: None,
                new: Some(q.text.clone()),
            });
        }
    }
    changes.sort_by(|a, b| a.id.cmp(&b.id));
    changes
}
