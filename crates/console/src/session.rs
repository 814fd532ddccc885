//! Console sessions: server-side state behind a random cookie.
//!
//! The cookie holds 256 random bits and nothing else; the server keeps only
//! their SHA-256, so a memory dump of the table yields no usable cookie. A
//! session carries its own CSRF token (256 random bits) that every form
//! posts back. Sessions end on sign-out, after [`SessionConfig::idle`]
//! without a request, and [`SessionConfig::absolute`] after sign-in whatever
//! the activity. Signing in replaces the pre-sign-in session with a new one
//! (new id, new CSRF token), so an id planted before sign-in is worthless.
//!
//! Sessions live in the memory of the node that made them: behind a load
//! balancer, route a browser to one node (sticky sessions), or it is asked
//! to sign in again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use mandate_core::ids::HumanId;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How long sessions last and how many the table holds.
#[derive(Debug, Clone, Copy)]
pub struct SessionConfig {
    /// A session unused this long is over.
    pub idle: Duration,
    /// A session is over this long after sign-in, however busy.
    pub absolute: Duration,
    /// Most sessions held at once; the oldest not-signed-in ones go first.
    pub max_sessions: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            idle: Duration::from_secs(30 * 60),
            absolute: Duration::from_secs(8 * 3600),
            max_sessions: 10_000,
        }
    }
}

/// What a request's session says.
#[derive(Debug, Clone)]
pub struct SessionView {
    /// The signed-in human; none before sign-in.
    pub human: Option<HumanId>,
    /// The token every form of this session must post back.
    pub csrf: String,
}

impl SessionView {
    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }
}

struct Session {
    /// SHA-256 of the cookie value, compared again in constant time.
    digest: [u8; 32],
    human: Option<HumanId>,
    csrf: String,
    created: Instant,
    last_seen: Instant,
}

/// The session table.
pub struct Sessions {
    config: SessionConfig,
    table: Mutex<HashMap<[u8; 32], Session>>,
}

fn random_token() -> String {
    B64.encode(mandate_server::install::random::<32>())
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    pub fn new(config: SessionConfig) -> Self {
        Sessions {
            config,
            table: Mutex::default(),
        }
    }

    pub fn config(&self) -> SessionConfig {
        self.config
    }

    fn expired(&self, s: &Session, now: Instant) -> bool {
        now.duration_since(s.last_seen) >= self.config.idle
            || now.duration_since(s.created) >= self.config.absolute
    }

    /// A new session; returns the cookie value (shown once, never stored).
    pub fn create(&self, human: Option<HumanId>) -> (String, SessionView) {
        let id = random_token();
        let csrf = random_token();
        let now = Instant::now();
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if table.len() >= self.config.max_sessions {
            table.retain(|_, s| !self.expired(s, now));
        }
        while table.len() >= self.config.max_sessions.max(1) {
            // Anonymous sessions are cheap to make, so they are dropped
            // before anyone who signed in.
            let victim = table
                .iter()
                .min_by_key(|(_, s)| (s.human.is_some(), s.last_seen))
                .map(|(k, _)| *k);
            match victim {
                Some(k) => table.remove(&k),
                None => break,
            };
        }
        let d = digest(&id);
        table.insert(
            d,
            Session {
                digest: d,
                human,
                csrf: csrf.clone(),
                created: now,
                last_seen: now,
            },
        );
        (id, SessionView { human, csrf })
    }

    /// The live session the cookie value names, marking it used.
    pub fn get(&self, id: &str) -> Option<SessionView> {
        let d = digest(id);
        let now = Instant::now();
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let s = table.get_mut(&d)?;
        if !bool::from(s.digest.ct_eq(&d)) {
            return None;
        }
        if self.expired(s, now) {
            table.remove(&d);
            return None;
        }
        s.last_seen = now;
        Some(SessionView {
            human: s.human,
            csrf: s.csrf.clone(),
        })
    }

    /// Ends the session (sign-out, or its human can no longer sign in).
    pub fn remove(&self, id: &str) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table.remove(&digest(id));
    }

    pub fn len(&self) -> usize {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn human() -> HumanId {
        "0191e7a0-0000-7000-8000-000000000001".parse().unwrap()
    }

    #[test]
    fn a_session_is_found_by_its_cookie_only() {
        let s = Sessions::new(SessionConfig::default());
        let (id, view) = s.create(Some(human()));
        assert_eq!(s.get(&id).unwrap().human, Some(human()));
        assert!(s.get("not-the-cookie").is_none());
        assert!(view.csrf_matches(&view.csrf));
        assert!(!view.csrf_matches(""));
        assert!(!view.csrf_matches(&id), "the cookie is not the CSRF token");
        s.remove(&id);
        assert!(s.get(&id).is_none());
    }

    #[test]
    fn sessions_expire_when_idle() {
        let s = Sessions::new(SessionConfig {
            idle: Duration::ZERO,
            ..SessionConfig::default()
        });
        let (id, _) = s.create(Some(human()));
        assert!(s.get(&id).is_none());
    }

    #[test]
    fn a_full_table_drops_anonymous_sessions_first() {
        let s = Sessions::new(SessionConfig {
            max_sessions: 2,
            ..SessionConfig::default()
        });
        let (signed_in, _) = s.create(Some(human()));
        for _ in 0..5 {
            s.create(None);
        }
        assert_eq!(s.len(), 2);
        assert!(s.get(&signed_in).is_some());
    }

    #[test]
    fn ids_and_tokens_are_fresh_each_time() {
        let s = Sessions::new(SessionConfig::default());
        let (a, va) = s.create(None);
        let (b, vb) = s.create(None);
        assert_ne!(a, b);
        assert_ne!(va.csrf, vb.csrf);
        assert_eq!(a.len(), 43, "256 bits, base64url");
    }
}
