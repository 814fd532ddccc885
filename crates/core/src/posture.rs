//! Posture: what an identity team should act on, computed from facts Mandate
//! already holds (the inventory, tasks, break-glass grants, gateway secrets).
//!
//! [`assess`] is a pure function of those facts, the thresholds and `now`,
//! so every finding is reproducible and testable with any clock. Each finding
//! names its evidence, a remediation, its OWASP Non-Human Identities Top 10
//! (2025) id and its NIST CSF 2.0 subcategory. Output as SARIF 2.1.0 for CI
//! pipelines is [`to_sarif`].

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::agent::AgentStatus;
use crate::breakglass::BreakGlass;
use crate::ids::TaskId;
use crate::inventory::InventoryItem;
use crate::review::Review;
use crate::secret::SecretInfo;
use crate::task::{Task, TaskStatus};
use crate::time::Timestamp;

const DAY_MS: i64 = 86_400_000;

/// When a fact becomes a finding. Every threshold can be set per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// An active agent with no activity for this long is dormant.
    pub dormant_days: u32,
    /// Attestation keys older than this should have been rotated.
    pub key_max_age_days: u32,
    /// Gateway secrets not rotated for this long.
    pub secret_max_age_days: u32,
    /// The window over which use is compared with the ceiling.
    pub usage_window_days: u32,
    /// Delegation chains deeper than this (hops below the human).
    pub max_depth: u32,
    /// Tasks that delegated to more subtasks than this.
    pub max_width: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            dormant_days: 30,
            key_max_age_days: 90,
            secret_max_age_days: 90,
            usage_window_days: 30,
            max_depth: 3,
            max_width: 10,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
}

/// The kinds of finding, with their fixed mapping to the standards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    OrphanedAgent,
    DormantAgent,
    StaleKey,
    StaleSecret,
    OverPrivileged,
    #[serde(rename = "unreviewed_breakglass")]
    UnreviewedBreakGlass,
    TaskOpenPastExpiry,
    DeepDelegation,
    WideDelegation,
    DelegationCycle,
    /// An access-review item left undecided past the campaign's deadline.
    ReviewOverdue,
}

