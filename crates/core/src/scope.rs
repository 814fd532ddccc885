//! Scopes: sets of (action, resource) grants, and the rule that they only narrow.
//!
//! A pattern is either an exact string or a prefix followed by one trailing
//! `*` (`invoice.*`, `erp:invoices/*`, `*`). Wildcards anywhere else are
//! refused rather than guessed at: with prefix patterns, "is A contained in
//! B" has an exact, cheap answer, which is what attenuation needs. Containment
//! is decided grant by grant: a grant is inside a scope only if one grant of
//! that scope covers it alone. That can refuse a child that a union of parent
//! grants would technically cover, never the reverse — it fails closed.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::RuleError;

const MAX_PATTERN_LEN: usize = 256;
/// A scope larger than this is refused: ceilings are reviewed by people.
pub const MAX_GRANTS: usize = 256;

/// An exact value or a trailing-`*` prefix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Pattern {
    text: String,
}

impl Pattern {
    fn parse(what: &'static str, s: &str, allowed: fn(char) -> bool) -> Result<Self, RuleError> {
        let bad = |why: &str| RuleError::invalid(what, format!("{s:?}: {why}"));
        if s.is_empty() || s.len() > MAX_PATTERN_LEN {
            return Err(bad("must be 1 to 256 characters"));
        }
        let body = s.strip_suffix('*').unwrap_or(s);
        if body.contains('*') {
            return Err(bad("'*' is only allowed once, at the end"));
        }
        if let Some(c) = body.chars().find(|c| !allowed(*c)) {
            return Err(bad(&format!("character {c:?} is not allowed")));
        }
        Ok(Pattern { text: s.to_owned() })
    }

    fn prefix(&self) -> Option<&str> {
        self.text.strip_suffix('*')
    }

    /// Does this pattern match the concrete value `v`?
    fn matches(&self, v: &str) -> bool {
        match self.prefix() {
            Some(p) => v.starts_with(p),
            None => self.text == v,
        }
    }

    /// A concrete value matched by both patterns, if there is one.
    fn common_value(&self, other: &Pattern) -> Option<String> {
        match (self.prefix(), other.prefix()) {
            // Two prefixes meet exactly when one extends the other; the
            // longer prefix itself is then matched by both.
            (Some(p), Some(q)) if p.starts_with(q) => Some(p.to_owned()),
            (Some(p), Some(q)) if q.starts_with(p) => Some(q.to_owned()),
            (Some(_), Some(_)) => None,
            (None, _) => other.matches(&self.text).then(|| self.text.clone()),
            (Some(_), None) => self.matches(&other.text).then(|| other.text.clone()),
        }
    }

    /// Is every value matched by `self` also matched by `outer`?
    fn within(&self, outer: &Pattern) -> bool {
        match (self.prefix(), outer.prefix()) {
            // A prefix pattern matches infinitely many values; only a prefix
            // that is itself a prefix of ours covers them all.
            (Some(p), Some(q)) => p.starts_with(q),
            (Some(_), None) => false,
            (None, _) => outer.matches(&self.text),
        }
    }
}

fn action_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | ':')
}

fn resource_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/' | '@' | '#' | '=')
}

macro_rules! pattern_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $chars:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String))]
        #[serde(transparent)]
        pub struct $name(#[serde(serialize_with = "ser_pattern")] Pattern);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, RuleError> {
                Pattern::parse($what, s, $chars).map($name)
            }
            pub fn as_str(&self) -> &str {
                &self.0.text
            }
            /// Does this pattern match the concrete value?
            pub fn matches(&self, value: &str) -> bool {
                self.0.matches(value)
            }
            /// Is everything this pattern matches also matched by `outer`?
            pub fn within(&self, outer: &Self) -> bool {
                self.0.within(&outer.0)
            }
            /// A concrete value both patterns match, if any does.
            pub fn common_value(&self, other: &Self) -> Option<String> {
                self.0.common_value(&other.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0.text)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $name::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
            }
        }
    };
}

fn ser_pattern<S: serde::Serializer>(p: &Pattern, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.text)
}

