//! A COAZ mapping: one envelope (`evaluation` or `evaluations`) around a
//! template of the AuthZEN request body, in which every leaf is a literal
//! or an expression.
//!
//! The literal/expression rule is the profile's: a string starting with `$`
//! is a CEL expression (the text after the `$`); `$$` escapes a leading `$`
//! (`$$50` is the literal `$50`, `$$` the literal `$`); anything else,
//! numbers, booleans and null included, is used verbatim. Object keys are
//! never expressions. A mapping comes from an MCP server, so it is held to
//! limits (size, depth, expression length) and refused whole if any part of
//! it is wrong, before any call relies on it.

use mandate_server::routes::decisions::Semantic;
use serde_json::{Map, Value};

use super::expr::Expression;
use super::request::Envelope;
use super::{Inputs, MappingError, bad};

/// Deepest nesting of objects and arrays in a mapping.
pub const MAX_DEPTH: usize = 16;
/// Most leaves and containers in one mapping.
pub const MAX_NODES: usize = 1024;
/// Most entries in an `evaluations` array (the server's batch limit too).
pub const MAX_EVALUATIONS: usize = mandate_server::routes::decisions::MAX_BATCH;

/// One node of a template.
#[derive(Debug, PartialEq)]
pub(crate) enum Node {
    Literal(Value),
    Expr(Expression),
    /// This MCP server's identity, from the token's `aud` (default mappings only).
    Server,
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
}

/// A parsed, checked mapping.
#[derive(Debug, PartialEq)]
pub struct Mapping {
    envelope: Envelope,
    body: Node,
    /// Its literal `options.evaluations_semantic` (`execute_all` without one).
    semantic: Semantic,
}

/// Members a request body may have, per envelope (AuthZEN 1.0 sections 6, 7).
const EVALUATION_MEMBERS: &[&str] = &["subject", "action", "resource", "context"];
const EVALUATIONS_MEMBERS: &[&str] = &[
    "subject",
    "action",
    "resource",
    "context",
    "evaluations",
    "options",
];
const ENTRY_MEMBERS: &[&str] = &["action", "resource", "context"];

