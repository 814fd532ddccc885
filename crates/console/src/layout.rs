//! The page frame: head, skip link, navigation by role, who is signed in.
//!
//! Accessibility is built in here once: `lang`, a skip link to the main
//! content, landmarks (`header`, `nav`, `main`), `aria-current` on the page
//! being shown, and a stylesheet with visible focus and WCAG AA contrast.

use axum::response::Html;
use maud::{DOCTYPE, Markup, html};

use crate::auth::Viewer;

/// The console's sections, in navigation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Inventory,
    Tasks,
    Approvals,
    Roai,
    Posture,
    Audit,
}

impl Nav {
    const ALL: [Nav; 6] = [
        Nav::Inventory,
        Nav::Tasks,
        Nav::Approvals,
        Nav::Roai,
        Nav::Posture,
        Nav::Audit,
    ];

    fn label(self) -> &'static str {
        match self {
            Nav::Inventory => "Inventory",
            Nav::Tasks => "Tasks",
            Nav::Approvals => "Approvals",
            Nav::Roai => "Return on AI",
            Nav::Posture => "Posture",
            Nav::Audit => "Audit",
        }
    }

    fn href(self) -> &'static str {
        match self {
            Nav::Inventory => "/ui/inventory",
            Nav::Tasks => "/ui/tasks",
            Nav::Approvals => "/ui/approvals",
            Nav::Roai => "/ui/roai",
            Nav::Posture => "/ui/posture",
            Nav::Audit => "/ui/audit",
        }
    }

    /// Whether the viewer has anything to see there.
    fn shown_to(self, v: &Viewer) -> bool {
        let r = v.roles;
        match self {
            Nav::Inventory | Nav::Tasks => r.reads_all() || r.owner,
            Nav::Approvals => r.approver || r.reads_all(),
            Nav::Roai => true,
            Nav::Posture | Nav::Audit => r.reads_all(),
        }
    }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="referrer" content="same-origin";
            title { (title) " · Mandate" }
            link rel="stylesheet" href=(crate::assets::CSS_PATH);
        }
    }
}

/// The document around every page: head, skip link, the top bar, main.
fn document(title: &str, top: Markup, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                (head(title))
                body {
                    a.skip href="#main" { "Skip to content" }
                    header.top {
                        span.brand { "Mandate" }
                        (top)
                    }
                    main #main tabindex="-1" {
                        h1 { (title) }
                        (body)
                    }
                }
            }
        }
        .into_string(),
    )
}

/// A page for a signed-in viewer.
pub fn page(v: &Viewer, current: Nav, title: &str, body: Markup) -> Html<String> {
    let top = html! {
        nav aria-label="Console" {
            ul {
                @for n in Nav::ALL {
                    @if n.shown_to(v) {
                        li {
                            @if n == current {
                                a href=(n.href()) aria-current="page" { (n.label()) }
                            } @else {
                                a href=(n.href()) { (n.label()) }
                            }
                        }
                    }
                }
            }
        }
        div.who {
            span { (v.human.display_name) }
            @let roles = v.roles.names();
            @if !roles.is_empty() {
                span.roles { " (" (roles.join(", ")) ")" }
            }
            form method="post" action="/ui/sign-out" {
                input type="hidden" name="csrf" value=(v.session.csrf);
                button type="submit" { "Sign out" }
            }
        }
    };
    document(title, top, body)
}

/// A page without navigation: sign-in and error messages.
pub fn bare_page(title: &str, body: Markup) -> Html<String> {
    document(title, html! {}, body)
}

/// An error or notice, with a way back.
pub fn message_page(title: &str, detail: &str) -> Html<String> {
    bare_page(
        title,
        html! {
            p.error role="alert" { (detail) }
            p { a href="/ui/inventory" { "Back to the console" } }
        },
    )
}
