//! Decisions: allow, deny, needs_approval and default deny, with reasons.

mod common;

use common::{ALICE, BOB, DEFAULT, agent, human, request, set};
use mandate_core::ids::TaskId;
use mandate_policy::{ApprovalState, Decision, Effect, Evaluation, Role, evaluate};

fn ids(e: &Evaluation) -> Vec<&str> {
    e.reasons.iter().map(|r| r.policy_id.as_str()).collect()
}

const LOW_RISK: &str = r#"
@id("low-risk")
@reason("low-risk work inside the task scope")
permit (principal, action, resource) when { context.risk_score < 50 };
"#;

#[test]
fn a_satisfied_permit_allows_with_its_id_and_annotations() {
    let s = set(LOW_RISK);
    let e = evaluate(&s, &request("invoice.read"));
    assert_eq!(e.decision, Decision::Allow);
    assert_eq!(ids(&e), ["low-risk"]);
    let r = &e.reasons[0];
    assert_eq!((r.effect, r.role), (Effect::Permit, Role::Permitted));
    assert_eq!(
        r.annotations["reason"],
        "low-risk work inside the task scope"
    );
    assert_eq!(r.annotations["id"], "low-risk");
    assert!(e.errors.is_empty());
}

#[test]
fn nothing_permits_means_deny_by_default() {
    let mut r = request("invoice.read");
    assert!(evaluate(&set(""), &r).is_default_deny());
    r.context.risk_score = 80;
    let e = evaluate(&set(LOW_RISK), &r);
    assert!(e.is_default_deny(), "{e:?}");
    // A forbid-only set denies everything, by default where nothing matches.
    let forbids =
        set("@id(\"f\")\nforbid (principal, action, resource) when { context.hour < 6 };");
    assert!(evaluate(&forbids, &request("invoice.read")).is_default_deny());
}

#[test]
fn a_satisfied_forbid_overrides_every_permit() {
    let s = set(&format!(
        "{LOW_RISK}\n@id(\"everything\")\npermit (principal, action, resource);\n@id(\"no-prod\")\n@reason(\"not in prod\")\nforbid (principal, action, resource) when {{ context.environment == \"prod\" }};"
    ));
    assert_eq!(
        evaluate(&s, &request("invoice.read")).decision,
        Decision::Allow
    );
    let mut r = request("invoice.read");
    r.context.environment = "prod".into();
    let e = evaluate(&s, &r);
    assert_eq!(e.decision, Decision::Deny);
    assert_eq!(ids(&e), ["no-prod"]);
    assert_eq!(e.reasons[0].role, Role::Forbidden);
    assert_eq!(e.reasons[0].annotations["reason"], "not in prod");
}

#[test]
fn an_approval_gate_needs_approval_then_allows_once_approved() {
    let s = set(DEFAULT);
    let mut r = request("payments.initiate");
    r.context.amount = Some(250_000);
    let e = evaluate(&s, &r);
    assert_eq!(e.decision, Decision::Allow);
    assert_eq!(ids(&e), ["in-scope"]);

    r.context.amount = Some(2_500_000);
    let e = evaluate(&s, &r);
    assert_eq!(e.decision, Decision::NeedsApproval);
    assert_eq!(ids(&e), ["large-payment"]);
    assert_eq!(e.reasons[0].role, Role::ApprovalRequired);
    assert_eq!(e.reasons[0].annotations["approval"], "required");

    r.context.approval = ApprovalState::Approved;
    let e = evaluate(&s, &r);
    assert_eq!(e.decision, Decision::Allow);
    assert_eq!(ids(&e), ["in-scope", "large-payment"]);
    assert_eq!(e.reasons[1].role, Role::ApprovalGranted);

    r.context.approval = ApprovalState::Denied;
    let e = evaluate(&s, &r);
    assert_eq!(e.decision, Decision::Deny);
    assert_eq!(e.reasons[0].role, Role::ApprovalDenied);
}

#[test]
fn an_approval_cannot_lift_a_plain_forbid_nor_stand_in_for_a_permit() {
    let s = set(DEFAULT);
    // Not tagged finance: the plain forbid wins, approved or not.
    let mut r = request("payments.initiate");
    r.agent = agent("helper", &[]);
    r.context.amount = Some(2_500_000);
    for approval in [ApprovalState::None, ApprovalState::Approved] {
        r.context.approval = approval;
        let e = evaluate(&s, &r);
        assert_eq!(e.decision, Decision::Deny);
        assert_eq!(ids(&e), ["payments-finance-only"]);
    }
    // Critical risk: no permit, so asking a human is pointless.
    let mut r = request("invoice.read");
    r.context.risk_score = 95;
    let e = evaluate(&s, &r);
    assert!(e.is_default_deny(), "{e:?}");
    r.context.approval = ApprovalState::Approved;
    assert!(evaluate(&s, &r).is_default_deny());
}

