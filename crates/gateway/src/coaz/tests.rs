//! Property tests of the COAZ module: the literal/`$`/`$$` rules, the trust
//! anchoring (no mapping and no argument moves `subject.id` or
//! `context.agent` off the token's claims), and the mapping parser on any
//! JSON, which is also the fuzz target's input space (`fuzz/coaz_mapping`).

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;

fn inputs<'a>(params: &'a Value, token: &'a Value) -> Inputs<'a> {
    Inputs {
        params,
        token,
        server: Some("https://gw.example/mcp"),
    }
}

/// A mapping whose context carries `probe`, otherwise fixed.
fn with_probe(probe: Value) -> Value {
    json!({ "evaluation": {
        "action": { "name": "a" }, "resource": { "type": "t", "id": "i" },
        "context": { "probe": probe } } })
}

fn resolved_probe(probe: Value) -> Result<Option<Value>, MappingError> {
    let m = Mapping::parse(&with_probe(probe))?;
    let p = json!({ "name": "t", "arguments": { "x": "from-params" } });
    let t = json!({ "sub": "alice" });
    let r = build(&m, inputs(&p, &t), &Anchors::default())?;
    Ok(r.body()["context"].get("probe").cloned())
}

/// Any JSON value, small.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        (-1e9f64..1e9).prop_map(|f| json!(f)),
        "[$a-z. ?'=()!_]{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "$token.sub",
            "$token.?client_id",
            "$params.arguments.x",
            "$params.name",
            "$$",
            "$",
            "$token.aud",
            "$params.arguments.?agent",
            "evaluation",
            "evaluations",
        ])
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "evaluation",
                    "evaluations",
                    "subject",
                    "action",
                    "resource",
                    "context",
                    "id",
                    "type",
                    "name",
                    "properties",
                    "agent",
                    "options",
                    "x",
                ]),
                inner,
                0..5,
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

/// What a declared mapping might put where an identity goes: the claims,
/// caller arguments, other claims, literals, nothing.
fn identity_source() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        prop::sample::select(vec![
            "$token.sub",
            "$token.?client_id",
            "$token.client_id",
            "$params.arguments.agent",
            "$params.arguments.?agent",
            "$params.arguments.sub",
            "$token.?other",
            "agent-A",
            "alice",
            "bob",
            "$token.sub + ''",
            "$$token.sub",
        ])
        .prop_map(|s| Some(Value::String(s.into()))),
        any::<i64>().prop_map(|i| Some(json!(i))),
        Just(Some(Value::Null)),
    ]
}

fn put(o: &mut Map<String, Value>, k: &str, v: Option<Value>) {
    if let Some(v) = v {
        o.insert(k.into(), v);
    }
}

/// A declared mapping of either envelope, with identities from anywhere.
fn spoofing_mapping() -> impl Strategy<Value = Value> {
    (
        any::<bool>(),
        identity_source(),
        identity_source(),
        prop::collection::vec((any::<bool>(), identity_source()), 1..4),
        any::<bool>(),
    )
        .prop_map(|(bulk, subject_id, agent, entries, top_context)| {
            let mut subject = Map::new();
            put(&mut subject, "id", subject_id);
            let mut context = Map::new();
            put(&mut context, "agent", agent);
            context.insert("case".into(), json!("c"));
            let mut body = Map::new();
            body.insert("subject".into(), Value::Object(subject));
            if top_context {
                body.insert("context".into(), Value::Object(context));
            }
            if bulk {
                let items = entries
                    .into_iter()
                    .map(|(own, agent)| {
                        let mut e = Map::new();
                        e.insert("action".into(), json!({ "name": "read" }));
                        e.insert("resource".into(), json!({ "type": "t", "id": "r" }));
                        if own {
                            let mut c = Map::new();
                            put(&mut c, "agent", agent);
                            e.insert("context".into(), Value::Object(c));
                        }
                        Value::Object(e)
                    })
                    .collect();
                body.insert("evaluations".into(), Value::Array(items));
                json!({ "evaluations": body })
            } else {
                body.insert("action".into(), json!({ "name": "read" }));
                body.insert("resource".into(), json!({ "type": "t", "id": "r" }));
                json!({ "evaluation": body })
            }
        })
}

