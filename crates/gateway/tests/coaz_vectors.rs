//! The COAZ profile's normative examples and its agent-identity conformance
//! vectors, table-driven from JSON fixtures transcribed from the draft (see
//! each fixture's `source`): for each, the AuthZEN request the gateway builds,
//! or the mapping error it reports without asking the decision point, and
//! the decision a recording stand-in PDP then gives.

use std::cell::RefCell;

use mandate_gateway::coaz::{self, Anchors, AuthzRequest, Inputs, Mapping, Plan};
use serde_json::{Value, json};

const AGENT_IDENTITY: &str = include_str!("coaz/agent-identity.json");
const PROFILE: &str = include_str!("coaz/profile-examples.json");

/// A decision point stand-in: applies a `permit_when` policy to every
/// effective decision and records each request it was asked.
struct RecordingPdp {
    permit_when: Value,
    asked: RefCell<Vec<Value>>,
}

impl RecordingPdp {
    fn new(permit_when: Value) -> Self {
        RecordingPdp {
            permit_when,
            asked: RefCell::new(Vec::new()),
        }
    }

    /// One decision per effective decision of the request (the top-level
    /// defaults applied by the gateway's own splitting).
    fn decide(&self, req: &AuthzRequest) -> Vec<bool> {
        self.asked
            .borrow_mut()
            .push(Value::Object(req.body().clone()));
        let p = &self.permit_when;
        req.decisions()
            .iter()
            .map(|d| {
                d.subject.id == p["subject.id"]
                    && d.action.name == p["action.name"]
                    && d.resource.id == p["resource.id"]
                    && d.context.get("agent") == Some(&p["context.agent"])
            })
            .collect()
    }
}

fn plan(
    method: &str,
    params: &Value,
    token: &Value,
    mapping: Option<&Value>,
    anchors: &Anchors,
    server: Option<&str>,
) -> Result<Plan, coaz::MappingError> {
    let declared = match mapping {
        Some(m) => Some(Mapping::parse(m)?),
        None => None,
    };
    let inputs = Inputs {
        params,
        token,
        server,
    };
    coaz::plan(method, inputs, declared.as_ref(), anchors)
}

