//! Attenuation: what a new task may be granted, from a human or from a parent task.
//!
//! The rules, each with its own refusal: the assignee must be an active agent
//! with an accountable owner; the scope must lie inside the assignee's
//! entitlement ceiling and, for a delegation, inside the parent's scope; the
//! limits may only tighten; the depth may not exceed the cap; the expiry is
//! capped by the maximum TTL and, for a delegation, by the parent's expiry.

use crate::agent::{Agent, AgentStatus};
use crate::scope::Scope;
use crate::task::{Limits, Task};
use crate::time::Timestamp;

/// What the requester asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRequest {
    pub purpose: String,
    pub scope: Scope,
    pub limits: Limits,
    /// Requested lifetime in milliseconds; `None` means the maximum.
    pub ttl_ms: Option<i64>,
}

/// Installation-wide bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub max_ttl_ms: i64,
    /// Deepest allowed delegation (a human-started task has depth 0).
    pub max_depth: u32,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            max_ttl_ms: 3_600_000,
            max_depth: 4,
        }
    }
}

/// What is granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub scope: Scope,
    pub limits: Limits,
    pub expires_at: Timestamp,
    pub depth: u32,
}

/// Why a request was refused, in RFC 6749 error terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DelegationError {
    /// The requested scope is wider than allowed (`invalid_scope`).
    #[error("{0}")]
    InvalidScope(String),
    /// Anything else about the request is unacceptable (`invalid_request`).
    #[error("{0}")]
    InvalidRequest(String),
}

impl DelegationError {
    pub fn oauth_code(&self) -> &'static str {
        match self {
            DelegationError::InvalidScope(_) => "invalid_scope",
            DelegationError::InvalidRequest(_) => "invalid_request",
        }
    }
}

fn check_request(req: &TaskRequest, agent: &Agent) -> Result<(), DelegationError> {
    let purpose = req.purpose.trim();
    if purpose.is_empty() || req.purpose.len() > 500 || req.purpose.chars().any(char::is_control) {
        return Err(DelegationError::InvalidRequest(
            "a task needs a purpose of 1 to 500 printable characters".into(),
        ));
    }
    if req.scope.is_empty() {
        return Err(DelegationError::InvalidScope(
            "the task requests no actions".into(),
        ));
    }
    if matches!(req.ttl_ms, Some(t) if t <= 0) {
        return Err(DelegationError::InvalidRequest(
            "the requested TTL must be positive".into(),
        ));
    }
    if agent.status != AgentStatus::Active {
        return Err(DelegationError::InvalidRequest(format!(
            "agent {} is {}",
            agent.spiffe_id,
            agent.status.as_str()
        )));
    }
    if agent.orphaned {
        return Err(DelegationError::InvalidRequest(format!(
            "agent {} is orphaned (its owner is deactivated); transfer it first",
            agent.spiffe_id
        )));
    }
    if let Err(g) = req.scope.check_within(&agent.ceiling) {
        return Err(DelegationError::InvalidScope(format!(
            "{g} is outside the entitlement ceiling of {}",
            agent.spiffe_id
        )));
    }
    Ok(())
}

fn expiry(req: &TaskRequest, now: Timestamp, bounds: Bounds) -> Timestamp {
    let ttl = req
        .ttl_ms
        .unwrap_or(bounds.max_ttl_ms)
        .min(bounds.max_ttl_ms);
    Timestamp::from_millis(now.as_millis().saturating_add(ttl))
}

/// A task a human starts for `agent`.
pub fn grant_root(
    req: &TaskRequest,
    agent: &Agent,
    now: Timestamp,
    bounds: Bounds,
) -> Result<Granted, DelegationError> {
    check_request(req, agent)?;
    Ok(Granted {
        scope: req.scope.clone(),
        limits: req.limits.clone(),
        expires_at: expiry(req, now, bounds),
        depth: 0,
    })
}

