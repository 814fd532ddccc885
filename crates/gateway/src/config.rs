//! The gateway's TOML configuration: where it listens, which MCP servers and
//! HTTP APIs sit behind it, and how each tool or route maps to an action and
//! a resource. Everything is checked when the file is read, so a gateway
//! that starts has a mapping for every tool it will expose.

use std::collections::{BTreeMap, BTreeSet};

use mandate_core::scope::ActionPattern;
use mandate_core::secret::SecretName;
use serde::Deserialize;

use crate::mapping::{ResourceTemplate, path_prefix};

/// Why a configuration was refused; one line for the operator.
#[derive(Debug, thiserror::Error)]
#[error("gateway config: {0}")]
pub struct ConfigError(pub String);

fn bad(why: impl Into<String>) -> ConfigError {
    ConfigError(why.into())
}

/// Default ceiling on a JSON-RPC message or a proxied request body.
const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Default ceiling on an upstream's answer (it is read whole to scrub secrets).
const DEFAULT_MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address to listen on, e.g. `127.0.0.1:8090`.
    pub listen: String,
    /// The URL agents use to reach the gateway: the protected resource of
    /// RFC 9728 metadata, and the base of DPoP proofs' `htu`.
    pub public_url: String,
    /// Mandate's URL, where agents get task tokens (named in the metadata).
    pub authorization_server: String,
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
    #[serde(default = "default_max_response")]
    pub max_response_bytes: usize,
    /// How long an upstream may take to answer, in milliseconds.
    #[serde(default = "default_timeout")]
    pub upstream_timeout_ms: u64,
    /// The `environment` decisions are made in (default `prod`).
    #[serde(default = "default_environment")]
    pub environment: String,
    /// Which token claims anchor COAZ requests (`[coaz]`).
    #[serde(default)]
    pub coaz: CoazClaims,
    /// Where `coaz = true` servers' calls are decided: absent, Mandate's own
    /// pipeline in process; `[decision_point]`, an AuthZEN 1.0 PDP.
    pub decision_point: Option<DecisionPointConfig>,
    #[serde(default)]
    pub mcp: Vec<McpUpstream>,
    #[serde(default)]
    pub http: Vec<HttpRoute>,
}

/// The claims that carry the two identities of a COAZ request. The defaults
/// are the profile's, and what Mandate task tokens carry: `sub` is the human
/// who initiated the task, `client_id` the acting agent's SPIFFE id.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoazClaims {
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    #[serde(default = "default_agent_claim")]
    pub agent_claim: String,
}

impl Default for CoazClaims {
    fn default() -> Self {
        CoazClaims {
            subject_claim: default_subject_claim(),
            agent_claim: default_agent_claim(),
        }
    }
}

fn default_subject_claim() -> String {
    "sub".into()
}
fn default_agent_claim() -> String {
    "client_id".into()
}

/// An external AuthZEN 1.0 decision point.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionPointConfig {
    /// The PDP's base URL; `/access/v1/evaluation(s)` is appended. https,
    /// or http to a loopback address.
    pub url: String,
    /// A Mandate secret (`mandate secret set <name>`) sent as
    /// `Authorization: Bearer`; read on every request, so a rotation holds
    /// at once.
    pub secret: Option<SecretName>,
    /// How long the PDP may take to answer, in milliseconds; after that the
    /// call is refused.
    #[serde(default = "default_pdp_timeout")]
    pub timeout_ms: u64,
    /// Send the agent's task token along (`Mandate-Task-Token` header), for a
    /// decision point that verifies it: Mandate's own `/access/v1/evaluation`
    /// does, and decides for that token's identities only. Off by default: a
    /// task token is a credential, to be shown only to a PDP trusted with it.
    #[serde(default)]
    pub send_task_token: bool,
}

fn default_pdp_timeout() -> u64 {
    2_000
}

fn default_max_message() -> usize {
    DEFAULT_MAX_MESSAGE_BYTES
}
fn default_max_response() -> usize {
    DEFAULT_MAX_RESPONSE_BYTES
}
fn default_timeout() -> u64 {
    10_000
}
fn default_environment() -> String {
    "prod".into()
}

/// An MCP server behind the gateway (streamable HTTP).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpUpstream {
    pub name: String,
    pub url: String,
    /// Keep each call's arguments in its audit entry.
    #[serde(default)]
    pub record_arguments: bool,
    /// Keep each call's result in its audit entry.
    #[serde(default)]
    pub record_results: bool,
    /// Authorize this server's tools by the COAZ profile: each tool's
    /// declared `x-authzen-mapping`, else the profile's default `tools/call`
    /// mapping; every tool the server lists is offered.
    #[serde(default)]
    pub coaz: bool,
    /// The tools the gateway exposes; any other tool of the server is hidden
    /// (for servers without `coaz`).
    #[serde(default, rename = "tool")]
    pub tools: Vec<ToolMapping>,
}

