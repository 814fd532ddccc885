//! COAZ expressions: Common Expression Language through the `cel` crate
//! (cel-rust), never an evaluator of our own. The standard environment has
//! the optional syntax on, so `token.?client_id` yields an optional value,
//! and an empty one is the profile's *absent*: its field is left out.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use cel::objects::{Key, OptionalValue};
use cel::{Context, Env, Program};
use serde_json::Value;

use super::{MappingError, bad};

/// Longest expression accepted, in bytes.
pub const MAX_EXPRESSION_LEN: usize = 4096;

/// The standard CEL environment with optional values and the standard macros
/// (`has`, `all`, `exists`, `exists_one`, `map`, `filter`).
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// One compiled expression, with its source for error messages.
pub struct Expression {
    source: String,
    program: Program,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "${}", self.source)
    }
}

impl PartialEq for Expression {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Expression {
    /// Compiles the text after the leading `$`.
    pub fn compile(source: &str) -> Result<Self, MappingError> {
        if source.trim().is_empty() {
            return Err(bad(
                "'$' must be followed by a CEL expression (write '$$' for a literal '$')",
            ));
        }
        if source.len() > MAX_EXPRESSION_LEN {
            return Err(bad(format!(
                "expression '${}...' is longer than {MAX_EXPRESSION_LEN} bytes",
                source.chars().take(32).collect::<String>()
            )));
        }
        let program = ENV.compile(source).map_err(|e| {
            bad(format!(
                "expression '${source}' is not CEL: {}",
                one_line(&e.to_string())
            ))
        })?;
        Ok(Expression {
            source: source.to_owned(),
            program,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The expression's value over `params` and `token`; `None` is *absent*
    /// (an empty optional).
    pub fn eval(&self, params: &Value, token: &Value) -> Result<Option<Value>, MappingError> {
        let failed = |why: String| bad(format!("expression '${}' failed: {why}", self.source));
        let mut ctx = Context::with_env(ENV.clone());
        ctx.add_variable_from_value("params", to_cel(params));
        ctx.add_variable_from_value("token", to_cel(token));
        let v = self
            .program
            .execute(&ctx)
            .map_err(|e| failed(one_line(&e.to_string())))?;
        let v = match <&OptionalValue>::try_from(&v) {
            Ok(opt) => match opt.value() {
                None => return Ok(None),
                Some(inner) => inner.clone(),
            },
            Err(_) => v,
        };
        from_cel(&v).map(Some).map_err(failed)
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// JSON into CEL. Integers are CEL `int` when they fit (so `amount > 10000`
/// compares like with like), `uint` above that, other numbers `double`.
pub fn to_cel(v: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(a) => cel::Value::List(Arc::new(a.iter().map(to_cel).collect())),
        Value::Object(o) => {
            let map: HashMap<Key, cel::Value> = o
                .iter()
                .map(|(k, v)| (Key::from(k.clone()), to_cel(v)))
                .collect();
            cel::Value::from(map)
        }
    }
}

/// CEL back into JSON: the expression contract wants a JSON value.
fn from_cel(v: &cel::Value) -> Result<Value, String> {
    if let Ok(opt) = <&OptionalValue>::try_from(v) {
        // An optional inside a list or map has no JSON form.
        return match opt.value() {
            Some(inner) => from_cel(inner),
            None => Err("an empty optional inside a value has no JSON form".into()),
        };
    }
    match v {
        cel::Value::Float(f) if !f.is_finite() => Err(format!("{f} is not a JSON number")),
        cel::Value::List(items) => items
            .iter()
            .map(from_cel)
            .collect::<Result<_, _>>()
            .map(Value::Array),
        cel::Value::Map(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m.map.iter() {
                let key = match k {
                    Key::String(s) => s.to_string(),
                    other => return Err(format!("map key {other:?} is not a string")),
                };
                out.insert(key, from_cel(v)?);
            }
            Ok(Value::Object(out))
        }
        other => other
            .json()
            .map_err(|_| format!("its value ({}) is not a JSON value", other.type_of())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(src: &str, params: Value, token: Value) -> Result<Option<Value>, MappingError> {
        Expression::compile(src)?.eval(&params, &token)
    }

    #[test]
    fn selection_optional_selection_and_conditionals() {
        let p = json!({ "name": "t", "arguments": { "id": "c-1", "amount": 15000, "customer-id": "x" } });
        let t = json!({ "sub": "alice", "roles": ["treasury"] });
        assert_eq!(
            eval("params.arguments.id", p.clone(), t.clone()).unwrap(),
            Some(json!("c-1"))
        );
        assert_eq!(
            eval("params.arguments[\"customer-id\"]", p.clone(), t.clone()).unwrap(),
            Some(json!("x"))
        );
        assert_eq!(
            eval("token.?client_id", p.clone(), t.clone()).unwrap(),
            None
        );
        assert_eq!(
            eval("token.?sub", p.clone(), t.clone()).unwrap(),
            Some(json!("alice"))
        );
        assert_eq!(
            eval(
                "params.arguments.amount > 10000 ? 'high' : 'standard'",
                p.clone(),
                t.clone()
            )
            .unwrap(),
            Some(json!("high"))
        );
        assert_eq!(
            eval(
                "token.roles.exists(r, r == 'treasury') ? 'treasury_user' : 'standard_user'",
                p.clone(),
                t.clone()
            )
            .unwrap(),
            Some(json!("treasury_user"))
        );
        assert_eq!(
            eval("[params.name, 1]", p.clone(), t.clone()).unwrap(),
            Some(json!(["t", 1]))
        );
        assert_eq!(
            eval("{'a': params.name}", p.clone(), t.clone()).unwrap(),
            Some(json!({ "a": "t" }))
        );
        let e = eval("params.arguments.region", p.clone(), t.clone()).unwrap_err();
        assert!(
            e.0.starts_with("expression '$params.arguments.region' failed:"),
            "{e}"
        );
        assert!(e.0.contains("region"), "{e}");
    }

    #[test]
    fn bad_expressions_are_refused_when_compiled() {
        for (src, why) in [
            ("", "must be followed"),
            ("params.", "not CEL"),
            ("$params.name", "not CEL"),
        ] {
            let e = Expression::compile(src).unwrap_err();
            assert!(e.0.contains(why), "{src:?}: {e}");
        }
        assert!(Expression::compile(&"a".repeat(MAX_EXPRESSION_LEN + 1)).is_err());
    }

    #[test]
    fn other_variables_and_values_without_a_json_form_are_errors() {
        // Only `params` and `token` exist (comprehension variables aside).
        let e = eval("secrets.key", json!({}), json!({})).unwrap_err();
        assert!(e.0.contains("failed"), "{e}");
        let e = eval("1.0 / 0.0", json!({}), json!({})).unwrap_err();
        assert!(e.0.contains("failed"), "{e}");
    }
}
