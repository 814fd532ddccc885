//! Who is looking: the signed-in human behind a page request, their roles,
//! and the CSRF check every form post passes.
//!
//! The human is read from the store on every request, so a deactivation or
//! a role taken away holds from the next click; a session whose human can
//! no longer sign in is ended.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use mandate_core::human::{Human, HumanRole, HumanStatus};
use mandate_store::{AgentFilter, PageRequest};

use crate::Console;
use crate::error::ConsoleError;
use crate::security;
use crate::session::SessionView;

/// What the signed-in human may see and do in the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// The `admin` role: sees everything.
    pub admin: bool,
    /// The `auditor` role: reads everything, changes nothing.
    pub auditor: bool,
    /// The `approver` role: answers approval requests.
    pub approver: bool,
    /// Owns at least one agent: sees their agents and their tasks.
    pub owner: bool,
}

impl Roles {
    /// Admins and auditors read the whole registry, posture and log.
    pub fn reads_all(&self) -> bool {
        self.admin || self.auditor
    }

    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        for (on, name) in [
            (self.admin, "admin"),
            (self.auditor, "auditor"),
            (self.approver, "approver"),
            (self.owner, "owner"),
        ] {
            if on {
                v.push(name);
            }
        }
        v
    }
}

/// A request from a signed-in human.
pub struct Viewer {
    pub human: Human,
    pub roles: Roles,
    pub session: SessionView,
}

impl Viewer {
    /// Refuses a form whose CSRF token is missing or is not this session's.
    pub fn check_csrf(&self, presented: Option<&str>) -> Result<(), ConsoleError> {
        match presented {
            Some(t) if self.session.csrf_matches(t) => Ok(()),
            _ => Err(ConsoleError::Forbidden(
                "this form was not sent by your console session (its CSRF token is missing or \
                 wrong); reload the page and send it again"
                    .into(),
            )),
        }
    }

    pub fn forbid_unless(&self, allowed: bool, what: &str) -> Result<(), ConsoleError> {
        if allowed {
            Ok(())
        } else {
            Err(ConsoleError::Forbidden(format!(
                "{what}; your roles: {}",
                match self.roles.names() {
                    n if n.is_empty() => "none".to_owned(),
                    n => n.join(", "),
                }
            )))
        }
    }
}

/// Where to come back to after sign-in: this console's own pages only, so
/// the sign-in link can never send anyone elsewhere.
pub fn safe_next(next: &str) -> Option<&str> {
    let ok = next.starts_with("/ui/")
        && !next.contains("//")
        && !next.contains('\\')
        && next.len() <= 512
        && next.chars().all(|c| c.is_ascii_graphic());
    ok.then_some(next)
}

impl FromRequestParts<Console> for Viewer {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, c: &Console) -> Result<Self, ConsoleError> {
        // Only a page can be returned to; after a refused post, the console.
        let next = if parts.method == axum::http::Method::GET {
            parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default()
        } else {
            String::new()
        };
        let sign_in = || ConsoleError::SignIn {
            next: safe_next(&next).map(str::to_owned),
        };
        let id = security::session_id(&parts.headers).ok_or_else(sign_in)?;
        let session = c.sessions.get(&id).ok_or_else(sign_in)?;
        let human_id = session.human.ok_or_else(sign_in)?;
        let human = match c.app.store.human(human_id).await? {
            Some(h) if h.status == HumanStatus::Active => h,
            _ => {
                c.sessions.remove(&id);
                return Err(sign_in());
            }
        };
        let owns = c
            .app
            .store
            .list_agents(
                &AgentFilter {
                    owner: Some(human.id),
                    ..AgentFilter::default()
                },
                &PageRequest {
                    after: None,
                    limit: 1,
                },
            )
            .await?;
        let roles = Roles {
            admin: human.roles.contains(&HumanRole::Admin),
            auditor: human.roles.contains(&HumanRole::Auditor),
            approver: human.roles.contains(&HumanRole::Approver),
            owner: !owns.items.is_empty(),
        };
        Ok(Viewer {
            human,
            roles,
            session,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn sign_in_returns_only_to_console_pages() {
        assert_eq!(safe_next("/ui/tasks/x?y=1"), Some("/ui/tasks/x?y=1"));
        for bad in [
            "https://evil.example/",
            "//evil.example/ui/",
            "/ui//evil.example",
            "/ui/\\evil",
            "/v1/agents",
            "/ui/a b",
            "",
        ] {
            assert_eq!(safe_next(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        /// The fuzz target `request` explores the same input space.
        #[test]
        fn a_return_page_is_always_a_console_page(next in ".{0,80}", tail in "[ -~]{0,40}") {
            for candidate in [next.clone(), format!("/ui/{tail}"), format!("/ui{tail}")] {
                if let Some(n) = safe_next(&candidate) {
                    proptest::prop_assert!(n.starts_with("/ui/"));
                    proptest::prop_assert!(!n.contains("//") && !n.contains('\\'));
                    proptest::prop_assert!(n.chars().all(|c| c.is_ascii_graphic()));
                }
            }
        }
    }
}