/// How one tool's calls become decisions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolMapping {
    pub name: String,
    /// The action a call is, as in task scopes (`crm.read`).
    pub action: ActionPattern,
    /// The resource a call touches; `{field}` takes a top-level argument
    /// (`crm:customers/{customer_id}`).
    pub resource: ResourceTemplate,
    /// The data's sensitivity: fixed here, or read from an argument.
    #[serde(default = "default_sensitivity")]
    pub sensitivity: String,
    pub sensitivity_from: Option<String>,
    /// The argument holding money moved (minor units), charged to the task's budget.
    pub amount_from: Option<String>,
    #[serde(default)]
    pub labels: Vec<String>,
}

fn default_sensitivity() -> String {
    "internal".into()
}

/// A REST API behind the gateway's HTTP proxy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRoute {
    pub name: String,
    /// The gateway path the API is reached under, e.g. `/billing`.
    pub prefix: String,
    /// The API's base URL; the path below the prefix is appended.
    pub upstream: String,
    /// The resource a request touches is this followed by the path below the
    /// prefix (`billing:` + `invoices/42`).
    pub resource: String,
    /// Action per HTTP method; methods not listed are refused. Default:
    /// GET/HEAD `<name>.read`, POST/PUT/PATCH `<name>.write`, DELETE `<name>.delete`.
    #[serde(default)]
    pub actions: BTreeMap<String, ActionPattern>,
    #[serde(default = "default_sensitivity")]
    pub sensitivity: String,
    /// The secret the gateway adds to every forwarded request.
    pub secret: Option<SecretName>,
    /// How: `bearer` (an `Authorization: Bearer` header) or `header:<name>`.
    pub inject: Option<Inject>,
}

/// Where the injected secret goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inject {
    Bearer,
    Header(axum::http::HeaderName),
}

impl<'de> Deserialize<'de> for Inject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.split_once(':') {
            None if s == "bearer" => Ok(Inject::Bearer),
            Some(("header", name)) => axum::http::HeaderName::from_bytes(name.trim().as_bytes())
                .map(Inject::Header)
                .map_err(|_| serde::de::Error::custom(format!("{name:?} is not a header name"))),
            _ => Err(serde::de::Error::custom(format!(
                "inject {s:?}: use \"bearer\" or \"header:<name>\""
            ))),
        }
    }
}

impl HttpRoute {
    /// The action a request with this method is, if the route allows it.
    pub fn action(&self, method: &str) -> Option<String> {
        if !self.actions.is_empty() {
            return self.actions.get(method).map(|a| a.as_str().to_owned());
        }
        let verb = match method {
            "GET" | "HEAD" => "read",
            "POST" | "PUT" | "PATCH" => "write",
            "DELETE" => "delete",
            _ => return None,
        };
        Some(format!("{}.{verb}", self.name))
    }
}