impl FindingKind {
    pub const ALL: [FindingKind; 11] = [
        FindingKind::OrphanedAgent,
        FindingKind::DormantAgent,
        FindingKind::StaleKey,
        FindingKind::StaleSecret,
        FindingKind::OverPrivileged,
        FindingKind::UnreviewedBreakGlass,
        FindingKind::TaskOpenPastExpiry,
        FindingKind::DeepDelegation,
        FindingKind::WideDelegation,
        FindingKind::DelegationCycle,
        FindingKind::ReviewOverdue,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::OrphanedAgent => "orphaned_agent",
            FindingKind::DormantAgent => "dormant_agent",
            FindingKind::StaleKey => "stale_key",
            FindingKind::StaleSecret => "stale_secret",
            FindingKind::OverPrivileged => "over_privileged",
            FindingKind::UnreviewedBreakGlass => "unreviewed_breakglass",
            FindingKind::TaskOpenPastExpiry => "task_open_past_expiry",
            FindingKind::DeepDelegation => "deep_delegation",
            FindingKind::WideDelegation => "wide_delegation",
            FindingKind::DelegationCycle => "delegation_cycle",
            FindingKind::ReviewOverdue => "review_overdue",
        }
    }

    /// OWASP Non-Human Identities Top 10 (2025).
    pub fn owasp(self) -> &'static str {
        match self {
            FindingKind::OrphanedAgent | FindingKind::DormantAgent => {
                "NHI1:2025 Improper Offboarding"
            }
            FindingKind::StaleKey | FindingKind::StaleSecret | FindingKind::TaskOpenPastExpiry => {
                "NHI7:2025 Long-Lived Secrets"
            }
            FindingKind::OverPrivileged
            | FindingKind::UnreviewedBreakGlass
            | FindingKind::ReviewOverdue => "NHI5:2025 Overprivileged NHI",
            FindingKind::DeepDelegation
            | FindingKind::WideDelegation
            | FindingKind::DelegationCycle => "NHI9:2025 NHI Reuse",
        }
    }

    /// NIST Cybersecurity Framework 2.0 subcategory.
    pub fn nist(self) -> &'static str {
        match self {
            FindingKind::OrphanedAgent
            | FindingKind::DormantAgent
            | FindingKind::StaleKey
            | FindingKind::StaleSecret
            | FindingKind::TaskOpenPastExpiry => "PR.AA-01",
            FindingKind::OverPrivileged
            | FindingKind::UnreviewedBreakGlass
            | FindingKind::DeepDelegation
            | FindingKind::WideDelegation
            | FindingKind::DelegationCycle
            | FindingKind::ReviewOverdue => "PR.AA-05",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            FindingKind::OrphanedAgent => "Agent without an accountable owner",
            FindingKind::DormantAgent => "Dormant agent",
            FindingKind::StaleKey => "Attestation key past its rotation age",
            FindingKind::StaleSecret => "Gateway secret not rotated",
            FindingKind::OverPrivileged => "Entitlements beyond actual use",
            FindingKind::UnreviewedBreakGlass => "Break-glass grant not reviewed",
            FindingKind::TaskOpenPastExpiry => "Task left open past its expiry",
            FindingKind::DeepDelegation => "Unusually deep delegation",
            FindingKind::WideDelegation => "Unusually wide delegation",
            FindingKind::DelegationCycle => "Agent delegating to itself",
            FindingKind::ReviewOverdue => "Access review not decided by its deadline",
        }
    }

    fn remediation(self) -> &'static str {
        match self {
            FindingKind::OrphanedAgent => {
                "transfer the agent to an active owner (`mandate agent transfer`) or retire it"
            }
            FindingKind::DormantAgent => {
                "confirm with the owner that it is still needed; suspend or retire it"
            }
            FindingKind::StaleKey => {
                "add a new attestation key, move the workload to it, remove the old one"
            }
            FindingKind::StaleSecret => {
                "rotate it with `mandate secret rotate`; agents are not touched"
            }
            FindingKind::OverPrivileged => {
                "reduce the ceiling to what is used, or record why the rest is needed"
            }
            FindingKind::UnreviewedBreakGlass => {
                "have a human review the grant and its decisions (`POST /v1/breakglass/{id}/review`)"
            }
            FindingKind::TaskOpenPastExpiry => {
                "end the task (complete, fail or revoke) so its tree is closed"
            }
            FindingKind::DeepDelegation => {
                "lower the depth the workflow needs, or lower `--max-delegation-depth`"
            }
            FindingKind::WideDelegation => "check why one task fans out to so many subtasks",
            FindingKind::DelegationCycle => {
                "delegate to a different agent, or do the work in the task itself"
            }
            FindingKind::ReviewOverdue => {
                "the owner decides keep, reduce or retire (`mandate review decide`); escalate to their manager"
            }
        }
    }
}

/// One thing to act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Finding {
    pub kind: FindingKind,
    pub severity: Severity,
    pub title: String,
    /// What the finding is about: an agent's name, a secret, a grant or task id.
    pub subject: String,
    /// The facts that produced it.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub evidence: Value,
    pub remediation: String,
    pub owasp: String,
    pub nist: String,
}

fn finding(kind: FindingKind, severity: Severity, subject: String, evidence: Value) -> Finding {
    Finding {
        kind,
        severity,
        title: kind.title().into(),
        subject,
        evidence,
        remediation: kind.remediation().into(),
        owasp: kind.owasp().into(),
        nist: kind.nist().into(),
    }
}

/// The facts posture is computed from.
pub struct Facts<'a> {
    pub inventory: &'a [InventoryItem],
    pub tasks: &'a [Task],
    pub breakglass: &'a [BreakGlass],
    pub secrets: &'a [SecretInfo],
    /// Access reviews not yet complete.
    pub reviews: &'a [Review],
}