impl Mapping {
    /// Parses a declared mapping (the value of `x-authzen-mapping`).
    pub fn parse(v: &Value) -> Result<Self, MappingError> {
        let Some(o) = v.as_object() else {
            return Err(bad(
                "a mapping is a JSON object with one member, `evaluation` or `evaluations`",
            ));
        };
        let mut keys = o.keys();
        let (Some(key), None) = (keys.next(), keys.next()) else {
            let found: Vec<&String> = o.keys().collect();
            return Err(bad(format!(
                "a mapping has exactly one member, `evaluation` or `evaluations`; found {found:?}"
            )));
        };
        let envelope = match key.as_str() {
            "evaluation" => Envelope::Evaluation,
            "evaluations" => Envelope::Evaluations,
            other => {
                return Err(bad(format!(
                    "unsupported envelope {other:?}; use `evaluation` or `evaluations`"
                )));
            }
        };
        let Some(body) = o[key].as_object() else {
            return Err(bad(format!(
                "`{key}` must be an object (the request template)"
            )));
        };
        let mut budget = MAX_NODES;
        let allowed = match envelope {
            Envelope::Evaluation => EVALUATION_MEMBERS,
            Envelope::Evaluations => EVALUATIONS_MEMBERS,
        };
        let mut members = Vec::with_capacity(body.len());
        for (k, v) in body {
            if !allowed.contains(&k.as_str()) {
                return Err(bad(format!(
                    "`{key}` has a member {k:?}; an AuthZEN {key} request has only {allowed:?}"
                )));
            }
            let node = if k == "evaluations" {
                entries(v, &mut budget)?
            } else if k == "options" {
                options(v)?
            } else {
                node(v, 1, &mut budget)?
            };
            members.push((k.clone(), node));
        }
        if envelope == Envelope::Evaluations && !body.contains_key("evaluations") {
            return Err(bad("an `evaluations` mapping needs an `evaluations` array"));
        }
        let semantic = match body
            .get("options")
            .and_then(|o| o.get("evaluations_semantic"))
        {
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| bad(format!("options.evaluations_semantic: {e}")))?,
            None => Semantic::ExecuteAll,
        };
        Ok(Mapping {
            envelope,
            body: Node::Object(members),
            semantic,
        })
    }

    /// For the profile's defaults: `resource.id` written `$token.aud` is
    /// resolved by the profile's rule for the server's identity (one string,
    /// never an array) rather than as a plain expression.
    pub(crate) fn with_server_identity(mut self) -> Self {
        if let Node::Object(body) = &mut self.body
            && let Some((_, Node::Object(resource))) =
                body.iter_mut().find(|(k, _)| k == "resource")
            && let Some((_, id)) = resource.iter_mut().find(|(k, _)| k == "id")
            && matches!(id, Node::Expr(e) if e.source() == "token.aud")
        {
            *id = Node::Server;
        }
        self
    }

    pub fn envelope(&self) -> Envelope {
        self.envelope
    }

    /// How the decisions of a call add up (`options.evaluations_semantic`).
    pub fn semantic(&self) -> Semantic {
        self.semantic
    }

    /// Resolves every leaf against `inputs`: the request body, before anchoring.
    pub fn resolve(&self, inputs: Inputs<'_>) -> Result<Map<String, Value>, MappingError> {
        match resolve(&self.body, inputs)? {
            Some(Value::Object(o)) => Ok(o),
            _ => Err(bad("the mapping did not resolve to a request object")),
        }
    }

    /// The literal `(action.name, resource.id)` of each decision this mapping
    /// asks for, where the mapping fixes them (`None` where an expression
    /// decides): what listing a tool can probe before its arguments exist.
    pub fn literal_asks(&self) -> Vec<(Option<String>, Option<String>)> {
        let Node::Object(body) = &self.body else {
            return Vec::new();
        };
        let get = |members: &[(String, Node)], obj: &str, field: &str| -> Option<String> {
            let (_, Node::Object(o)) = members.iter().find(|(k, _)| k == obj)? else {
                return None;
            };
            match o.iter().find(|(k, _)| k == field) {
                Some((_, Node::Literal(Value::String(s)))) => Some(s.clone()),
                _ => None,
            }
        };
        let top = (get(body, "action", "name"), get(body, "resource", "id"));
        match body.iter().find(|(k, _)| k == "evaluations") {
            Some((_, Node::Array(items))) => items
                .iter()
                .map(|item| match item {
                    Node::Object(m) => {
                        let has = |k: &str| m.iter().any(|(n, _)| n == k);
                        (
                            if has("action") {
                                get(m, "action", "name")
                            } else {
                                top.0.clone()
                            },
                            if has("resource") {
                                get(m, "resource", "id")
                            } else {
                                top.1.clone()
                            },
                        )
                    }
                    _ => (None, None),
                })
                .collect(),
            _ => vec![top],
        }
    }
}

/// The `evaluations` array: a literal array of entry templates, each
/// without a `subject` (one subject, at the top, for every decision).
fn entries(v: &Value, budget: &mut usize) -> Result<Node, MappingError> {
    let Some(items) = v.as_array() else {
        return Err(bad(
            "`evaluations` must be an array of entries (not an expression: the mapping fixes how many decisions a call needs)",
        ));
    };
    if items.is_empty() || items.len() > MAX_EVALUATIONS {
        return Err(bad(format!(
            "`evaluations` must have 1 to {MAX_EVALUATIONS} entries"
        )));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Some(o) = item.as_object() else {
            return Err(bad(format!("evaluations[{i}] must be an object")));
        };
        if o.contains_key("subject") {
            return Err(bad(format!(
                "evaluations[{i}] sets `subject`; only the top-level subject may be set (identity smuggling)"
            )));
        }
        if let Some(k) = o.keys().find(|k| !ENTRY_MEMBERS.contains(&k.as_str())) {
            return Err(bad(format!(
                "evaluations[{i}] has a member {k:?}; an entry has only {ENTRY_MEMBERS:?}"
            )));
        }
        take(budget)?;
        let members = o
            .iter()
            .map(|(k, v)| Ok((k.clone(), node(v, 3, budget)?)))
            .collect::<Result<_, MappingError>>()?;
        out.push(Node::Object(members));
    }
    Ok(Node::Array(out))
}