/// A child of `parent` for `agent`: never wider, never longer, never deeper than allowed.
pub fn grant_child(
    parent: &Task,
    req: &TaskRequest,
    agent: &Agent,
    now: Timestamp,
    bounds: Bounds,
) -> Result<Granted, DelegationError> {
    if !parent.is_live(now) {
        return Err(DelegationError::InvalidRequest(format!(
            "the parent task {} is {}",
            parent.id,
            parent.status_at(now).as_str()
        )));
    }
    let depth = parent.depth + 1;
    if depth > bounds.max_depth {
        return Err(DelegationError::InvalidRequest(format!(
            "delegation depth {depth} exceeds the limit of {}",
            bounds.max_depth
        )));
    }
    if let Err(g) = req.scope.check_within(&parent.scope) {
        return Err(DelegationError::InvalidScope(format!(
            "{g} is outside the parent task's scope"
        )));
    }
    check_request(req, agent)?;
    if let Some(why) = req.limits.looser_than(&parent.limits) {
        return Err(DelegationError::InvalidScope(why));
    }
    let expires_at = expiry(req, now, bounds).min(parent.expires_at);
    Ok(Granted {
        scope: req.scope.clone(),
        limits: req.limits.clone(),
        expires_at,
        depth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::AgentKind;
    use crate::ids::{AgentId, AgentName, HumanId, SpiffeId, TaskId, TrustDomain};
    use crate::scope::Grant;
    use crate::task::TaskStatus;
    use proptest::prelude::*;
    use uuid::Uuid;

    fn agent(ceiling: Scope) -> Agent {
        let name = AgentName::parse("worker").unwrap();
        Agent {
            id: AgentId::from_uuid(Uuid::from_u128(1)),
            spiffe_id: SpiffeId::for_agent(
                &TrustDomain::parse("t.example").unwrap(),
                AgentKind::Agent,
                &name,
            ),
            name,
            kind: AgentKind::Agent,
            owner: HumanId::from_uuid(Uuid::from_u128(2)),
            orphaned: false,
            description: "w".into(),
            ceiling,
            keys: vec![],
            tools: vec![],
            data_sources: vec![],
            tags: Default::default(),
            status: AgentStatus::Active,
            created_at: Timestamp::from_millis(0),
            updated_at: Timestamp::from_millis(0),
        }
    }

    fn parent(scope: Scope, expires: i64, depth: u32, limits: Limits) -> Task {
        let a = agent(Scope::empty());
        Task {
            id: TaskId::from_uuid(Uuid::from_u128(3)),
            parent: None,
            root: TaskId::from_uuid(Uuid::from_u128(3)),
            depth,
            purpose: "p".into(),
            initiator: a.owner,
            assignee: a.id,
            assignee_spiffe: a.spiffe_id,
            delegator: None,
            scope,
            limits,
            expires_at: Timestamp::from_millis(expires),
            status: TaskStatus::Open,
            created_at: Timestamp::from_millis(0),
            ended_at: None,
            end_reason: None,
        }
    }

    fn scope(grants: &[(&str, &str)]) -> Scope {
        Scope::new(grants.iter().map(|(a, r)| Grant::new(a, r).unwrap())).unwrap()
    }

    fn req(s: Scope, ttl: Option<i64>) -> TaskRequest {
        TaskRequest {
            purpose: "buy laptops".into(),
            scope: s,
            limits: Limits::default(),
            ttl_ms: ttl,
        }
    }

    const NOW: Timestamp = Timestamp::from_millis(1_000_000);

    #[test]
    fn refusals_name_the_offending_grant() {
        let p = parent(
            scope(&[("po.read", "erp:*")]),
            2_000_000,
            0,
            Limits::default(),
        );
        let a = agent(scope(&[("*", "*")]));
        let err = grant_child(
            &p,
            &req(scope(&[("po.read", "erp:a"), ("po.pay", "bank:x")]), None),
            &a,
            NOW,
            Bounds::default(),
        )
        .unwrap_err();
        assert_eq!(err.oauth_code(), "invalid_scope");
        assert!(err.to_string().contains("po.pay on bank:x"), "{err}");
        let narrow_ceiling = agent(scope(&[("po.read", "erp:a")]));
        let err = grant_child(
            &p,
            &req(scope(&[("po.read", "erp:b")]), None),
            &narrow_ceiling,
            NOW,
            Bounds::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("ceiling"), "{err}");
    }

    #[test]
    fn depth_expiry_status_and_limits_are_enforced() {
        let a = agent(scope(&[("*", "*")]));
        let s = scope(&[("x", "y")]);
        let deep = parent(s.clone(), 2_000_000, 4, Limits::default());
        assert!(grant_child(&deep, &req(s.clone(), None), &a, NOW, Bounds::default()).is_err());
        let p = parent(
            s.clone(),
            1_500_000,
            0,
            Limits {
                max_calls: Some(5),
                budget: None,
            },
        );
        let loose = TaskRequest {
            limits: Limits {
                max_calls: Some(6),
                budget: None,
            },
            ..req(s.clone(), None)
        };
        assert!(grant_child(&p, &loose, &a, NOW, Bounds::default()).is_err());
        let ok = TaskRequest {
            limits: Limits {
                max_calls: Some(5),
                budget: None,
            },
            ..req(s.clone(), Some(10_000_000))
        };
        assert_eq!(
            grant_child(&p, &ok, &a, NOW, Bounds::default())
                .unwrap()
                .expires_at,
            Timestamp::from_millis(1_500_000)
        );
        let expired = parent(s.clone(), 900_000, 0, Limits::default());
        assert!(grant_child(&expired, &req(s.clone(), None), &a, NOW, Bounds::default()).is_err());
        let mut revoked = parent(s.clone(), 2_000_000, 0, Limits::default());
        revoked.status = TaskStatus::Revoked;
        assert!(grant_child(&revoked, &req(s.clone(), None), &a, NOW, Bounds::default()).is_err());
        let mut suspended = a.clone();
        suspended.status = AgentStatus::Suspended;
        assert!(grant_root(&req(s.clone(), None), &suspended, NOW, Bounds::default()).is_err());
        let mut orphan = a;
        orphan.orphaned = true;
        assert!(grant_root(&req(s, None), &orphan, NOW, Bounds::default()).is_err());
    }

    fn pattern() -> impl Strategy<Value = String> {
        ("[ab.]{0,3}", any::<bool>()).prop_map(|(s, star)| {
            if star {
                format!("{s}*")
            } else if s.is_empty() {
                "a".into()
            } else {
                s
            }
        })
    }

    fn scopes() -> impl Strategy<Value = Scope> {
        proptest::collection::vec((pattern(), pattern()), 1..4)
            .prop_map(|v| Scope::new(v.iter().map(|(a, r)| Grant::new(a, r).unwrap())).unwrap())
    }

    proptest! {
        /// For random scopes, ceilings, chains and TTLs: whatever is granted
        /// allows nothing the parent or the ceiling would not, and never
        /// outlives the parent.
        #[test]
        fn a_granted_child_is_never_wider_or_longer(
            chain in proptest::collection::vec((scopes(), scopes(), 0i64..5_000_000), 1..5),
            probe_a in "[ab.]{0,4}", probe_r in "[ab.]{0,4}",
        ) {
            let root_scope = chain[0].0.clone();
            let mut current = parent(root_scope, 4_000_000, 0, Limits { max_calls: Some(100), budget: None });
            for (requested, ceiling, ttl) in chain.into_iter().skip(1) {
                let a = agent(ceiling.clone());
                let r = TaskRequest { purpose: "p".into(), scope: requested, limits: Limits { max_calls: Some(50), budget: None }, ttl_ms: Some(ttl.max(1)) };
                if let Ok(g) = grant_child(&current, &r, &a, NOW, Bounds::default()) {
                    if g.scope.allows(&probe_a, &probe_r) {
                        prop_assert!(current.scope.allows(&probe_a, &probe_r), "wider than parent");
                        prop_assert!(ceiling.allows(&probe_a, &probe_r), "wider than ceiling");
                    }
                    prop_assert!(g.expires_at <= current.expires_at);
                    prop_assert!(g.limits.within(&current.limits));
                    prop_assert!(g.depth == current.depth + 1 && g.depth <= Bounds::default().max_depth);
                    let mut next = parent(g.scope, g.expires_at.as_millis(), g.depth, g.limits);
                    next.id = TaskId::from_uuid(Uuid::from_u128(g.depth as u128 + 10));
                    current = next;
                }
            }
        }
    }
}
