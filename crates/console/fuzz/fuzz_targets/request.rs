//! What a browser (or anyone) sends the console before it is signed in: the
//! `Cookie`, `Host` and `Origin` headers and the `next` page to return to.
//! Nothing panics; a session id read from a cookie is non-empty, at most 128
//! bytes and taken from the header; a return page is always a console page
//! on this origin. Mirrored by the proptests in src/security.rs and src/auth.rs.
#![no_main]

use axum::http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;
use mandate_console::auth::safe_next;
use mandate_console::security::{loopback_host, same_origin, session_id};

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = HeaderValue::from_bytes(data) {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, v.clone());
        h.insert(header::HOST, v.clone());
        h.insert(header::ORIGIN, v);
        if let Some(id) = session_id(&h) {
            assert!(!id.is_empty() && id.len() <= 128);
            assert!(data.windows(id.len()).any(|w| w == id.as_bytes()));
        }
        let _ = loopback_host(&h);
        let _ = same_origin(&h);
    }
    if let Ok(next) = std::str::from_utf8(data)
        && let Some(n) = safe_next(next)
    {
        assert!(n.starts_with("/ui/") && !n.contains("//") && !n.contains('\\'));
    }
});