pattern_type!(
    /// An action or action pattern, e.g. `invoice.read` or `invoice.*`.
    ActionPattern, "action", action_char
);
pattern_type!(
    /// A resource or resource pattern, e.g. `erp:invoices/2026-*`.
    ResourcePattern, "resource", resource_char
);

/// One permission: the actions matching `action` on the resources matching `resource`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub action: ActionPattern,
    pub resource: ResourcePattern,
}

impl Grant {
    pub fn new(action: &str, resource: &str) -> Result<Self, RuleError> {
        Ok(Grant {
            action: ActionPattern::parse(action)?,
            resource: ResourcePattern::parse(resource)?,
        })
    }

    /// Is everything this grant allows also allowed by `outer`?
    pub fn within(&self, outer: &Grant) -> bool {
        self.action.within(&outer.action) && self.resource.within(&outer.resource)
    }

    /// Does this grant allow the concrete action on the concrete resource?
    pub fn allows(&self, action: &str, resource: &str) -> bool {
        self.action.matches(action) && self.resource.matches(resource)
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.action, self.resource)
    }
}

/// A set of grants. Kept sorted and free of duplicates so that equal scopes
/// serialise (and therefore hash) identically.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = Vec<Grant>))]
#[serde(transparent)]
pub struct Scope(BTreeSet<Grant>);

impl Scope {
    pub fn new(grants: impl IntoIterator<Item = Grant>) -> Result<Self, RuleError> {
        let set: BTreeSet<Grant> = grants.into_iter().collect();
        if set.len() > MAX_GRANTS {
            return Err(RuleError::invalid(
                "scope",
                format!("at most {MAX_GRANTS} grants"),
            ));
        }
        Ok(Scope(set))
    }

    pub fn empty() -> Self {
        Scope(BTreeSet::new())
    }

    pub fn grants(&self) -> impl Iterator<Item = &Grant> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Does one grant of this scope cover `grant` on its own?
    pub fn covers(&self, grant: &Grant) -> bool {
        self.0.iter().any(|g| grant.within(g))
    }

    /// Does this scope allow the concrete action on the concrete resource?
    pub fn allows(&self, action: &str, resource: &str) -> bool {
        self.0.iter().any(|g| g.allows(action, resource))
    }

    /// Could this scope allow `action` on some resource that `resources`
    /// matches? A gateway lists a tool by this before it knows the call's
    /// arguments; the call itself is then decided on its concrete resource.
    pub fn reaches(&self, action: &str, resources: &ResourcePattern) -> bool {
        self.0
            .iter()
            .any(|g| g.action.matches(action) && g.resource.common_value(resources).is_some())
    }

