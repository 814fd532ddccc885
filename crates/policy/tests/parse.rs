//! Parsing and validation: what is accepted, what is refused and where,
//! hashes, listings and diffs.

mod common;

use common::{DEFAULT, set};
use mandate_policy::{
    Change, Effect, Location, PolicyError, PolicySet, ProblemKind, diff, hash_text,
};

fn refused(text: &str) -> PolicyError {
    match PolicySet::parse(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    }
}

fn at(line: u32, column: u32) -> Option<Location> {
    Some(Location { line, column })
}

#[test]
fn the_example_policy_set_is_valid_and_listed_in_source_order() {
    let s = set(DEFAULT);
    let ids: Vec<&str> = s.policy_ids().collect();
    assert_eq!(
        ids,
        [
            "in-scope",
            "elevated-risk",
            "large-payment",
            "payments-finance-only",
            "confidential-needs-clearance",
            "delegation-depth",
            "prod-deletes"
        ]
    );
    let large = s.policy("large-payment").unwrap();
    assert_eq!(large.effect, Effect::Forbid);
    assert!(large.is_approval_gate());
    assert_eq!(large.annotations["approval"], "required");
    assert_eq!(
        large.annotations["reason"],
        "Payments above 10,000.00 need a human approval"
    );
    assert!(large.text.starts_with("@id(\"large-payment\")"));
    assert_eq!(large.location.column, 1);
    let line = DEFAULT
        .lines()
        .position(|l| l == "@id(\"large-payment\")")
        .unwrap();
    assert_eq!(large.location.line as usize, line + 1);
    assert!(!s.policy("in-scope").unwrap().is_approval_gate());
    assert!(s.warnings().is_empty(), "{:?}", s.warnings());
}

#[test]
fn a_syntax_error_is_refused_with_its_line_and_column() {
    let e = refused(
        "@id(\"a\")\npermit (principal, action, resource);\n\n@id(\"b\")\nforbid (principal, action, resource)\nwhen { context.risk_score > };\n",
    );
    let p = e.first().unwrap();
    assert_eq!(p.kind, ProblemKind::Syntax);
    // The `}` where an operand was expected.
    assert_eq!(p.location, at(6, 29), "{e}");
    assert!(e.to_string().contains("line 6, column 29"), "{e}");
}

#[test]
fn an_unknown_attribute_is_refused_with_its_line_and_column() {
    let e = refused(
        "@id(\"dept\")\npermit (principal, action, resource)\nwhen {\n  principal.department == \"finance\"\n};\n",
    );
    let p = e.first().unwrap();
    assert_eq!(p.kind, ProblemKind::Schema);
    assert_eq!(p.policy_id.as_deref(), Some("dept"));
    assert_eq!(p.location, at(4, 3), "{e}");
    assert!(p.message.contains("department"), "{e}");
}

#[test]
fn an_optional_context_field_must_be_tested_with_has() {
    // The agentgateway lesson: a rule on data the decision may not carry
    // is refused at push time, not silently false at run time.
    let e = refused(
        "@id(\"big\")\nforbid (principal, action == Mandate::Action::\"payments.initiate\", resource)\nwhen { context.amount > 10000 };\n",
    );
    let p = e.first().unwrap();
    assert_eq!(p.kind, ProblemKind::Schema);
    assert_eq!(p.location, at(3, 8), "{e}");
    assert!(p.message.contains("amount"), "{e}");
    set(
        "@id(\"big\")\nforbid (principal, action == Mandate::Action::\"payments.initiate\", resource)\nwhen { context has amount && context.amount > 10000 };\n",
    );
}

#[test]
fn types_and_entities_outside_the_schema_are_refused() {
    for text in [
        "@id(\"x\")\npermit (principal == User::\"alice\", action, resource);",
        "@id(\"x\")\npermit (principal, action == Action::\"read\", resource);",
        "@id(\"x\")\npermit (principal, action, resource) when { context.risk_score == \"high\" };",
    ] {
        let e = refused(text);
        assert_eq!(e.first().unwrap().kind, ProblemKind::Schema, "{text}: {e}");
        assert_eq!(e.first().unwrap().location.unwrap().line, 2, "{text}: {e}");
    }
    // A scope no action can satisfy is a fault of the whole policy, so Cedar points at
    // its start: the annotation line.
    let text = "@id(\"x\")\npermit (principal is Mandate::Human, action, resource);";
    let e = refused(text);
    assert_eq!(e.first().unwrap().kind, ProblemKind::Schema, "{text}: {e}");
    assert_eq!(e.first().unwrap().location, at(1, 1), "{text}: {e}");
}

#[test]
fn every_policy_needs_a_unique_id() {
    let e = refused(
        "@id(\"a\")\npermit (principal, action, resource);\n\npermit (principal, action, resource);\n",
    );
    let p = e.first().unwrap();
    assert_eq!(p.kind, ProblemKind::Convention);
    assert_eq!(p.location, at(4, 1));
    assert!(p.message.contains("@id"));

    let e = refused(
        "@id(\"a\")\npermit (principal, action, resource);\n@id(\"a\")\nforbid (principal, action, resource);\n",
    );
    let p = e.first().unwrap();
    assert_eq!(p.location, at(3, 1));
    assert!(
        p.message.contains("duplicate") && p.message.contains("line 1, column 1"),
        "{e}"
    );

    let e = refused("@id(\"has space\")\npermit (principal, action, resource);");
    assert_eq!(e.first().unwrap().kind, ProblemKind::Convention);
}

