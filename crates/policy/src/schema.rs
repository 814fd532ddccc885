//! The Cedar schema: fixed entity types and context, actions generated per policy set.
//!
//! Mandate's actions are open-ended strings (`payments.initiate`,
//! `invoice.read`, whatever a tool is called), the same vocabulary as task
//! scopes. Cedar's validator, though, only accepts actions the schema
//! declares. A fixed action list would force a schema change for every new
//! tool, and non-strict validation would give up the very check that catches
//! a policy reading data the decision will not have. So the schema is built
//! for each policy set: the entity types and context come from
//! `mandate.cedarschema`, and every `Mandate::Action::"..."` the policy set
//! mentions is declared with the same principal, resource and context. An
//! action no policy mentions needs no declaration: only policies with an
//! unconstrained `action` (or a group, below) can apply to it, and those are
//! type-checked against the same context through the always-declared `"*"`.
//!
//! An action id ending in `*` is a *group*, with the task-scope meaning of a
//! prefix: `Mandate::Action::"payments.*"` contains every action starting with
//! `payments.`, so `action in Mandate::Action::"payments.*"` reads as it
//! would in a scope. `"*"` contains every action.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::LazyLock;

use cedar_policy::{EntityId, EntityTypeName, EntityUid, Schema, SchemaFragment};

/// The fixed part of the schema, as shipped (entity types and context).
pub const SCHEMA_TEXT: &str = include_str!("mandate.cedarschema");

/// The namespace every Mandate entity type and action lives in.
pub const NAMESPACE: &str = "Mandate";

/// The group that contains every action; always declared.
pub const ALL_ACTIONS: &str = "*";

/// The schema's entity type names, parsed once.
pub(crate) struct Types {
    pub human: EntityTypeName,
    pub agent: EntityTypeName,
    pub task: EntityTypeName,
    pub tool: EntityTypeName,
    pub resource: EntityTypeName,
    pub environment: EntityTypeName,
    pub action: EntityTypeName,
}

pub(crate) static TYPES: LazyLock<Types> = LazyLock::new(|| {
    let t = |name: &str| {
        EntityTypeName::from_str(&format!("{NAMESPACE}::{name}"))
            .expect("Mandate's entity type names are valid Cedar names")
    };
    Types {
        human: t("Human"),
        agent: t("Agent"),
        task: t("Task"),
        tool: t("Tool"),
        resource: t("Resource"),
        environment: t("Environment"),
        action: t("Action"),
    }
});

impl Types {
    pub fn uid(&self, ty: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
    }
}

/// Is this action id a group (a trailing-`*` prefix)?
pub(crate) fn is_group(action: &str) -> bool {
    action.ends_with('*')
}

/// Does group `group` contain action (or group) `action`? Groups contain
/// themselves, as Cedar's `in` is reflexive.
pub(crate) fn group_contains(group: &str, action: &str) -> bool {
    match group.strip_suffix('*') {
        Some(prefix) => action.starts_with(prefix),
        None => group == action,
    }
}

/// The groups among `groups` that contain `action`, other than itself.
pub(crate) fn parent_groups<'a>(
    action: &'a str,
    groups: impl IntoIterator<Item = &'a String> + 'a,
) -> impl Iterator<Item = &'a String> + 'a {
    groups
        .into_iter()
        .filter(move |g| g.as_str() != action && group_contains(g, action))
}

/// The full schema for a policy set that mentions `actions` (concrete actions
/// and groups; `"*"` is added).
pub(crate) fn build(actions: &BTreeSet<String>) -> Result<Schema, String> {
    let (base, _) = SchemaFragment::from_cedarschema_str(SCHEMA_TEXT)
        .map_err(|e| format!("built-in schema: {e}"))?;
    let (generated, _) = SchemaFragment::from_cedarschema_str(&action_declarations(actions))
        .map_err(|e| format!("generated action declarations: {e}"))?;
    Schema::from_schema_fragments([base, generated]).map_err(|e| format!("schema: {e}"))
}

/// Cedar-schema text declaring `actions` (plus `"*"`), each inside every
/// group that contains it.
///
/// Action ids reach here only after `ActionPattern::parse` accepted them
/// (lowercase letters, digits, `.`, `_`, `-`, `:`, one trailing `*`), so
/// they need no escaping inside the quotes.
fn action_declarations(actions: &BTreeSet<String>) -> String {
    let mut all: BTreeSet<String> = actions.clone();
    all.insert(ALL_ACTIONS.to_owned());
    let groups: Vec<String> = all.iter().filter(|a| is_group(a)).cloned().collect();
    let mut out = format!("namespace {NAMESPACE} {{\n");
    for action in &all {
        let parents: Vec<String> = parent_groups(action, &groups)
            .map(|g| format!("{g:?}"))
            .collect();
        let within = if parents.is_empty() {
            String::new()
        } else {
            format!(" in [{}]", parents.join(", "))
        };
        out.push_str(&format!(
            "  action {action:?}{within} appliesTo {{ principal: [Agent], resource: [Resource], context: RequestContext }};\n"
        ));
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_schema_builds_with_no_actions_and_with_groups() {
        let schema = build(&BTreeSet::new()).unwrap();
        assert_eq!(schema.actions().count(), 1);
        let actions: BTreeSet<String> = ["payments.*", "payments.initiate", "invoice.read"]
            .map(String::from)
            .into();
        let schema = build(&actions).unwrap();
        assert_eq!(schema.actions().count(), 4);
        let initiate = TYPES.uid(&TYPES.action, "payments.initiate");
        let declared = schema.action_entities().unwrap();
        let ancestors: BTreeSet<String> = declared
            .ancestors(&initiate)
            .unwrap()
            .map(|a| a.id().unescaped().to_owned())
            .collect();
        assert_eq!(ancestors, ["*", "payments.*"].map(String::from).into());
    }

    #[test]
    fn groups_contain_by_prefix() {
        assert!(group_contains("*", "anything"));
        assert!(group_contains("payments.*", "payments.initiate"));
        assert!(group_contains("payments.*", "payments.*"));
        assert!(!group_contains("payments.*", "invoice.read"));
        assert!(group_contains("invoice.read", "invoice.read"));
        assert!(!group_contains("invoice.read", "invoice.readx"));
    }
}