    /// Checks that this scope is no wider than `outer`, naming the first
    /// grant that is not (so a refusal can say exactly what was too wide).
    pub fn check_within(&self, outer: &Scope) -> Result<(), Grant> {
        match self.0.iter().find(|g| !outer.covers(g)) {
            Some(g) => Err(g.clone()),
            None => Ok(()),
        }
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Scope::new(Vec::<Grant>::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn g(a: &str, r: &str) -> Grant {
        Grant::new(a, r).unwrap()
    }

    #[test]
    fn prefix_patterns_contain_narrower_prefixes_and_exact_values() {
        assert!(g("invoice.read", "erp:inv/1").within(&g("invoice.*", "erp:*")));
        assert!(g("invoice.*", "erp:inv/*").within(&g("invoice.*", "erp:*")));
        assert!(g("invoice.read", "erp:inv/1").within(&g("*", "*")));
        assert!(!g("invoice.*", "erp:inv/1").within(&g("invoice.read", "erp:inv/1")));
        assert!(!g("*", "x").within(&g("invoice.*", "x")));
        assert!(!g("payment.create", "erp:inv/1").within(&g("invoice.*", "erp:*")));
    }

    #[test]
    fn misplaced_wildcards_and_odd_characters_are_refused() {
        for bad in ["inv*oice", "**", "a b", "", "Invoice.read", "x\n"] {
            assert!(ActionPattern::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(ResourcePattern::parse("erp:*/x").is_err());
        assert!(ResourcePattern::parse(&"r".repeat(257)).is_err());
    }

    #[test]
    fn check_within_names_the_offending_grant() {
        let parent = Scope::new([g("invoice.read", "erp:*")]).unwrap();
        let child =
            Scope::new([g("invoice.read", "erp:a"), g("payment.create", "bank:1")]).unwrap();
        assert_eq!(
            child.check_within(&parent),
            Err(g("payment.create", "bank:1"))
        );
    }

    #[test]
    fn scope_deserialises_sorted_and_deduplicated() {
        let s: Scope = serde_json::from_str(
            r#"[{"action":"b","resource":"x"},{"action":"a","resource":"x"},{"action":"b","resource":"x"}]"#,
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"[{"action":"a","resource":"x"},{"action":"b","resource":"x"}]"#
        );
        assert!(
            serde_json::from_str::<Scope>(r#"[{"action":"a","resource":"x","extra":1}]"#).is_err()
        );
    }

    fn pattern() -> impl Strategy<Value = String> {
        // A small alphabet so that random patterns actually overlap.
        ("[ab.]{0,4}", any::<bool>()).prop_map(|(s, star)| {
            if star {
                format!("{s}*")
            } else if s.is_empty() {
                "a".into()
            } else {
                s
            }
        })
    }

    fn grant() -> impl Strategy<Value = Grant> {
        (pattern(), pattern()).prop_map(|(a, r)| g(&a, &r))
    }

    proptest! {
        /// The attenuation rule: if a grant is judged within another, no
        /// concrete (action, resource) is allowed by the inner but not the outer.
        #[test]
        fn within_never_widens(inner in grant(), outer in grant(), a in "[ab.]{0,6}", r in "[ab.]{0,6}") {
            if inner.within(&outer) && inner.allows(&a, &r) {
                prop_assert!(outer.allows(&a, &r));
            }
        }

        #[test]
        fn within_is_reflexive_and_transitive(x in grant(), y in grant(), z in grant()) {
            prop_assert!(x.within(&x));
            if x.within(&y) && y.within(&z) {
                prop_assert!(x.within(&z));
            }
        }

        #[test]
        fn scope_within_is_sound(child in proptest::collection::vec(grant(), 0..5),
                                 parent in proptest::collection::vec(grant(), 0..5),
                                 a in "[ab.]{0,6}", r in "[ab.]{0,6}") {
            let child = Scope::new(child).unwrap();
            let parent = Scope::new(parent).unwrap();
            if child.check_within(&parent).is_ok() && child.allows(&a, &r) {
                prop_assert!(parent.allows(&a, &r));
            }
        }

        /// Two patterns share a value exactly when `common_value` finds one,
        /// and the one it finds is matched by both.
        #[test]
        fn common_value_is_exact(x in pattern(), y in pattern(), v in "[ab.]{0,6}") {
            let (x, y) = (ResourcePattern::parse(&x).unwrap(), ResourcePattern::parse(&y).unwrap());
            match x.common_value(&y) {
                Some(w) => prop_assert!(x.matches(&w) && y.matches(&w)),
                None => prop_assert!(!(x.matches(&v) && y.matches(&v))),
            }
        }

        /// A tool whose calls the scope could allow is never hidden, and one
        /// it reaches has at least one resource the scope allows.
        #[test]
        fn reaches_hides_only_what_can_never_be_allowed(
            grants in proptest::collection::vec(grant(), 0..4),
            tool in pattern(), a in "[ab.]{0,4}", r in "[ab.]{0,6}",
        ) {
            let scope = Scope::new(grants).unwrap();
            let tool = ResourcePattern::parse(&tool).unwrap();
            if tool.matches(&r) && scope.allows(&a, &r) {
                prop_assert!(scope.reaches(&a, &tool));
            }
            if scope.reaches(&a, &tool) {
                let witness = scope.grants()
                    .filter(|g| g.action.matches(&a))
                    .find_map(|g| g.resource.common_value(&tool));
                prop_assert!(witness.is_some_and(|w| tool.matches(&w) && scope.allows(&a, &w)));
            }
        }

        #[test]
        fn pattern_parser_never_panics(s in ".{0,40}") {
            let _ = ActionPattern::parse(&s);
            let _ = ResourcePattern::parse(&s);
        }
    }
}