impl<'a> Facts<'a> {
    /// The agents alone: what yields the agent-level findings (orphaned,
    /// dormant, stale keys, over-privileged).
    pub fn agents(inventory: &'a [InventoryItem]) -> Self {
        Facts {
            inventory,
            tasks: &[],
            breakglass: &[],
            secrets: &[],
            reviews: &[],
        }
    }
}

fn days(ms: i64) -> i64 {
    ms / DAY_MS
}

/// Every finding, most severe first.
pub fn assess(f: &Facts<'_>, t: &Thresholds, now: Timestamp) -> Vec<Finding> {
    let mut out = Vec::new();
    let age = |ts: Timestamp| now.as_millis() - ts.as_millis();
    let older = |ts: Timestamp, d: u32| age(ts) > i64::from(d) * DAY_MS;
    for item in f.inventory {
        let a = &item.agent;
        if a.status == AgentStatus::Retired {
            continue;
        }
        let name = a.name.to_string();
        if a.orphaned {
            out.push(finding(
                FindingKind::OrphanedAgent,
                Severity::High,
                name.clone(),
                json!({ "agent": a.id, "owner": a.owner, "live_tasks": item.live_tasks }),
            ));
        }
        let last = item.last_activity.unwrap_or(a.created_at);
        if a.status == AgentStatus::Active && older(last, t.dormant_days) {
            out.push(finding(
                FindingKind::DormantAgent,
                Severity::Medium,
                name.clone(),
                json!({ "agent": a.id, "last_activity": item.last_activity, "idle_days": days(age(last)) }),
            ));
        }
        for k in a
            .keys
            .iter()
            .filter(|k| older(k.created_at, t.key_max_age_days))
        {
            out.push(finding(
                FindingKind::StaleKey,
                Severity::Medium,
                name.clone(),
                json!({ "agent": a.id, "kid": k.kid, "created_at": k.created_at, "age_days": days(age(k.created_at)) }),
            ));
        }
        let since = now.plus_millis(-i64::from(t.usage_window_days) * DAY_MS);
        let grants: Vec<_> = a.ceiling.grants().collect();
        let unused: Vec<String> = item
            .ceiling_use(since)
            .unused
            .iter()
            .map(ToString::to_string)
            .collect();
        if !unused.is_empty() && a.status == AgentStatus::Active {
            let share = unused.len() as f64 / grants.len() as f64;
            out.push(finding(
                FindingKind::OverPrivileged,
                if share >= 0.5 {
                    Severity::High
                } else {
                    Severity::Medium
                },
                name,
                json!({
                    "agent": a.id, "window_days": t.usage_window_days,
                    "ceiling": grants.iter().map(|g| g.to_string()).collect::<Vec<_>>(),
                    "unused": unused, "unused_share": (share * 100.0).round() / 100.0,
                }),
            ));
        }
    }
    for s in f
        .secrets
        .iter()
        .filter(|s| older(s.rotated_at, t.secret_max_age_days))
    {
        out.push(finding(
            FindingKind::StaleSecret,
            Severity::Medium,
            s.name.to_string(),
            json!({ "version": s.version, "rotated_at": s.rotated_at, "age_days": days(age(s.rotated_at)) }),
        ));
    }
    for g in f.breakglass.iter().filter(|g| g.reviewed_at.is_none()) {
        out.push(finding(
            FindingKind::UnreviewedBreakGlass,
            Severity::High,
            g.id.to_string(),
            json!({ "agent": g.agent, "reason": g.reason, "granted_at": g.granted_at, "expires_at": g.expires_at }),
        ));
    }
    for r in f.reviews {
        for i in r.overdue(now) {
            out.push(finding(
                FindingKind::ReviewOverdue,
                Severity::High,
                i.name.to_string(),
                json!({ "review": r.id, "agent": i.agent, "owner": r.owner, "deadline": r.deadline,
                        "overdue_days": days(age(r.deadline)), "unused": i.unused.iter().map(ToString::to_string).collect::<Vec<_>>() }),
            ));
        }
    }
    delegation(f.tasks, t, now, &mut out);
    out.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.kind.cmp(&b.kind))
            .then(a.subject.cmp(&b.subject))
    });
    out
}