/// The semantics AuthZEN 1.0 defines for `options.evaluations_semantic`.
const SEMANTICS: &[&str] = &[
    "execute_all",
    "deny_on_first_deny",
    "permit_on_first_permit",
];

/// An `evaluations` request's `options`: a literal object whose only member
/// is `evaluations_semantic`, one of AuthZEN's three. Not an expression: how
/// the decisions of a call add up is fixed by the mapping, not by arguments;
/// and an option the gateway does not know could change what a PDP's answer
/// means, so it is refused rather than passed on unread.
fn options(v: &Value) -> Result<Node, MappingError> {
    let Some(o) = v.as_object() else {
        return Err(bad(
            "`options` must be an object (a literal: how decisions combine is not an expression)",
        ));
    };
    for (k, v) in o {
        if k != "evaluations_semantic" {
            return Err(bad(format!(
                "`options` has a member {k:?}; the gateway knows only `evaluations_semantic`"
            )));
        }
        if !v.as_str().is_some_and(|s| SEMANTICS.contains(&s)) {
            return Err(bad(format!(
                "options.evaluations_semantic is {v}; use one of {SEMANTICS:?} (a literal)"
            )));
        }
    }
    Ok(Node::Literal(v.clone()))
}

fn take(budget: &mut usize) -> Result<(), MappingError> {
    *budget = budget
        .checked_sub(1)
        .ok_or_else(|| bad(format!("a mapping may have at most {MAX_NODES} values")))?;
    Ok(())
}

/// One template value: the literal/expression rule, applied to every leaf.
fn node(v: &Value, depth: usize, budget: &mut usize) -> Result<Node, MappingError> {
    take(budget)?;
    if depth > MAX_DEPTH {
        return Err(bad(format!(
            "a mapping may nest at most {MAX_DEPTH} levels"
        )));
    }
    Ok(match v {
        Value::String(s) => leaf(s)?,
        Value::Array(a) => Node::Array(
            a.iter()
                .map(|v| node(v, depth + 1, budget))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => Node::Object(
            o.iter()
                .map(|(k, v)| Ok((k.clone(), node(v, depth + 1, budget)?)))
                .collect::<Result<_, MappingError>>()?,
        ),
        other => Node::Literal(other.clone()),
    })
}

/// A string leaf: `$$...` is a literal with one `$` removed, `$...` an
/// expression, anything else a literal.
pub(crate) fn leaf(s: &str) -> Result<Node, MappingError> {
    if s.starts_with("$$") {
        Ok(Node::Literal(Value::String(s[1..].to_owned())))
    } else if let Some(src) = s.strip_prefix('$') {
        Expression::compile(src).map(Node::Expr)
    } else {
        Ok(Node::Literal(Value::String(s.to_owned())))
    }
}

/// A resolved value, or `None` for *absent* (its field is left out).
fn resolve(n: &Node, inputs: Inputs<'_>) -> Result<Option<Value>, MappingError> {
    Ok(match n {
        Node::Literal(v) => Some(v.clone()),
        Node::Expr(e) => e.eval(inputs.params, inputs.token)?,
        Node::Server => Some(Value::String(server_identity(inputs)?)),
        Node::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for i in items {
                out.extend(resolve(i, inputs)?);
            }
            Some(Value::Array(out))
        }
        Node::Object(members) => {
            let mut out = Map::new();
            for (k, v) in members {
                if let Some(v) = resolve(v, inputs)? {
                    out.insert(k.clone(), v);
                }
            }
            Some(Value::Object(out))
        }
    })
}