impl GatewayConfig {
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let c: GatewayConfig = toml::from_str(text).map_err(|e| {
            // One line for the operator: the message and where it is.
            let at = e.span().map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!(" (line {line}, column {column})")
            });
            bad(format!("{}{}", e.message().trim(), at.unwrap_or_default()))
        })?;
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        url_ok("public_url", &self.public_url)?;
        url_ok("authorization_server", &self.authorization_server)?;
        if self.mcp.is_empty() && self.http.is_empty() {
            return Err(bad("name at least one [[mcp]] server or [[http]] route"));
        }
        if self.max_message_bytes == 0 || self.max_response_bytes == 0 {
            return Err(bad(
                "max_message_bytes and max_response_bytes must be above 0",
            ));
        }
        let mut names = BTreeSet::new();
        let mut tools = BTreeSet::new();
        for m in &self.mcp {
            name_ok(&m.name, &mut names)?;
            url_ok(&format!("mcp {}: url", m.name), &m.url)?;
            if m.coaz && !m.tools.is_empty() {
                return Err(bad(format!(
                    "mcp {}: with `coaz = true` the server's own mappings decide; remove its [[mcp.tool]] entries",
                    m.name
                )));
            }
            for t in &m.tools {
                if !tools.insert(t.name.as_str()) {
                    return Err(bad(format!("tool {:?} is mapped twice", t.name)));
                }
                if t.action.as_str().ends_with('*') {
                    return Err(bad(format!(
                        "tool {}: action {:?} must be one action, not a pattern",
                        t.name,
                        t.action.as_str()
                    )));
                }
            }
        }
        if let Some(dp) = &self.decision_point {
            pdp_url_ok(&dp.url)?;
            if !self.mcp.iter().any(|m| m.coaz) {
                return Err(bad(
                    "[decision_point] decides the calls of `coaz = true` servers; mark one, or remove it",
                ));
            }
            if dp.timeout_ms == 0 {
                return Err(bad("decision_point.timeout_ms must be above 0"));
            }
        }
        for (what, claim) in [
            ("subject_claim", &self.coaz.subject_claim),
            ("agent_claim", &self.coaz.agent_claim),
        ] {
            if claim.is_empty() {
                return Err(bad(format!("coaz.{what} must name a token claim")));
            }
        }
        let mut prefixes = BTreeSet::new();
        for h in &self.http {
            name_ok(&h.name, &mut names)?;
            url_ok(&format!("http {}: upstream", h.name), &h.upstream)?;
            let prefix =
                path_prefix(&h.prefix).map_err(|e| bad(format!("http {}: prefix: {e}", h.name)))?;
            if prefix == "/mcp" || prefix.starts_with("/.well-known") {
                return Err(bad(format!(
                    "http {}: prefix {prefix} is the gateway's own",
                    h.name
                )));
            }
            if !prefixes.insert(prefix) {
                return Err(bad(format!("http prefix {} is used twice", h.prefix)));
            }
            ResourceTemplate::literal(&h.resource)
                .map_err(|e| bad(format!("http {}: resource: {e}", h.name)))?;
            if h.secret.is_some() != h.inject.is_some() {
                return Err(bad(format!(
                    "http {}: `secret` and `inject` go together",
                    h.name
                )));
            }
        }
        Ok(())
    }

    pub fn mcp_tool(&self, tool: &str) -> Option<(&McpUpstream, &ToolMapping)> {
        self.mcp
            .iter()
            .find_map(|m| m.tools.iter().find(|t| t.name == tool).map(|t| (m, t)))
    }

    /// The route whose prefix starts `path`, with the path below it.
    pub fn http_route<'p>(&self, path: &'p str) -> Option<(&HttpRoute, &'p str)> {
        self.http.iter().find_map(|h| {
            let prefix = h.prefix.trim_end_matches('/');
            let rest = path.strip_prefix(prefix)?;
            (rest.is_empty() || rest.starts_with('/')).then_some((h, rest))
        })
    }
}

fn url_ok(what: &str, url: &str) -> Result<(), ConfigError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(format!("{what} {url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(bad(format!("{what} {url:?}: must be an http or https URL")));
    }
    Ok(())
}

/// A PDP is reached over TLS (AuthZEN's transport rule), or on loopback.
fn pdp_url_ok(url: &str) -> Result<(), ConfigError> {
    url_ok("decision_point.url", url)?;
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(e.to_string()))?;
    let loopback = match parsed.host_str() {
        Some("localhost") => true,
        Some(h) => h
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    };
    if parsed.scheme() != "https" && !loopback {
        return Err(bad(format!(
            "decision_point.url {url:?}: use https (http only to a loopback address)"
        )));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad(format!(
            "decision_point.url {url:?}: the base URL takes no query or fragment"
        )));
    }
    Ok(())
}