proptest! {
    /// A string not starting with `$` is itself; `$$x` is `$x`; any other
    /// JSON leaf is itself.
    #[test]
    fn literals_and_escapes_are_taken_verbatim(s in ".{0,24}", n in any::<i64>(), b in any::<bool>()) {
        if !s.starts_with('$') {
            prop_assert_eq!(resolved_probe(json!(s.clone())).unwrap(), Some(json!(s.clone())));
        }
        let escaped = format!("$${s}");
        prop_assert_eq!(resolved_probe(json!(escaped)).unwrap(), Some(json!(format!("${s}"))));
        prop_assert_eq!(resolved_probe(json!(n)).unwrap(), Some(json!(n)));
        prop_assert_eq!(resolved_probe(json!(b)).unwrap(), Some(json!(b)));
        // Leaves inside arrays follow the same rules.
        prop_assert_eq!(
            resolved_probe(json!([format!("x{s}"), n])).unwrap(),
            Some(json!([format!("x{s}"), n]))
        );
    }

    /// `$` + an expression is the expression's value: a selected argument
    /// comes back exactly, whatever it holds.
    #[test]
    fn expressions_select_exactly_what_the_params_hold(v in any_json()) {
        let m = Mapping::parse(&with_probe(json!("$params.arguments.x"))).unwrap();
        let p = json!({ "name": "t", "arguments": { "x": v.clone() } });
        let t = json!({ "sub": "alice" });
        // Floats through CEL are doubles; integers stay integers.
        let r = build(&m, inputs(&p, &t), &Anchors::default()).unwrap();
        let got = &r.body()["context"]["probe"];
        prop_assert!(got == &v || (v.is_f64() && got.as_f64() == v.as_f64()), "{} became {}", v, got);
    }

    /// Whatever the mapping says and whatever the caller sends, a request
    /// that is built carries the token's subject in every decision, and the
    /// token's agent in every effective context, or no agent at all when the
    /// token has none.
    #[test]
    fn no_mapping_or_argument_moves_the_anchored_identities(
        mapping in spoofing_mapping(),
        agent_arg in prop::option::of(prop::sample::select(vec!["agent-A", "agent-B", "alice", "bob"])),
        sub_arg in prop::option::of(prop::sample::select(vec!["alice", "bob"])),
        client in prop::option::of(prop::sample::select(vec!["agent-A", "agent-B"])),
    ) {
        let mut args = Map::new();
        put(&mut args, "agent", agent_arg.map(|s| json!(s)));
        put(&mut args, "sub", sub_arg.map(|s| json!(s)));
        let p = json!({ "name": "t", "arguments": args });
        let mut t = json!({ "sub": "alice" });
        if let Some(c) = client {
            t["client_id"] = json!(c);
        }
        let Ok(m) = Mapping::parse(&mapping) else { return Ok(()) };
        if let Ok(Plan::Ask(req)) = plan("tools/call", inputs(&p, &t), Some(&m), &Anchors::default()) {
            prop_assert_eq!(&req.body()["subject"]["id"], "alice");
            for d in req.decisions() {
                prop_assert_eq!(d.subject.id.as_str(), "alice");
                prop_assert_eq!(d.context.get("agent"), t.get("client_id"));
            }
        }
    }

    /// The parser takes any JSON without panicking, and whatever it accepts
    /// resolves (or fails as a mapping error) without panicking.
    #[test]
    fn the_parser_and_resolver_take_any_json(v in any_json()) {
        let p = json!({ "name": "t", "arguments": { "x": 1, "agent": "agent-B" } });
        let t = json!({ "sub": "alice", "client_id": "agent-A", "aud": "https://gw.example/mcp" });
        if let Ok(m) = Mapping::parse(&v)
            && let Ok(req) = build(&m, inputs(&p, &t), &Anchors::default())
        {
            prop_assert!(!req.decisions().is_empty());
        }
    }
}

/// The README's example of a declared mapping is what servers copy: it
/// parses and builds the request the draft describes.
#[test]
fn the_readme_mapping_example_builds_its_request() {
    let readme = include_str!("../../../../README.md");
    let start = readme
        .find("**Declaring a mapping.**")
        .and_then(|i| readme[i..].find("```json").map(|j| i + j + 7))
        .expect("the README has the mapping example");
    let end = start + readme[start..].find("```").unwrap();
    let tool: Value = serde_json::from_str(&readme[start..end]).unwrap();
    let m = Mapping::parse(&tool["inputSchema"][MAPPING_KEY]).unwrap();
    let p = json!({ "name": "get_customer", "arguments": { "id": "cust-1" } });
    let t = json!({ "sub": "alice", "client_id": "spiffe://acme/agent/a" });
    let req = build(&m, inputs(&p, &t), &Anchors::default()).unwrap();
    assert_eq!(
        Value::Object(req.body().clone()),
        json!({ "subject": { "type": "identity", "id": "alice" }, "action": { "name": "get_customer" },
                "resource": { "type": "customer", "id": "cust-1" },
                "context": { "agent": "spiffe://acme/agent/a" } })
    );
}

/// The anchoring property is not vacuous: its mappings both build requests
/// (claims, or nothing, where identities go) and get refused (spoofs).
#[test]
fn the_spoofing_mappings_reach_both_outcomes() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let p = json!({ "name": "t", "arguments": { "agent": "agent-B", "sub": "bob" } });
    let t = json!({ "sub": "alice", "client_id": "agent-A" });
    let (mut built, mut refused) = (0, 0);
    for _ in 0..256 {
        let m = spoofing_mapping().new_tree(&mut runner).unwrap().current();
        match Mapping::parse(&m).and_then(|m| build(&m, inputs(&p, &t), &Anchors::default())) {
            Ok(_) => built += 1,
            Err(_) => refused += 1,
        }
    }
    assert!(
        built > 16 && refused > 16,
        "{built} built, {refused} refused"
    );
}