/// The profile's resolution of `$token.aud` for server-scoped methods: one
/// string naming this server. A string `aud` is used as it is; from an array,
/// the member that is this server's own identifier; without `aud`, that
/// identifier. Anything else is a mapping error, never an array.
fn server_identity(inputs: Inputs<'_>) -> Result<String, MappingError> {
    match (inputs.token.get("aud"), inputs.server) {
        (Some(Value::String(aud)), _) => Ok(aud.clone()),
        (Some(Value::Array(auds)), Some(me)) if auds.iter().any(|a| a == me) => Ok(me.to_owned()),
        (Some(Value::Array(_)), _) => Err(bad(
            "the token's `aud` array does not name this MCP server exactly once",
        )),
        (None, Some(me)) => Ok(me.to_owned()),
        _ => Err(bad("the token has no `aud` naming this MCP server")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inputs<'a>(params: &'a Value, token: &'a Value) -> Inputs<'a> {
        Inputs {
            params,
            token,
            server: None,
        }
    }

    #[test]
    fn literals_expressions_and_escapes() {
        let m = Mapping::parse(&json!({ "evaluation": {
            "subject": { "type": "identity", "id": "$token.sub" },
            "action": { "name": "$$50" },
            "resource": { "type": "$$", "id": "$params.arguments.id", "properties": { "n": 10, "b": true, "z": null, "l": ["a", "$params.name", "$token.?missing"] } },
            "context": { "agent": "$token.?client_id", "price": "$$$x", "plain": "a$b" }
        }}))
        .unwrap();
        let p = json!({ "name": "t", "arguments": { "id": "c-1" } });
        let t = json!({ "sub": "alice" });
        let r = m.resolve(inputs(&p, &t)).unwrap();
        assert_eq!(
            Value::Object(r),
            json!({
                "subject": { "type": "identity", "id": "alice" },
                "action": { "name": "$50" },
                "resource": { "type": "$", "id": "c-1", "properties": { "n": 10, "b": true, "z": null, "l": ["a", "t"] } },
                "context": { "price": "$$x", "plain": "a$b" }
            })
        );
    }

    #[test]
    fn malformed_mappings_are_refused_with_the_reason() {
        let ok = json!({ "action": { "name": "a" }, "resource": { "type": "t", "id": "i" } });
        let cases = [
            (json!("evaluation"), "JSON object"),
            (json!({}), "exactly one member"),
            (
                json!({ "evaluation": ok.clone(), "evaluations": ok.clone() }),
                "exactly one member",
            ),
            (json!({ "search": ok.clone() }), "unsupported envelope"),
            (json!({ "evaluation": "$params" }), "must be an object"),
            (
                json!({ "evaluation": { "action": { "name": "a" }, "options": {} } }),
                "has only",
            ),
            (
                json!({ "evaluations": ok.clone() }),
                "needs an `evaluations` array",
            ),
            (
                json!({ "evaluations": { "evaluations": [] } }),
                "1 to 100 entries",
            ),
            (
                json!({ "evaluations": { "evaluations": "$params.list" } }),
                "not an expression",
            ),
            (
                json!({ "evaluations": { "evaluations": [ { "subject": { "id": "bob" } } ] } }),
                "identity smuggling",
            ),
            (
                json!({ "evaluations": { "evaluations": [ "$params.x" ] } }),
                "must be an object",
            ),
            (
                json!({ "evaluations": { "evaluations": [ { "options": 1 } ] } }),
                "has a member",
            ),
            (
                json!({ "evaluation": { "action": { "name": "$" } } }),
                "must be followed",
            ),
            (
                json!({ "evaluation": { "action": { "name": "$)(" } } }),
                "not CEL",
            ),
        ];
        for (m, why) in cases {
            let e = Mapping::parse(&m).unwrap_err();
            assert!(e.0.contains(why), "{m}: {why:?} not in {e}");
        }
        let mut deep = json!("x");
        for _ in 0..MAX_DEPTH + 1 {
            deep = json!([deep]);
        }
        let e = Mapping::parse(&json!({ "evaluation": { "context": deep } })).unwrap_err();
        assert!(e.0.contains("nest"), "{e}");
        let wide: Vec<Value> = (0..MAX_NODES).map(|i| json!(i)).collect();
        let e = Mapping::parse(&json!({ "evaluation": { "context": { "l": wide } } })).unwrap_err();
        assert!(e.0.contains("at most"), "{e}");
    }

    #[test]
    fn evaluations_options_are_literal_and_known() {
        let entries = json!([{ "action": { "name": "read" } }]);
        for semantic in SEMANTICS {
            let m = Mapping::parse(&json!({ "evaluations": {
                "options": { "evaluations_semantic": semantic }, "evaluations": entries } }))
            .unwrap();
            let want: Semantic = serde_json::from_value(json!(semantic)).unwrap();
            assert_eq!(m.semantic(), want);
            // Passed on to the decision point as written.
            let p = json!({});
            let t = json!({});
            let body = m.resolve(inputs(&p, &t)).unwrap();
            assert_eq!(body["options"], json!({ "evaluations_semantic": semantic }));
        }
        let m = Mapping::parse(&json!({ "evaluations": { "evaluations": entries } })).unwrap();
        assert_eq!(m.semantic(), Semantic::ExecuteAll);
        for (options, why) in [
            (json!("$params.options"), "must be an object"),
            (json!({ "evaluations_semantic": "any" }), "use one of"),
            (
                json!({ "evaluations_semantic": "$params.arguments.s" }),
                "use one of",
            ),
            (json!({ "evaluations_semantic": 1 }), "use one of"),
            (json!({ "fan_out": true }), "knows only"),
        ] {
            let e = Mapping::parse(
                &json!({ "evaluations": { "options": options, "evaluations": entries } }),
            )
            .unwrap_err();
            assert!(e.0.contains(why), "{options}: {why:?} not in {e}");
        }
    }

    #[test]
    fn literal_asks_name_what_listing_can_probe() {
        let m = Mapping::parse(&json!({ "evaluations": {
            "action": { "name": "read" },
            "evaluations": [
                { "resource": { "type": "o", "id": "bucket/a" } },
                { "action": { "name": "$params.arguments.verb" }, "resource": { "type": "o", "id": "$params.arguments.to" } }
            ]
        }}))
        .unwrap();
        assert_eq!(
            m.literal_asks(),
            [(Some("read".into()), Some("bucket/a".into())), (None, None)]
        );
    }

    #[test]
    fn the_server_identity_comes_from_aud() {
        let p = json!({});
        let me = Some("https://gw.example/mcp");
        let cases = [
            (
                json!({ "aud": "https://mcp.example.com" }),
                Ok("https://mcp.example.com"),
            ),
            (
                json!({ "aud": ["https://other", "https://gw.example/mcp"] }),
                Ok("https://gw.example/mcp"),
            ),
            (json!({ "aud": ["https://other"] }), Err("exactly once")),
            (json!({}), Ok("https://gw.example/mcp")),
        ];
        for (t, want) in cases {
            let got = server_identity(Inputs {
                params: &p,
                token: &t,
                server: me,
            });
            match want {
                Ok(v) => assert_eq!(got.unwrap(), v),
                Err(why) => assert!(got.unwrap_err().0.contains(why)),
            }
        }
        assert!(
            server_identity(Inputs {
                params: &p,
                token: &json!({}),
                server: None
            })
            .is_err()
        );
        assert!(
            server_identity(Inputs {
                params: &p,
                token: &json!({ "aud": 7 }),
                server: me
            })
            .is_err()
        );
    }
}