fn name_ok<'a>(name: &'a str, seen: &mut BTreeSet<&'a str>) -> Result<(), ConfigError> {
    SecretName::parse(name).map_err(|_| {
        bad(format!(
            "upstream name {name:?}: use 1-64 lowercase letters, digits, '.', '-' or '_'"
        ))
    })?;
    if !seen.insert(name) {
        return Err(bad(format!("upstream name {name:?} is used twice")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
listen = "127.0.0.1:8090"
public_url = "http://127.0.0.1:8090"
authorization_server = "http://127.0.0.1:8080"

[[mcp]]
name = "crm"
url = "http://127.0.0.1:9001/mcp"

[[mcp.tool]]
name = "lookup_customer"
action = "crm.read"
resource = "crm:customers/{customer_id}"

[[http]]
name = "billing"
prefix = "/billing"
upstream = "http://127.0.0.1:9002"
resource = "billing:"
secret = "billing-key"
inject = "header:x-api-key"
"#;

    #[test]
    fn a_good_config_parses_and_maps() {
        let c = GatewayConfig::parse(GOOD).unwrap();
        assert_eq!(c.mcp_tool("lookup_customer").unwrap().0.name, "crm");
        assert!(c.mcp_tool("drop_tables").is_none());
        let (route, rest) = c.http_route("/billing/invoices/1").unwrap();
        assert_eq!((route.name.as_str(), rest), ("billing", "/invoices/1"));
        assert!(c.http_route("/billingx/1").is_none());
        assert_eq!(route.action("GET").as_deref(), Some("billing.read"));
        assert_eq!(route.action("TRACE"), None);
        assert_eq!(
            route.inject,
            Some(Inject::Header("x-api-key".parse().unwrap()))
        );
    }

    /// The README's example is the configuration users copy: it must parse.
    #[test]
    fn the_readme_example_parses() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("A working configuration")
            .and_then(|i| readme[i..].find("```toml").map(|j| i + j + 7))
            .expect("the README has the example");
        let end = start + readme[start..].find("```").unwrap();
        let c = GatewayConfig::parse(&readme[start..end]).unwrap();
        assert_eq!(c.mcp[0].tools.len(), 2);
        assert_eq!(
            c.http[0].inject,
            Some(Inject::Header("x-api-key".parse().unwrap()))
        );
    }

    /// The README's COAZ example, with another AuthZEN decision point.
    #[test]
    fn the_readme_coaz_example_parses() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("A COAZ configuration")
            .and_then(|i| readme[i..].find("```toml").map(|j| i + j + 7))
            .expect("the README has the COAZ example");
        let end = start + readme[start..].find("```").unwrap();
        let c = GatewayConfig::parse(&readme[start..end]).unwrap();
        let dp = c.decision_point.as_ref().unwrap();
        assert_eq!(dp.url, "https://pdp.example.com");
        assert_eq!(dp.secret.as_ref().unwrap().as_str(), "pdp-token");
        assert_eq!(dp.timeout_ms, 2000);
        assert!(c.mcp[0].coaz && c.mcp[0].tools.is_empty());
        assert_eq!(
            (c.coaz.subject_claim.as_str(), c.coaz.agent_claim.as_str()),
            ("sub", "client_id")
        );
    }

    #[test]
    fn bad_coaz_configs_are_refused_with_the_reason() {
        let coaz = GOOD.replace(
            "url = \"http://127.0.0.1:9001/mcp\"",
            "url = \"http://127.0.0.1:9001/mcp\"\ncoaz = true",
        );
        let pdp = |url: &str| format!("\n[decision_point]\nurl = \"{url}\"\n");
        let only_coaz = coaz.replace("[[mcp.tool]]\nname = \"lookup_customer\"\naction = \"crm.read\"\nresource = \"crm:customers/{customer_id}\"\n", "");
        let cases = [
            (coaz.clone(), "remove its [[mcp.tool]] entries"),
            (
                format!("{GOOD}{}", pdp("https://pdp.example")),
                "decides the calls of `coaz = true` servers",
            ),
            (
                format!("{only_coaz}{}", pdp("http://pdp.example")),
                "use https",
            ),
            (
                format!("{only_coaz}{}", pdp("https://pdp.example/?a=1")),
                "no query",
            ),
            (
                format!("{only_coaz}{}timeout_ms = 0\n", pdp("https://pdp.example")),
                "timeout_ms must be above 0",
            ),
            (
                format!("{GOOD}[coaz]\nsubject_claim = \"\"\n"),
                "must name a token claim",
            ),
            (
                format!("{GOOD}[coaz]\nsubject = \"sub\"\n"),
                "unknown field",
            ),
        ];
        for (text, why) in cases {
            let e = GatewayConfig::parse(&text).unwrap_err().to_string();
            assert!(e.contains(why), "{why:?} not in {e:?}");
        }
        // Loopback may be plain http (tests, sidecars).
        let ok = format!("{only_coaz}{}", pdp("http://127.0.0.1:9100"));
        let c = GatewayConfig::parse(&ok).unwrap();
        assert_eq!(c.decision_point.unwrap().timeout_ms, 2000);
    }

    #[test]
    fn bad_configs_are_refused_with_the_reason() {
        let cases = [
            (GOOD.replace("crm.read", "crm.*"), "not a pattern"),
            (
                GOOD.replace("{customer_id}", "{customer id}"),
                "must name an argument (letters, digits, _) (line 13",
            ),
            (GOOD.replace("header:x-api-key", "cookie"), "inject"),
            (GOOD.replace("\"/billing\"", "\"/mcp\""), "gateway's own"),
            (GOOD.replace("\"/billing\"", "\"/a/../b\""), "prefix"),
            (
                GOOD.replace("http://127.0.0.1:9002", "ftp://x"),
                "http or https",
            ),
            (
                GOOD.replace("inject = \"header:x-api-key\"", ""),
                "go together",
            ),
            (
                GOOD.replace("name = \"billing\"", "name = \"crm\""),
                "used twice",
            ),
            (GOOD.replace("listen", "lisen"), "unknown field"),
            (
                GOOD.replace("[[mcp.tool]]", "[[mcp.tool]"),
                "(line 10, column 12)",
            ),
        ];
        for (text, why) in cases {
            let e = GatewayConfig::parse(&text).unwrap_err().to_string();
            assert!(e.contains(why), "{why:?} not in {e:?}");
            assert!(!e.contains('\n'), "{e:?} is not one line");
        }
    }
}