#[test]
fn the_example_policy_set_covers_risk_data_depth_and_environment() {
    let s = set(DEFAULT);
    let mut r = request("invoice.read");
    r.context.risk_score = 65;
    let e = evaluate(&s, &r);
    assert_eq!(e.decision, Decision::NeedsApproval);
    assert_eq!(ids(&e), ["elevated-risk"]);

    let mut r = request("invoice.read");
    r.resource.sensitivity = "confidential".into();
    assert_eq!(ids(&evaluate(&s, &r)), ["confidential-needs-clearance"]);
    r.agent = agent("billing", &["finance", "cleared"]);
    assert_eq!(evaluate(&s, &r).decision, Decision::Allow);

    let mut r = request("invoice.read");
    r.delegators = vec![
        agent("a", &[]),
        agent("b", &[]),
        agent("c", &[]),
        agent("d", &[]),
    ];
    assert_eq!(ids(&evaluate(&s, &r)), ["delegation-depth"]);
    r.delegators.pop();
    assert_eq!(evaluate(&s, &r).decision, Decision::Allow);

    let mut r = request("records.delete");
    assert_eq!(evaluate(&s, &r).decision, Decision::Allow);
    r.context.environment = "prod".into();
    assert_eq!(ids(&evaluate(&s, &r)), ["prod-deletes"]);
}