#[test]
fn the_agent_identity_conformance_vectors() {
    let doc: Value = serde_json::from_str(AGENT_IDENTITY).unwrap();
    let vectors = doc["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 16, "every published vector is transcribed");
    let baseline = &doc["baseline"];
    for v in vectors {
        let id = v["id"].as_str().unwrap();
        let pdp = RecordingPdp::new(doc["policy"]["permit_when"].clone());
        let anchors = Anchors {
            subject_claim: "sub".into(),
            agent_claim: v["agent_identity_claim"].as_str().unwrap().into(),
        };
        let params = v.get("params").unwrap_or(&baseline["params"]);
        let got = plan(
            baseline["method"].as_str().unwrap(),
            params,
            &v["token"],
            Some(&v["mapping"]),
            &anchors,
            None,
        );
        let expected = &v["expected"];
        match expected["outcome"].as_str().unwrap() {
            "request" => {
                let Ok(Plan::Ask(req)) = got else {
                    panic!("{id}: expected a request, got {got:?}");
                };
                assert_eq!(
                    Value::Object(req.body().clone()),
                    expected["request"],
                    "{id}: request"
                );
                let decisions = pdp.decide(&req);
                let want: Vec<bool> = match &expected["decision"] {
                    Value::Bool(b) => vec![*b],
                    other => serde_json::from_value(other.clone()).unwrap(),
                };
                assert_eq!(decisions, want, "{id}: decision");
                // The invariant the vectors exist for: every effective
                // decision carries the trusted agent, or none at all.
                let trusted = v["token"].get(v["agent_identity_claim"].as_str().unwrap());
                for d in req.decisions() {
                    assert_eq!(d.context.get("agent"), trusted, "{id}: effective agent");
                    assert_eq!(d.subject.id, "alice@example.com", "{id}: subject");
                }
            }
            "mapping_error" => {
                let Err(e) = got else {
                    panic!("{id}: expected a mapping error, got {got:?}");
                };
                assert_eq!(e.reason(), expected["reason"].as_str().unwrap(), "{id}");
                assert_eq!(expected["pdp_called"], false);
                assert!(pdp.asked.borrow().is_empty(), "{id}: the PDP was asked");
            }
            other => panic!("{id}: unknown outcome {other}"),
        }
    }
}

#[test]
fn the_profiles_resolution_table() {
    let doc: Value = serde_json::from_str(PROFILE).unwrap();
    let token = &doc["token"]["claims"];
    let params = &doc["resolution"]["params"];
    for case in doc["resolution"]["cases"].as_array().unwrap() {
        // Each value placed in a context member of an otherwise fixed mapping.
        let mapping = json!({ "evaluation": {
            "action": { "name": "a" }, "resource": { "type": "t", "id": "i" },
            "context": { "probe": case["value"] } } });
        let Ok(Plan::Ask(req)) = plan(
            "tools/call",
            params,
            token,
            Some(&mapping),
            &Anchors::default(),
            None,
        ) else {
            panic!("{case}: no request");
        };
        let got = req.body()["context"].get("probe");
        if case["absent"] == true {
            assert_eq!(got, None, "{case}");
        } else {
            assert_eq!(got, Some(&case["resolved"]), "{case}");
        }
    }
}

#[test]
fn the_profiles_examples_and_default_mappings() {
    let doc: Value = serde_json::from_str(PROFILE).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    // Every method the profile maps has a case of its default mapping.
    for m in coaz::defaults::METHODS {
        assert!(
            cases.iter().any(|c| c["method"] == *m
                && c.get("mapping").is_none()
                && c.get("mapping_from").is_none()),
            "no case for the default mapping of {m}"
        );
    }
    for case in cases {
        let id = case["id"].as_str().unwrap();
        let token = case.get("token").unwrap_or(&doc["token"]["claims"]);
        let mapping = match case.get("mapping_from") {
            Some(from) => cases
                .iter()
                .find(|c| c["id"] == *from)
                .map(|c| &c["mapping"]),
            None => case.get("mapping"),
        };
        let pdp = RecordingPdp::new(json!({}));
        let got = plan(
            case["method"].as_str().unwrap(),
            &case["params"],
            token,
            mapping,
            &Anchors::default(),
            case["server"].as_str(),
        );
        let expected = &case["expected"];
        match (expected["outcome"].as_str().unwrap(), got) {
            ("request", Ok(Plan::Ask(req))) => {
                assert_eq!(
                    Value::Object(req.body().clone()),
                    expected["request"],
                    "{id}"
                );
                assert_eq!(req.envelope().path(), expected["api"], "{id}");
                // The stand-in, with a policy that permits nothing, denies each decision.
                assert!(pdp.decide(&req).iter().all(|d| !d), "{id}");
            }
            ("mapping_error", Err(e)) => {
                assert_eq!(expected["code"], coaz::MAPPING_ERROR, "{id}");
                assert!(
                    e.to_string().starts_with("COAZ mapping error: "),
                    "{id}: {e}"
                );
                if let Some(r) = expected["reason"].as_str() {
                    assert_eq!(e.reason(), r, "{id}");
                }
                if let Some(r) = expected["reason_starts"].as_str() {
                    assert!(e.reason().starts_with(r), "{id}: {e}");
                }
                if let Some(r) = expected["reason_contains"].as_str() {
                    assert!(e.reason().contains(r), "{id}: {r:?} not in {e}");
                }
                assert!(pdp.asked.borrow().is_empty());
            }
            ("pass_through", Ok(Plan::PassThrough)) => {}
            ("deny", Ok(Plan::Deny(why))) => {
                assert_eq!(expected["code"], coaz::DENIED, "{id}");
                assert!(why.contains("no COAZ mapping"), "{id}: {why}");
            }
            (want, got) => panic!("{id}: expected {want}, got {got:?}"),
        }
    }
}
