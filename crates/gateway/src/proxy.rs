//! The HTTP tool proxy: route prefixes to upstream REST APIs. Each request
//! is decided like a tool call (method -> action, path -> resource), then
//! forwarded with the downstream secret added by the gateway. The agent's
//! own credential is not forwarded, and the secret is scrubbed from
//! anything the upstream echoes back.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mandate_core::decision::Verdict;
use mandate_core::secret::SecretValue;
use mandate_core::tool_call::{CallStatus, Channel};
use mandate_server::decision::{Ask, ContextIn, ResourceIn};
use mandate_server::problem::Problem;

use crate::Gateway;
use crate::auth::Caller;
use crate::calls::{Call, refusal_message};
use crate::config::{HttpRoute, Inject};
use crate::mapping::path_resource;

/// What replaces an injected secret wherever an upstream echoes it.
const REDACTED: &str = "[redacted by mandate]";

/// Request headers never forwarded: the agent's credential and proof,
/// hop-by-hop headers, and what the client cannot be allowed to choose.
const DROPPED: [HeaderName; 9] = [
    header::AUTHORIZATION,
    HeaderName::from_static("dpop"),
    header::HOST,
    header::CONNECTION,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::TE,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

pub(crate) async fn forward(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    let started = Instant::now();
    let Some(caller) = req.extensions().get::<Caller>().cloned() else {
        return Problem::unauthorized("no authenticated caller").into_response();
    };
    let path = req.uri().path().to_owned();
    let Some((route, rest)) = gw.config.http_route(&path) else {
        return Problem::not_found(format!(
            "no route for {path}; MCP is at {} and the HTTP routes are: {}",
            crate::MCP_PATH,
            gw.config
                .http
                .iter()
                .map(|h| h.prefix.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into_response();
    };
    let method = req.method().as_str().to_owned();
    let Some(action) = route.action(&method) else {
        return Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            format!("route {} maps no action for {method}", route.prefix),
        )
        .into_response();
    };
    let suffix = match path_resource(rest) {
        Ok(s) => s,
        Err(e) => return Problem::bad_request(format!("path {path}: {e}")).into_response(),
    };
    let ask = Ask {
        action,
        resource: ResourceIn {
            id: format!("{}{suffix}", route.resource),
            sensitivity: route.sensitivity.clone(),
            labels: Vec::new(),
        },
        context: ContextIn {
            tool: Some(route.name.clone()),
            environment: Some(gw.config.environment.clone()),
            ..ContextIn::default()
        },
    };
    let target = format!("{method} {path}");
    let call = Call {
        caller: &caller,
        channel: Channel::Http,
        upstream: route.name.clone(),
        target,
        started,
    };
    match forward_decided(&gw, &call, route, &suffix, &ask, req).await {
        Ok(res) => res,
        Err(p) => p.into_response(),
    }
}

async fn forward_decided(
    gw: &Gateway,
    call: &Call<'_>,
    route: &HttpRoute,
    suffix: &str,
    ask: &Ask,
    req: Request,
) -> Result<Response, Problem> {
    // What forwarding needs is ready before deciding: a request that could
    // not be forwarded (body too large, secret not set) spends no call.
    let secret = match &route.secret {
        None => None,
        Some(name) => Some(load_secret(gw, name).await?),
    };
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, gw.config.max_message_bytes)
        .await
        .map_err(|_| {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                format!(
                    "request bodies are limited to {} bytes",
                    gw.config.max_message_bytes
                ),
            )
        })?;
    let decided = call.decide(gw, ask).await?;
    if decided.decision != Verdict::Allow {
        call.finish(gw, &decided, CallStatus::Refused, None, None)
            .await?;
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            match decided.decision {
                Verdict::NeedsApproval => "approval-required",
                _ => "denied",
            },
            refusal_message(&decided),
        )
        .with_errors(serde_json::to_value(&decided).unwrap_or_default()));
    }
    let mut url = format!("{}/{suffix}", route.upstream.trim_end_matches('/'));
    if let Some(q) = parts.uri.query() {
        url.push('?');
        url.push_str(q);
    }
    let mut headers = parts.headers.clone();
    for h in &DROPPED {
        headers.remove(h);
    }
    if let (Some(secret), Some(inject)) = (&secret, &route.inject) {
        let (name, value) = match inject {
            Inject::Bearer => (header::AUTHORIZATION, format!("Bearer {}", secret.expose())),
            Inject::Header(h) => (h.clone(), secret.expose().to_owned()),
        };
        let mut value = HeaderValue::from_str(&value).map_err(|_| Problem::internal())?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    let sent = gw
        .http
        .request(parts.method.clone(), &url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    let answered = match sent {
        Ok(res) => read_answer(res, gw.config.max_response_bytes).await,
        Err(e) => Err(e.without_url().to_string()),
    };
    match answered {
        Ok((status, headers, body)) => {
            let status_code = status.as_u16();
            call.finish(
                gw,
                &decided,
                CallStatus::Answered {
                    status: status_code,
                    tool_error: false,
                },
                None,
                None,
            )
            .await?;
            Ok(scrubbed(status, headers, body, secret.as_ref()))
        }
        Err(e) => {
            let error = match &secret {
                Some(s) => e.replace(s.expose(), REDACTED),
                None => e,
            };
            call.finish(
                gw,
                &decided,
                CallStatus::Unreachable {
                    error: error.clone(),
                },
                None,
                None,
            )
            .await?;
            Err(Problem::new(
                StatusCode::BAD_GATEWAY,
                "upstream-unavailable",
                format!(
                    "upstream {} did not answer: {error} (the request was allowed by decision {} and is audited)",
                    route.name, decided.decision_id
                ),
            ))
        }
    }
}

async fn load_secret(
    gw: &Gateway,
    name: &mandate_core::secret::SecretName,
) -> Result<SecretValue, Problem> {
    let missing = || {
        Problem::new(
            StatusCode::BAD_GATEWAY,
            "secret-unavailable",
            format!(
                "the gateway's secret {name} is not set; an admin stores it with `mandate secret set {name}`"
            ),
        )
    };
    gw.secret(name).await?.ok_or_else(missing)
}

/// An upstream's answer, read whole but never past `limit` bytes.
pub(crate) async fn read_answer(
    res: reqwest::Response,
    limit: usize,
) -> Result<(StatusCode, HeaderMap, Bytes), String> {
    let status = res.status();
    let headers = res.headers().clone();
    if res.content_length().is_some_and(|n| n > limit as u64) {
        return Err(format!("its answer is larger than {limit} bytes"));
    }
    let mut body = Vec::new();
    let mut res = res;
    while let Some(chunk) = res.chunk().await.map_err(|e| e.without_url().to_string())? {
        if body.len() + chunk.len() > limit {
            return Err(format!("its answer is larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, headers, Bytes::from(body)))
}

/// The upstream's answer with the injected secret replaced wherever it
/// appears, in headers and body alike.
fn scrubbed(
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    secret: Option<&SecretValue>,
) -> Response {
    let mut out = HeaderMap::new();
    for (name, value) in &headers {
        if matches!(
            *name,
            header::CONNECTION | header::TRANSFER_ENCODING | header::CONTENT_LENGTH
        ) {
            continue;
        }
        let value = match secret {
            Some(s) if contains(value.as_bytes(), s.expose().as_bytes()) => {
                let text = String::from_utf8_lossy(value.as_bytes()).replace(s.expose(), REDACTED);
                match HeaderValue::from_str(&text) {
                    Ok(v) => v,
                    Err(_) => continue,
                }
            }
            _ => value.clone(),
        };
        out.append(name.clone(), value);
    }
    let body = match secret {
        Some(s) => Bytes::from(replace_all(
            &body,
            s.expose().as_bytes(),
            REDACTED.as_bytes(),
        )),
        None => body,
    };
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    *res.headers_mut() = out;
    res
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn replace_all(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    if needle.is_empty() {
        return haystack.to_vec();
    }
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// After scrubbing, the secret occurs nowhere in the body, however
        /// the upstream wraps or repeats it.
        #[test]
        fn scrubbed_bodies_never_contain_the_secret(
            parts in proptest::collection::vec("[a-z]{0,6}", 0..6),
            secret in "[a-z]{1,6}",
        ) {
            let body = parts.join(&secret);
            let out = replace_all(body.as_bytes(), secret.as_bytes(), REDACTED.as_bytes());
            prop_assert!(!contains(&out, secret.as_bytes()) || REDACTED.contains(&secret));
        }
    }
}
