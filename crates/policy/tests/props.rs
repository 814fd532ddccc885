//! Property tests: decisions against an independent model of Mandate's rules,
//! and the parser on arbitrary input (the `policy_parse` fuzz target's input
//! space, exercised on every CI run).

mod common;

use std::collections::BTreeSet;

use common::{DEFAULT, agent, request};
use mandate_policy::{
    ApprovalState, Decision, DecisionRequest, PolicySet, diff, evaluate, hash_text,
};
use proptest::prelude::*;

const ACTIONS: [&str; 4] = [
    "payments.initiate",
    "payments.refund",
    "invoice.read",
    "email.send",
];
const ENVS: [&str; 2] = ["prod", "staging"];
const TAGS: [&str; 2] = ["finance", "cleared"];
const SENSITIVITIES: [&str; 2] = ["public", "confidential"];

/// One test a policy condition can make, with its meaning in plain Rust.
#[derive(Debug, Clone)]
enum Atom {
    RiskAtLeast(u8),
    AmountOver(i64),
    Env(&'static str),
    Tag(&'static str),
    Sensitivity(&'static str),
    Approved,
}

impl Atom {
    fn cedar(&self) -> String {
        match self {
            Atom::RiskAtLeast(n) => format!("context.risk_score >= {n}"),
            Atom::AmountOver(n) => format!("(context has amount && context.amount > {n})"),
            Atom::Env(e) => format!("context.environment == {e:?}"),
            Atom::Tag(t) => format!("principal.tags.contains({t:?})"),
            Atom::Sensitivity(s) => format!("resource.sensitivity == {s:?}"),
            Atom::Approved => "context.approval == \"approved\"".into(),
        }
    }

    fn holds(&self, r: &DecisionRequest) -> bool {
        match self {
            Atom::RiskAtLeast(n) => r.context.risk_score.min(100) >= *n,
            Atom::AmountOver(n) => r.context.amount.is_some_and(|a| a > *n),
            Atom::Env(e) => r.context.environment == *e,
            Atom::Tag(t) => r.agent.tags.contains(*t),
            Atom::Sensitivity(s) => r.resource.sensitivity == *s,
            Atom::Approved => r.context.approval == ApprovalState::Approved,
        }
    }
}

#[derive(Debug, Clone)]
enum Scope {
    Any,
    Eq(&'static str),
    InPayments,
    InList(&'static str, &'static str),
}

impl Scope {
    fn cedar(&self) -> String {
        let a = |s: &str| format!("Mandate::Action::{s:?}");
        match self {
            Scope::Any => "action".into(),
            Scope::Eq(x) => format!("action == {}", a(x)),
            Scope::InPayments => format!("action in {}", a("payments.*")),
            Scope::InList(x, y) => format!("action in [{}, {}]", a(x), a(y)),
        }
    }

    fn holds(&self, action: &str) -> bool {
        match self {
            Scope::Any => true,
            Scope::Eq(x) => *x == action,
            Scope::InPayments => action.starts_with("payments."),
            Scope::InList(x, y) => *x == action || *y == action,
        }
    }
}

#[derive(Debug, Clone)]
struct Pol {
    permit: bool,
    gate: bool,
    scope: Scope,
    when: Vec<(bool, Atom)>,
}

impl Pol {
    fn cedar(&self, id: usize) -> String {
        let mut s = format!("@id(\"p{id}\")\n");
        if self.gate {
            s.push_str("@approval(\"required\")\n");
        }
        s.push_str(if self.permit { "permit" } else { "forbid" });
        s.push_str(&format!(" (principal, {}, resource)", self.scope.cedar()));
        if !self.when.is_empty() {
            let conds: Vec<String> = self
                .when
                .iter()
                .map(|(neg, a)| {
                    if *neg {
                        format!("!({})", a.cedar())
                    } else {
                        a.cedar()
                    }
                })
                .collect();
            s.push_str(&format!(" when {{ {} }}", conds.join(" && ")));
        }
        s.push_str(";\n");
        s
    }

    fn matches(&self, r: &DecisionRequest) -> bool {
        self.scope.holds(&r.action) && self.when.iter().all(|(neg, a)| a.holds(r) != *neg)
    }
}

fn atom() -> impl Strategy<Value = Atom> {
    prop_oneof![
        (0u8..=100).prop_map(Atom::RiskAtLeast),
        (0i64..2_000).prop_map(Atom::AmountOver),
        prop::sample::select(&ENVS[..]).prop_map(Atom::Env),
        prop::sample::select(&TAGS[..]).prop_map(Atom::Tag),
        prop::sample::select(&SENSITIVITIES[..]).prop_map(Atom::Sensitivity),
        Just(Atom::Approved),
    ]
}

fn scope() -> impl Strategy<Value = Scope> {
    let action = || prop::sample::select(&ACTIONS[..3]);
    prop_oneof![
        2 => Just(Scope::Any),
        2 => action().prop_map(Scope::Eq),
        1 => Just(Scope::InPayments),
        1 => (action(), action()).prop_map(|(x, y)| Scope::InList(x, y)),
    ]
}

fn pol(permit: impl Strategy<Value = bool>) -> impl Strategy<Value = Pol> {
    (
        permit,
        any::<bool>(),
        scope(),
        prop::collection::vec((any::<bool>(), atom()), 0..3),
    )
        .prop_map(|(permit, gate, scope, when)| Pol {
            permit,
            gate: gate && !permit,
            scope,
            when,
        })
}

fn decision_request() -> impl Strategy<Value = DecisionRequest> {
    (
        prop::sample::select(&ACTIONS[..]),
        0u8..=120,
        prop::option::of(0i64..2_000),
        prop::sample::select(&ENVS[..]),
        prop::sample::subsequence(&TAGS[..], 0..=2),
        prop::sample::select(&SENSITIVITIES[..]),
        prop::sample::select(
            &[
                ApprovalState::None,
                ApprovalState::Approved,
                ApprovalState::Denied,
            ][..],
        ),
    )
        .prop_map(|(action, risk, amount, env, tags, sensitivity, approval)| {
            let mut r = request(action);
            r.agent = agent("billing", &tags);
            r.context.risk_score = risk;
            r.context.amount = amount;
            r.context.environment = env.into();
            r.resource.sensitivity = sensitivity.into();
            r.context.approval = approval;
            r
        })
}

fn text(policies: &[Pol]) -> String {
    policies
        .iter()
        .enumerate()
        .map(|(i, p)| p.cedar(i))
        .collect()
}

fn matching(
    policies: &[Pol],
    r: &DecisionRequest,
    pick: impl Fn(&Pol) -> bool,
) -> BTreeSet<String> {
    policies
        .iter()
        .enumerate()
        .filter(|(_, p)| pick(p) && p.matches(r))
        .map(|(i, _)| format!("p{i}"))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The full rule, against a model: hard forbids deny, no permit denies,
    /// gates ask (or follow the approval), otherwise allow; reasons are
    /// exactly the deciding policies.
    #[test]
    fn decisions_follow_the_model(
        policies in prop::collection::vec(pol(any::<bool>()), 0..8),
        r in decision_request(),
    ) {
        let set = PolicySet::parse(&text(&policies)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let e = evaluate(&set, &r);
        prop_assert!(e.errors.is_empty(), "{:?}", e.errors);
        let got: BTreeSet<String> = e.reasons.iter().map(|r| r.policy_id.clone()).collect();

        let hard = matching(&policies, &r, |p| !p.permit && !p.gate);
        let gates = matching(&policies, &r, |p| p.gate);
        let permits = matching(&policies, &r, |p| p.permit);

        // A matching forbid always wins, whatever permits.
        if !hard.is_empty() {
            prop_assert_eq!(e.decision, Decision::Deny);
            prop_assert_eq!(got, hard);
            return Ok(());
        }
        // Default deny: nothing permits, nothing is allowed or asked.
        if permits.is_empty() {
            prop_assert!(e.is_default_deny(), "{:?}", e);
            return Ok(());
        }
        if gates.is_empty() {
            prop_assert_eq!(e.decision, Decision::Allow);
            prop_assert_eq!(got, permits);
            return Ok(());
        }
        match r.context.approval {
            ApprovalState::Approved => {
                prop_assert_eq!(e.decision, Decision::Allow);
                prop_assert_eq!(got, permits.union(&gates).cloned().collect::<BTreeSet<_>>());
            }
            ApprovalState::Denied => {
                prop_assert_eq!(e.decision, Decision::Deny);
                prop_assert_eq!(got, gates);
            }
            ApprovalState::None => {
                prop_assert_eq!(e.decision, Decision::NeedsApproval);
                prop_assert_eq!(got, gates);
            }
        }
    }

    /// With no permit at all, every request is denied, whatever the forbids.
    #[test]
    fn without_permits_everything_is_denied(
        policies in prop::collection::vec(pol(Just(false)), 0..8),
        r in decision_request(),
    ) {
        let set = PolicySet::parse(&text(&policies)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(evaluate(&set, &r).decision, Decision::Deny);
    }

    /// Arbitrary text never panics the parser; accepted text re-parses to the
    /// same version and the same policies.
    #[test]
    fn the_parser_survives_arbitrary_text(s in ".{0,200}") {
        check_parse(&s);
    }

    /// Mutations of a real policy set reach deeper than random text does.
    #[test]
    fn the_parser_survives_mutated_policies(
        cut in 0..DEFAULT.len(),
        len in 0usize..40,
        insert in "[a-z(){}\";@=<>!&|. \n0-9]{0,12}",
    ) {
        let mut text = DEFAULT.to_owned();
        let start = (0..=cut).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        let end = (start + len..=text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
        text.replace_range(start..end, &insert);
        check_parse(&text);
    }
}

fn check_parse(text: &str) {
    match PolicySet::parse(text) {
        Ok(set) => {
            assert_eq!(set.hash(), hash_text(text));
            let again = PolicySet::parse(set.text()).expect("accepted text must re-parse");
            assert_eq!(again.hash(), set.hash());
            assert!(diff(&set, &again).is_empty());
            let _ = evaluate(&set, &request("payments.initiate"));
        }
        Err(e) => {
            assert!(!e.problems.is_empty());
            for p in &e.problems {
                if let Some(loc) = p.location {
                    assert!(loc.line >= 1 && loc.column >= 1);
                }
            }
        }
    }
}