#[test]
fn groups_cover_named_and_unnamed_actions_by_prefix() {
    let s = set(r#"
@id("all") permit (principal, action, resource);
@id("payments") forbid (principal, action in Mandate::Action::"payments.*", resource) when { context.environment == "prod" };
@id("refund") forbid (principal, action == Mandate::Action::"payments.refund", resource) when { context.risk_score > 30 };
@id("group-itself") forbid (principal, action == Mandate::Action::"payments.*", resource);
"#);
    let mut r = request("payments.initiate");
    assert_eq!(evaluate(&s, &r).decision, Decision::Allow);
    r.context.environment = "prod".into();
    assert_eq!(ids(&evaluate(&s, &r)), ["payments"]);
    // No policy names payments.capture: it is reached through the group.
    r.action = "payments.capture".into();
    assert_eq!(ids(&evaluate(&s, &r)), ["payments"]);
    r.action = "invoice.read".into();
    assert_eq!(evaluate(&s, &r).decision, Decision::Allow);
    let mut r = request("payments.refund");
    r.context.risk_score = 40;
    assert_eq!(ids(&evaluate(&s, &r)), ["refund"]);
    r.context.environment = "prod".into();
    assert_eq!(ids(&evaluate(&s, &r)), ["payments", "refund"]);
    // "*" is the group of every action.
    let star = set("@id(\"any\") permit (principal, action in Mandate::Action::\"*\", resource);");
    assert_eq!(
        evaluate(&star, &request("mail.send")).decision,
        Decision::Allow
    );
}

#[test]
fn every_context_field_and_entity_reaches_policies() {
    let policy = format!(
        r#"
@id("all-facts")
permit (principal, action == Mandate::Action::"tickets.update", resource in Mandate::Environment::"staging")
when {{
  context has tool && context.tool == "jira" && resource in Mandate::Tool::"jira" &&
  context.environment == "staging" && context.data_sensitivity == "internal" &&
  context.time == {time} && context.hour == 14 && context.risk_score == 10 &&
  context.purpose == "pay supplier invoices" && context.chain_depth == 1 &&
  context.chain.contains("spiffe://acme.example/agent/orchestrator") &&
  context.chain.contains("spiffe://acme.example/agent/billing") &&
  context.approval == "none" && !(context has amount) &&
  context.task.purpose == "pay supplier invoices" && context.task.depth == 1 &&
  context.task.initiator == Mandate::Human::"{alice}" && context.initiator == Mandate::Human::"{alice}" &&
  principal == Mandate::Agent::"spiffe://acme.example/agent/billing" &&
  principal.kind == "agent" && principal.owner == Mandate::Human::"{bob}" &&
  principal.spiffe_id like "spiffe://acme.example/*" && principal.tags.contains("finance") &&
  Mandate::Agent::"spiffe://acme.example/agent/orchestrator".tags.contains("router") &&
  resource.path like "erp:invoices/*" && resource.sensitivity == "internal" &&
  resource.labels.contains("pii")
}};
"#,
        time = common::NOON_ISH,
        alice = ALICE,
        bob = BOB,
    );
    let s = set(&policy);
    let mut r = request("tickets.update");
    r.delegators = vec![agent("orchestrator", &["router"])];
    r.task.depth = 1;
    r.context.tool = Some("jira".into());
    r.resource.labels.insert("pii".into());
    let e = evaluate(&s, &r);
    assert_eq!(e.decision, Decision::Allow, "{e:?}");
    assert!(e.errors.is_empty(), "{e:?}");

    // Each fact matters: change one and the permit no longer holds.
    let mut other = r.clone();
    other.context.tool = Some("github".into());
    assert!(evaluate(&s, &other).is_default_deny());
    let mut other = r.clone();
    other.initiator = human(BOB);
    assert!(evaluate(&s, &other).is_default_deny());
    let mut other = r.clone();
    other.context.environment = "prod".into();
    assert!(evaluate(&s, &other).is_default_deny());
}

#[test]
fn a_forbid_that_fails_to_evaluate_denies_and_a_failing_permit_does_not_allow() {
    // Overflows for any risk score above 1.
    let overflow = "context.risk_score * 9223372036854775807 > 0";
    let s = set(&format!(
        "@id(\"all\") permit (principal, action, resource);\n@id(\"broken\") forbid (principal, action, resource) when {{ {overflow} }};"
    ));
    let e = evaluate(&s, &request("invoice.read"));
    assert_eq!(e.decision, Decision::Deny);
    assert_eq!(ids(&e), ["broken"]);
    assert_eq!(e.errors.len(), 1);
    assert_eq!(e.errors[0].policy_id.as_deref(), Some("broken"));

    let s = set(&format!(
        "@id(\"broken\") permit (principal, action, resource) when {{ {overflow} }};"
    ));
    let e = evaluate(&s, &request("invoice.read"));
    assert!(e.is_default_deny());
    assert_eq!(e.errors.len(), 1);
}

#[test]
fn requests_for_malformed_actions_are_denied_with_an_error() {
    let s = set("@id(\"all\") permit (principal, action, resource);");
    for action in ["", "payments.*", "*", "Payments.Initiate", "pay now"] {
        let e = evaluate(&s, &request(action));
        assert_eq!(e.decision, Decision::Deny, "{action:?}");
        assert_eq!(e.errors.len(), 1, "{action:?}");
    }
}

#[test]
fn risk_scores_above_100_count_as_100() {
    let s = set(
        "@id(\"all\") permit (principal, action, resource);\n@id(\"max\") forbid (principal, action, resource) when { context.risk_score == 100 };",
    );
    let mut r = request("invoice.read");
    r.context.risk_score = 250;
    assert_eq!(ids(&evaluate(&s, &r)), ["max"]);
}

#[test]
fn evaluations_serialise_with_snake_case_names() {
    let s = set(DEFAULT);
    let mut r = request("invoice.read");
    r.context.risk_score = 65;
    let json = serde_json::to_value(evaluate(&s, &r)).unwrap();
    assert_eq!(json["decision"], "needs_approval");
    assert_eq!(json["reasons"][0]["role"], "approval_required");
    assert_eq!(json["reasons"][0]["policy_id"], "elevated-risk");
}

/// Entities that stay the same over a task's calls are cached per thread,
/// keyed by the facts themselves: any changed fact under the same task id
/// (a tag, the owner, the purpose, the depth, the initiator, a delegator)
/// is decided on the new facts, never on what was cached.
#[test]
fn cached_task_entities_never_outlive_a_changed_fact() {
    let s = set(&format!(
        r#"
@id("finance-only")
permit (principal, action, resource) when {{
  principal.tags.contains("finance") && principal.owner == Mandate::Human::"{BOB}" &&
  context.task.purpose == "pay supplier invoices" && context.task.depth == 0 &&
  context.task.initiator == Mandate::Human::"{ALICE}"
}};
"#
    ));
    let base = request("invoice.read");
    assert_eq!(evaluate(&s, &base).decision, Decision::Allow);
    // The same task id each time; one fact changed at a time.
    let mut untagged = base.clone();
    untagged.agent.tags.clear();
    let mut reowned = base.clone();
    reowned.agent.owner = human(ALICE);
    let mut repurposed = base.clone();
    repurposed.task.purpose = "something else".into();
    let mut deeper = base.clone();
    deeper.task.depth = 1;
    let mut other_initiator = base.clone();
    other_initiator.initiator = human(BOB);
    for (what, r) in [
        ("tags", &untagged),
        ("owner", &reowned),
        ("purpose", &repurposed),
        ("depth", &deeper),
        ("initiator", &other_initiator),
    ] {
        // Warm the cache with the allowed facts first, then change one.
        assert_eq!(evaluate(&s, &base).decision, Decision::Allow);
        assert!(
            evaluate(&s, r).is_default_deny(),
            "changed {what} was not seen"
        );
    }
    // Agents' entities are also kept across tasks: a new task of the same
    // agent reuses it, and a new task of the agent with changed tags or owner
    // does not.
    for (what, changed) in [("tags", &untagged), ("owner", &reowned)] {
        let mut fresh = base.clone();
        fresh.task.id = TaskId::from_uuid(uuid::Uuid::now_v7());
        assert_eq!(evaluate(&s, &fresh).decision, Decision::Allow);
        let mut fresh_changed = (*changed).clone();
        fresh_changed.task.id = TaskId::from_uuid(uuid::Uuid::now_v7());
        assert!(
            evaluate(&s, &fresh_changed).is_default_deny(),
            "changed {what} was not seen on a new task"
        );
    }
    // A delegator added in front changes the chain, and the entity set:
    // a policy on the first delegator's tags sees it.
    let on_root = set(r#"
@id("root-is-router")
permit (principal, action, resource) when {
  Mandate::Agent::"spiffe://acme.example/agent/orchestrator".tags.contains("router")
};
"#);
    // Without it in the chain there is no such entity: the permit cannot hold.
    assert_ne!(evaluate(&on_root, &base).decision, Decision::Allow);
    let mut delegated = base.clone();
    delegated
        .delegators
        .push(agent("orchestrator", &["router"]));
    assert_eq!(evaluate(&on_root, &delegated).decision, Decision::Allow);
    let mut retagged = delegated.clone();
    retagged.delegators[0].tags.clear();
    assert_ne!(evaluate(&on_root, &retagged).decision, Decision::Allow);
}

/// A task's entities with the request's resource and action added are
/// cached per thread too, keyed by those facts: a repeated call reuses them,
/// and any changed fact of the resource, the action, the environment or the
/// tool is decided on the new facts.
#[test]
fn cached_request_entities_never_outlive_a_changed_fact() {
    let s = set(r#"
@id("exactly-this")
permit (principal, action in Mandate::Action::"invoice.*", resource) when {
  resource.path == "erp:invoices/2026-001" && resource.sensitivity == "internal" &&
  resource.labels.contains("pii") && resource in Mandate::Environment::"staging" &&
  resource in Mandate::Tool::"erp"
};
"#);
    let mut base = request("invoice.read");
    base.resource.labels = ["pii".to_owned()].into();
    base.context.tool = Some("erp".into());
    let mut other_resource = base.clone();
    other_resource.resource.id = "erp:invoices/2026-002".into();
    let mut other_sensitivity = base.clone();
    other_sensitivity.resource.sensitivity = "restricted".into();
    let mut unlabelled = base.clone();
    unlabelled.resource.labels.clear();
    let mut other_environment = base.clone();
    other_environment.context.environment = "prod".into();
    let mut other_tool = base.clone();
    other_tool.context.tool = Some("mail".into());
    let mut no_tool = base.clone();
    no_tool.context.tool = None;
    let mut other_action = base.clone();
    other_action.action = "payments.read".into();
    for (what, r) in [
        ("resource", &other_resource),
        ("sensitivity", &other_sensitivity),
        ("labels", &unlabelled),
        ("environment", &other_environment),
        ("tool", &other_tool),
        ("no tool", &no_tool),
        ("action", &other_action),
    ] {
        // Twice each: the second call is answered from the cache.
        for _ in 0..2 {
            assert_eq!(evaluate(&s, &base).decision, Decision::Allow);
            assert!(
                evaluate(&s, r).is_default_deny(),
                "changed {what} was not seen"
            );
        }
    }
}

#[test]
fn failures_beside_a_gate_are_reported_once_and_a_failing_forbid_still_denies() {
    // Overflows for any risk score above 1.
    let overflow = "context.risk_score * 9223372036854775807 > 0";
    let gate = "@id(\"gate\") @approval(\"required\") forbid (principal, action, resource);";
    let permit = "@id(\"all\") permit (principal, action, resource);";
    // A permit-all, the gate, and a policy of `effect` that fails.
    let beside_gate = |effect: &str| {
        set(&format!(
            "{permit}\n{gate}\n@id(\"broken\") {effect} (principal, action, resource) when {{ {overflow} }};"
        ))
    };

    // The gate stops Cedar, so the permits are asked again on their own:
    // the failing permit's error is still reported once.
    let e = evaluate(&beside_gate("permit"), &request("invoice.read"));
    assert_eq!(e.decision, Decision::NeedsApproval, "{e:?}");
    assert_eq!(ids(&e), ["gate"]);
    assert_eq!(e.errors.len(), 1, "{e:?}");
    assert_eq!(e.errors[0].policy_id.as_deref(), Some("broken"));

    // A forbid that fails beside a satisfied gate denies: no approval can
    // lift what could not be evaluated.
    let e = evaluate(&beside_gate("forbid"), &request("invoice.read"));
    assert_eq!(e.decision, Decision::Deny, "{e:?}");
    assert_eq!(ids(&e), ["broken"]);
    assert_eq!(e.errors.len(), 1, "{e:?}");
}
