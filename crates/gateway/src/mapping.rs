//! From what an agent sends to what Mandate decides on: tool arguments and
//! request paths become a concrete resource.
//!
//! These inputs are untrusted. A value spliced into a resource could widen
//! it (`*`), climb out of it (`..`), or add a segment (`/`) that the scope
//! check and the upstream read differently, so values are held to a small
//! alphabet and paths are refused rather than normalised: what is decided
//! is exactly what is forwarded.

use mandate_core::scope::ResourcePattern;
use serde::Deserialize;

/// Why a call could not be mapped; sent back to the agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MappingError(pub String);

fn bad(why: impl Into<String>) -> MappingError {
    MappingError(why.into())
}

/// Longest value taken from an argument or a path segment.
const MAX_VALUE_LEN: usize = 128;

fn value_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | ':' | '=')
}

/// One identifier: 1-128 of `A-Z a-z 0-9 . _ - @ : =`, and not `.` or `..`.
fn identifier(what: &str, v: &str) -> Result<(), MappingError> {
    if v.is_empty() || v.len() > MAX_VALUE_LEN {
        return Err(bad(format!(
            "{what} must be 1 to {MAX_VALUE_LEN} characters"
        )));
    }
    if v == "." || v == ".." {
        return Err(bad(format!("{what} {v:?} is not allowed")));
    }
    if let Some(c) = v.chars().find(|c| !value_char(*c)) {
        return Err(bad(format!(
            "{what} contains {c:?}; only letters, digits and . _ - @ : = are allowed"
        )));
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Argument(String),
}

/// A resource with `{argument}` placeholders: `crm:customers/{customer_id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceTemplate {
    parts: Vec<Part>,
    /// Every resource the template can produce matches this.
    pattern: ResourcePattern,
}

impl ResourceTemplate {
    pub fn parse(s: &str) -> Result<Self, MappingError> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| bad(format!("{s:?}: '{{' without '}}'")))?
                + open;
            let name = &rest[open + 1..close];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(bad(format!(
                    "{s:?}: placeholder {{{name}}} must name an argument (letters, digits, _)"
                )));
            }
            parts.push(Part::Argument(name.to_owned()));
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        let literal_prefix: String = parts
            .iter()
            .map_while(|p| match p {
                Part::Literal(l) => Some(l.as_str()),
                Part::Argument(_) => None,
            })
            .collect();
        let has_argument = parts.iter().any(|p| matches!(p, Part::Argument(_)));
        if literal_prefix.contains('}') || literal_prefix.contains('*') {
            return Err(bad(format!("{s:?}: stray '}}' or '*'")));
        }
        let pattern = if has_argument {
            format!("{literal_prefix}*")
        } else {
            literal_prefix
        };
        let pattern = ResourcePattern::parse(&pattern).map_err(|e| bad(e.to_string()))?;
        // The literal parts after the first placeholder must be resource text too.
        for p in &parts {
            if let Part::Literal(l) = p
                && (l.contains('}') || l.contains('*') || ResourcePattern::parse(l).is_err())
            {
                return Err(bad(format!("{s:?}: {l:?} is not resource text")));
            }
        }
        Ok(ResourceTemplate { parts, pattern })
    }

    /// A template without placeholders.
    pub fn literal(s: &str) -> Result<Self, MappingError> {
        let t = Self::parse(s)?;
        if t.parts.iter().any(|p| matches!(p, Part::Argument(_))) {
            return Err(bad(format!("{s:?}: no placeholders here")));
        }
        Ok(t)
    }

    /// What every resource of this template matches (for listing a tool).
    pub fn pattern(&self) -> &ResourcePattern {
        &self.pattern
    }

    /// The concrete resource of a call with these arguments.
    pub fn render(
        &self,
        args: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, MappingError> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Literal(l) => out.push_str(l),
                Part::Argument(name) => out.push_str(&argument(args, name)?),
            }
        }
        Ok(out)
    }
}

impl<'de> Deserialize<'de> for ResourceTemplate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ResourceTemplate::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A top-level argument as an identifier (a string, or an integer).
pub fn argument(
    args: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<String, MappingError> {
    let what = format!("argument {name:?}");
    let v = match args.get(name) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        Some(_) => return Err(bad(format!("{what} must be a string or an integer"))),
        None => return Err(bad(format!("{what} is required to decide this call"))),
    };
    identifier(&what, &v)?;
    Ok(v)
}

