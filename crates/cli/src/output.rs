//! Human tables by default, JSON for scripts.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use mandate_core::agent::Agent;
use mandate_core::human::Human;
use serde::Serialize;

pub fn json<T: Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).expect("serialisable"));
}

pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header);
    t
}

pub fn humans(list: &[Human]) -> Table {
    let mut t = table(&["id", "name", "email", "issuer / subject", "status"]);
    for h in list {
        t.add_row(vec![
            h.id.to_string(),
            h.display_name.clone(),
            h.email.clone().unwrap_or_default(),
            format!("{} / {}", h.issuer, h.subject),
            h.status.as_str().to_owned(),
        ]);
    }
    t
}

/// `owners` maps owner ids to display names where known.
pub fn agents(list: &[Agent], owner_name: impl Fn(&Agent) -> String) -> Table {
    let mut t = table(&[
        "name",
        "kind",
        "SPIFFE id",
        "owner",
        "status",
        "ceiling",
        "keys",
        "tags",
    ]);
    for a in list {
        let status = if a.orphaned {
            format!("{} (ORPHANED)", a.status.as_str())
        } else {
            a.status.as_str().to_owned()
        };
        t.add_row(vec![
            a.name.to_string(),
            a.kind.as_str().to_owned(),
            a.spiffe_id.to_string(),
            owner_name(a),
            status,
            a.ceiling
                .grants()
                .map(|g| g.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
            a.keys.len().to_string(),
            a.tags.iter().cloned().collect::<Vec<_>>().join(" "),
        ]);
    }
    t
}

pub fn agent_detail(a: &Agent) -> Table {
    let mut t = table(&["field", "value"]);
    let keys = a
        .keys
        .iter()
        .map(|k| format!("{} (added {})", k.kid, k.created_at.rfc3339()))
        .collect::<Vec<_>>();
    for (k, v) in [
        ("id", a.id.to_string()),
        ("name", a.name.to_string()),
        ("kind", a.kind.as_str().into()),
        ("SPIFFE id", a.spiffe_id.to_string()),
        (
            "owner",
            format!(
                "{}{}",
                a.owner,
                if a.orphaned {
                    " (deactivated: ORPHANED)"
                } else {
                    ""
                }
            ),
        ),
        ("status", a.status.as_str().into()),
        ("description", a.description.clone()),
        (
            "ceiling",
            a.ceiling
                .grants()
                .map(|g| g.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        ("keys", keys.join("\n")),
        ("tools", a.tools.join(", ")),
        ("data sources", a.data_sources.join(", ")),
        ("tags", a.tags.iter().cloned().collect::<Vec<_>>().join(" ")),
        ("created", a.created_at.rfc3339()),
        ("updated", a.updated_at.rfc3339()),
    ] {
        t.add_row(vec![k.to_owned(), v]);
    }
    t
}

pub fn tasks(list: &[mandate_core::task::Task]) -> Table {
    let now = mandate_server::now();
    let mut t = table(&[
        "id", "agent", "status", "depth", "purpose", "scope", "expires",
    ]);
    for task in list {
        t.add_row(vec![
            task.id.to_string(),
            task.assignee_spiffe.to_string(),
            task.status_at(now).as_str().to_owned(),
            task.depth.to_string(),
            task.purpose.clone(),
            task.scope
                .grants()
                .map(|g| g.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
            task.expires_at.rfc3339(),
        ]);
    }
    t
}