fn delegation(tasks: &[Task], t: &Thresholds, now: Timestamp, out: &mut Vec<Finding>) {
    let by_id: HashMap<TaskId, &Task> = tasks.iter().map(|t| (t.id, t)).collect();
    let mut children: BTreeMap<TaskId, u32> = BTreeMap::new();
    for task in tasks {
        if let Some(p) = task.parent {
            *children.entry(p).or_default() += 1;
        }
        if task.status == TaskStatus::Open && task.expires_at <= now {
            out.push(finding(
                FindingKind::TaskOpenPastExpiry,
                Severity::Low,
                task.id.to_string(),
                json!({ "agent": task.assignee, "expires_at": task.expires_at, "purpose": task.purpose }),
            ));
        }
        if task.depth > t.max_depth {
            out.push(finding(
                FindingKind::DeepDelegation,
                Severity::Medium,
                task.id.to_string(),
                json!({ "root": task.root, "depth": task.depth, "max_depth": t.max_depth }),
            ));
        }
        // The same agent further up its own chain: it delegated to itself.
        let mut up = task.parent.and_then(|p| by_id.get(&p));
        while let Some(p) = up {
            if p.assignee == task.assignee {
                out.push(finding(
                    FindingKind::DelegationCycle,
                    Severity::Medium,
                    task.id.to_string(),
                    json!({ "agent": task.assignee, "ancestor_task": p.id, "root": task.root }),
                ));
                break;
            }
            up = p.parent.and_then(|q| by_id.get(&q));
        }
    }
    for (parent, n) in children.into_iter().filter(|(_, n)| *n > t.max_width) {
        out.push(finding(
            FindingKind::WideDelegation,
            Severity::Low,
            parent.to_string(),
            json!({ "subtasks": n, "max_width": t.max_width }),
        ));
    }
}

/// Findings as a SARIF 2.1.0 log, one rule per kind.
pub fn to_sarif(findings: &[Finding]) -> Value {
    let rules: Vec<Value> = FindingKind::ALL
        .iter()
        .map(|k| {
            json!({
                "id": k.as_str(), "name": k.title(),
                "shortDescription": { "text": k.title() },
                "help": { "text": k.remediation() },
                "properties": { "owasp-nhi": k.owasp(), "nist-csf": k.nist() },
            })
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            json!({
                "ruleId": f.kind.as_str(),
                "level": match f.severity { Severity::High => "error", Severity::Medium => "warning", Severity::Low => "note" },
                "message": { "text": format!("{}: {}", f.title, f.subject) },
                "locations": [{ "logicalLocations": [{ "name": f.subject, "kind": "resource" }] }],
                "properties": { "evidence": f.evidence, "remediation": f.remediation },
            })
        })
        .collect();
    json!({
        "version": "2.1.0",
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": [{ "tool": { "driver": { "name": "mandate-posture", "rules": rules } }, "results": results }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_maps_to_an_owasp_id_and_a_nist_subcategory_and_a_sarif_rule() {
        let sarif = to_sarif(&[]);
        let rules = sarif["runs"][0]["tool"]["driver"]["rules"]
            .as_array()
            .unwrap();
        assert_eq!(rules.len(), FindingKind::ALL.len());
        for k in FindingKind::ALL {
            assert!(
                k.owasp().starts_with("NHI") && k.owasp().contains(":2025 "),
                "{k:?}"
            );
            assert!(k.nist().starts_with("PR.AA-0"), "{k:?}");
            assert!(rules.iter().any(|r| r["id"] == k.as_str()));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }

    #[test]
    fn nothing_to_assess_is_no_finding() {
        let facts = Facts {
            inventory: &[],
            tasks: &[],
            breakglass: &[],
            secrets: &[],
            reviews: &[],
        };
        assert!(assess(&facts, &Thresholds::default(), Timestamp::from_millis(0)).is_empty());
    }
}
