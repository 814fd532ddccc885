//! What every console response carries, and the session cookie.
//!
//! The policy is strict because the console needs nothing else: pages are
//! server-rendered, charts are inline SVG, the one stylesheet comes from the
//! same binary, and there is no script at all (`default-src 'none'` with
//! only `style-src 'self'`). Forms may post only to the console itself, and
//! no other site may frame it.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

pub const CSP: &str = "default-src 'none'; style-src 'self'; form-action 'self'; \
                       frame-ancestors 'none'; base-uri 'none'";

/// The session cookie's name.
pub const COOKIE: &str = "mandate_console";

/// Adds the security headers to every console response.
pub async fn headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    // `same-origin`, not `no-referrer`: under `no-referrer` browsers send
    // `Origin: null` with the console's own form posts, which the origin
    // check must then refuse. Other sites still get no referrer.
    set(h, header::REFERRER_POLICY, "same-origin");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    // Pages show who may do what right now: never from a cache.
    set(h, header::CACHE_CONTROL, "no-store");
    set(
        h,
        header::HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(
        h,
        header::HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    );
    res
}

/// Whether the browser addressed this server on the loopback interface
/// (`localhost`, `127.0.0.0/8`, `[::1]`), judged from `Host`. Only then may
/// the cookie travel over plain HTTP: such traffic never leaves the machine.
pub fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(n, _)| n)
    };
    name.eq_ignore_ascii_case("localhost")
        || name == "::1"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `Set-Cookie` for a session: HttpOnly, SameSite=Strict, scoped to `/ui`,
/// and `Secure` unless the browser is on loopback.
pub fn session_cookie(headers: &HeaderMap, value: &str, max_age_s: u64) -> String {
    let secure = if loopback_host(headers) {
        ""
    } else {
        "; Secure"
    };
    format!("{COOKIE}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}")
}

/// `Set-Cookie` that removes the session cookie.
pub fn cleared_cookie(headers: &HeaderMap) -> String {
    session_cookie(headers, "", 0)
}

/// The session cookie's value, if the request carries one.
pub fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// A form post must come from a page of this console: when the browser
/// names the page's origin, its host must be ours (defence in depth beside
/// the CSRF token and the SameSite cookie).
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|h| h.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    origin_host.is_some_and(|o| o.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: header::HeaderName, v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn only_loopback_hosts_get_plain_http_cookies() {
        for host in [
            "127.0.0.1:7461",
            "localhost",
            "LOCALHOST:80",
            "[::1]:7461",
            "127.1.2.3",
        ] {
            assert!(loopback_host(&with(header::HOST, host)), "{host}");
            assert!(!session_cookie(&with(header::HOST, host), "x", 1).contains("Secure"));
        }
        for host in [
            "mandate.acme.example",
            "10.0.0.1:7461",
            "127.0.0.1.evil.example",
            "[::2]",
        ] {
            assert!(!loopback_host(&with(header::HOST, host)), "{host}");
            let c = session_cookie(&with(header::HOST, host), "x", 1);
            assert!(c.ends_with("; Secure"), "{c}");
        }
        assert!(!loopback_host(&HeaderMap::new()));
    }

    #[test]
    fn the_cookie_is_http_only_and_strict() {
        let c = session_cookie(&HeaderMap::new(), "abc", 60);
        assert!(
            c.starts_with("mandate_console=abc; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=60")
        );
    }

    #[test]
    fn the_session_cookie_is_read_among_others() {
        let h = with(header::COOKIE, "a=1; mandate_console=xyz; b=2");
        assert_eq!(session_id(&h).as_deref(), Some("xyz"));
        assert_eq!(session_id(&with(header::COOKIE, "mandate_console=")), None);
        assert_eq!(session_id(&with(header::COOKIE, "other=1")), None);
    }

    #[test]
    fn foreign_origins_are_refused() {
        let mut h = with(header::HOST, "127.0.0.1:7461");
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:7461"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h));
    }

    proptest::proptest! {
        /// The fuzz target `request` explores the same input space.
        #[test]
        fn any_cookie_header_yields_at_most_a_bounded_id_it_contains(raw in ".{0,300}") {
            if let Ok(v) = HeaderValue::from_str(&raw) {
                let mut h = HeaderMap::new();
                h.insert(header::COOKIE, v.clone());
                h.insert(header::HOST, v.clone());
                h.insert(header::ORIGIN, v);
                if let Some(id) = session_id(&h) {
                    proptest::prop_assert!(!id.is_empty() && id.len() <= 128);
                    proptest::prop_assert!(raw.contains(&id));
                }
                let _ = loopback_host(&h);
                let _ = same_origin(&h);
            }
        }

        #[test]
        fn a_session_cookie_is_found_among_any_others(
            id in "[A-Za-z0-9_-]{1,64}",
            others in proptest::collection::vec(("[a-z]{1,8}", "[A-Za-z0-9]{0,12}"), 0..5),
        ) {
            let mut pairs: Vec<String> = others.iter().map(|(k, v)| format!("{k}={v}")).collect();
            pairs.insert(pairs.len() / 2, format!("{COOKIE}={id}"));
            let h = with(header::COOKIE, &pairs.join("; "));
            proptest::prop_assert_eq!(session_id(&h), Some(id));
        }
    }
}