/// A route prefix as configured: `/billing`, segments only, no trailing `/`.
pub fn path_prefix(prefix: &str) -> Result<String, MappingError> {
    let trimmed = prefix.trim_end_matches('/');
    let Some(body) = trimmed.strip_prefix('/') else {
        return Err(bad(format!("{prefix:?} must start with '/'")));
    };
    for seg in body.split('/') {
        identifier("a prefix segment", seg)?;
    }
    Ok(trimmed.to_owned())
}

/// The path below a route's prefix as a resource suffix: `/invoices/42` ->
/// `invoices/42`. Empty, `.` and `..` segments, percent-escapes and any
/// character outside the identifier alphabet are refused.
pub fn path_resource(rest: &str) -> Result<String, MappingError> {
    let body = rest.strip_prefix('/').unwrap_or(rest);
    if body.is_empty() {
        return Ok(String::new());
    }
    for seg in body.split('/') {
        identifier("a path segment", seg)?;
    }
    Ok(body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn args(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn templates_render_and_list_by_their_literal_prefix() {
        let t = ResourceTemplate::parse("crm:customers/{id}/notes/{note}").unwrap();
        assert_eq!(t.pattern().as_str(), "crm:customers/*");
        assert_eq!(
            t.render(&args(json!({"id": "c-1", "note": 7}))).unwrap(),
            "crm:customers/c-1/notes/7"
        );
        let fixed = ResourceTemplate::parse("crm:search").unwrap();
        assert_eq!(fixed.pattern().as_str(), "crm:search");
        for bad in ["crm:{", "crm:{a b}", "crm:{}", "crm:*", "crm:}{x}", "{x}*"] {
            assert!(ResourceTemplate::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn arguments_cannot_widen_climb_or_add_segments() {
        let t = ResourceTemplate::parse("crm:customers/{id}").unwrap();
        for v in [
            json!("*"),
            json!("1/2"),
            json!(".."),
            json!("a b"),
            json!(""),
            json!("%2e%2e"),
            json!(1.5),
            json!(["1"]),
            json!({"a": 1}),
            json!(null),
            json!("x".repeat(129)),
        ] {
            assert!(t.render(&args(json!({ "id": v }))).is_err(), "{v} accepted");
        }
        assert!(
            t.render(&args(json!({})))
                .unwrap_err()
                .0
                .contains("required")
        );
    }

    #[test]
    fn paths_are_refused_rather_than_normalised() {
        assert_eq!(path_resource("/invoices/42").unwrap(), "invoices/42");
        assert_eq!(path_resource("").unwrap(), "");
        for bad in [
            "/a/../b",
            "/a//b",
            "/./a",
            "/a/%2e%2e",
            "/a/b/",
            "/a*",
            "/a\\b",
        ] {
            assert!(path_resource(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(path_prefix("/billing/").unwrap(), "/billing");
        assert!(path_prefix("billing").is_err());
    }

    proptest! {
        /// Whatever an agent sends, a mapped resource stays inside the
        /// template's pattern and contains no wildcard or `..` segment.
        #[test]
        fn rendered_resources_stay_inside_the_template(id in ".{0,20}", n in any::<i64>()) {
            let t = ResourceTemplate::parse("crm:customers/{id}/n/{n}").unwrap();
            if let Ok(r) = t.render(&args(json!({ "id": id, "n": n }))) {
                prop_assert!(t.pattern().matches(&r));
                prop_assert!(!r.contains('*'));
                prop_assert!(!r.split('/').any(|s| s == ".." || s == "." || s.is_empty()));
                prop_assert_eq!(r.matches('/').count(), 3);
            }
        }

        #[test]
        fn path_resources_have_only_plain_segments(p in "(/[a-z.%*]{0,3}){0,4}") {
            if let Ok(r) = path_resource(&p) {
                prop_assert!(r.is_empty() || r.split('/').all(|s| !s.is_empty() && s != ".." && s != "."));
                prop_assert!(!r.contains('%') && !r.contains('*'));
                prop_assert_eq!(format!("/{r}"), if p.is_empty() { "/".to_owned() } else { p.clone() });
            }
        }
    }
}