#[test]
fn approval_annotations_follow_the_convention() {
    let e = refused("@id(\"p\")\n@approval(\"required\")\npermit (principal, action, resource);");
    assert!(e.first().unwrap().message.contains("forbid"), "{e}");
    let e = refused("@id(\"f\")\n@approval(\"maybe\")\nforbid (principal, action, resource);");
    assert!(e.first().unwrap().message.contains("maybe"), "{e}");
}

#[test]
fn templates_and_bad_action_ids_are_refused() {
    let e = refused("@id(\"t\")\npermit (principal == ?principal, action, resource);");
    assert_eq!(e.first().unwrap().kind, ProblemKind::Convention);
    assert!(e.first().unwrap().message.contains("template"), "{e}");

    let e = refused(
        "@id(\"a\")\npermit (principal, action, resource);\n@id(\"b\")\npermit (principal, action == Mandate::Action::\"Pay Now\", resource);",
    );
    let p = e.first().unwrap();
    assert_eq!(p.kind, ProblemKind::Convention);
    assert_eq!(p.policy_id.as_deref(), Some("b"));
    assert_eq!(p.location, at(4, 47), "{e}");

    let e = refused(
        "@id(\"a\")\npermit (principal, action in Mandate::Action::\"pay*ments\", resource);",
    );
    assert!(e.first().unwrap().message.contains("pay*ments"), "{e}");
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let e = refused(
        "permit (principal, action, resource);\n@id(\"b\")\n@approval(\"required\")\npermit (principal, action, resource);\n",
    );
    assert_eq!(e.problems.len(), 2, "{e:#?}");
    assert!(e.to_string().contains("and 1 more problem"), "{e}");

    let e = refused(
        "@id(\"a\")\npermit (principal, action, resource) when { principal.x };\n@id(\"b\")\npermit (principal, action, resource) when { resource.y };\n",
    );
    let lines: Vec<u32> = e
        .problems
        .iter()
        .map(|p| p.location.unwrap().line)
        .collect();
    assert!(lines.contains(&2) && lines.contains(&4), "{e:#?}");
}

#[test]
fn the_hash_is_the_sha256_of_the_text_and_identifies_the_version() {
    let empty = set("");
    assert!(empty.is_empty());
    assert_eq!(
        empty.hash(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let a = set(DEFAULT);
    let b = set(DEFAULT);
    assert_eq!(a.hash(), b.hash());
    assert_eq!(a.hash(), hash_text(DEFAULT));
    assert_eq!(a.text(), DEFAULT);
    // Same file with Windows line endings: same version.
    assert_eq!(set(&DEFAULT.replace('\n', "\r\n")).hash(), a.hash());
    // Any edit, even a comment, is a new version.
    let edited = set(&DEFAULT.replace("< 90", "< 80"));
    assert_ne!(edited.hash(), a.hash());
    assert_ne!(set(&format!("// note\n{DEFAULT}")).hash(), a.hash());
}

#[test]
fn diff_reports_added_removed_and_changed_policies_by_id() {
    let old = set(DEFAULT);
    let new_text = DEFAULT
        .replace("context.amount > 1000000", "context.amount > 500000")
        .replace("@id(\"prod-deletes\")", "@id(\"prod-deletes-v2\")")
        + "\n@id(\"night\")\nforbid (principal, action, resource) when { context.hour < 6 };\n";
    let new = set(&new_text);
    let changes = diff(&old, &new);
    let summary: Vec<(&str, Change)> = changes.iter().map(|c| (c.id.as_str(), c.change)).collect();
    assert_eq!(
        summary,
        [
            ("large-payment", Change::Changed),
            ("night", Change::Added),
            ("prod-deletes", Change::Removed),
            ("prod-deletes-v2", Change::Added),
        ]
    );
    let changed = &changes[0];
    assert!(changed.old.as_deref().unwrap().contains("1000000"));
    assert!(changed.new.as_deref().unwrap().contains("500000"));
    assert!(changes[1].old.is_none() && changes[2].new.is_none());
}

#[test]
fn layout_comments_and_order_are_not_changes() {
    let old = set(
        "@id(\"a\")\npermit (principal, action, resource) when { context.risk_score < 50 };\n@id(\"b\")\nforbid (principal, action, resource) when { context.chain_depth > 3 };\n",
    );
    let new = set(
        "// reordered and reformatted\n@id(\"b\") forbid (principal, action, resource)\n  when { context.chain_depth > 3 };\n\n@id(\"a\")\npermit (\n  principal,\n  action,\n  resource\n) when { context.risk_score < 50 };\n",
    );
    assert_ne!(old.hash(), new.hash());
    assert!(diff(&old, &new).is_empty(), "{:#?}", diff(&old, &new));
    // An annotation is part of the policy.
    let annotated = set(
        "@id(\"a\")\n@reason(\"low risk\")\npermit (principal, action, resource) when { context.risk_score < 50 };\n@id(\"b\")\nforbid (principal, action, resource) when { context.chain_depth > 3 };\n",
    );
    let changes = diff(&old, &annotated);
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (changes[0].id.as_str(), changes[0].change),
        ("a", Change::Changed)
    );
}

#[test]
fn oversized_text_is_refused_before_parsing() {
    let big = format!(
        "@id(\"a\")\npermit (principal, action, resource);\n{}",
        "//x\n".repeat(300_000)
    );
    let e = refused(&big);
    assert_eq!(e.first().unwrap().kind, ProblemKind::Convention);
}
