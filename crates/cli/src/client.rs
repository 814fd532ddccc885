//! A small typed client for Mandate's HTTP API, shared by the admin
//! commands and the demo. Problem details come back as one readable error.

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::CliError;

#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Self {
        Client {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http: reqwest::Client::new(),
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        self.send(Method::GET, path, None::<&()>).await
    }

    /// Follows `next` cursors from `path` (which already has a query string)
    /// and returns every item of every page.
    pub async fn get_all<T: DeserializeOwned>(&self, path: &str) -> Result<Vec<T>, CliError> {
        #[derive(serde::Deserialize)]
        struct Page<T> {
            items: Vec<T>,
            next: Option<String>,
        }
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let url = match &after {
                Some(a) => format!("{path}&after={}", crate::commands::human::urlencode(a)),
                None => path.to_owned(),
            };
            let page: Page<T> = self.get(&url).await?;
            all.extend(page.items);
            match page.next {
                Some(n) => after = Some(n),
                None => return Ok(all),
            }
        }
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, CliError> {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, CliError> {
        self.send(Method::PUT, path, Some(body)).await
    }

    pub async fn post_empty<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        self.send(Method::POST, path, None::<&()>).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        self.send(Method::DELETE, path, None::<&()>).await
    }

    /// POSTs a form to an OAuth endpoint, with optional extra headers (DPoP).
    /// OAuth errors (`error`, `error_description`) come back as one line.
    pub async fn post_form<T: DeserializeOwned>(
        &self,
        path: &str,
        form: &[(&str, &str)],
        headers: &[(&str, String)],
    ) -> Result<T, CliError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.post(&url).form(form);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        self.finish(&url, req).await
    }

    /// POSTs JSON with extra headers (a DPoP proof for a bound token).
    pub async fn post_with<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        headers: &[(&str, String)],
    ) -> Result<T, CliError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.post(&url).json(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        self.finish(&url, req).await
    }

    /// The base URL requests go to.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The `iss` Mandate signs with (and expects as `aud`), from its RFC 8414 metadata.
    pub async fn issuer(&self) -> Result<String, CliError> {
        let meta: serde_json::Value = self.get("/.well-known/oauth-authorization-server").await?;
        meta["issuer"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| CliError::Failed(format!("{} did not name its issuer", self.base)))
    }

    async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, CliError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        self.finish(&url, req).await
    }

    async fn finish<T: DeserializeOwned>(
        &self,
        url: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<T, CliError> {
        let bytes = self.fetch(req).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| CliError::Failed(format!("unexpected response from {url}: {e}")))
    }

    /// GETs a binary body (an evidence pack).
    pub async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, CliError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.get(&url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        self.fetch(req).await
    }

    /// Sends; a non-success status becomes the problem's detail.
    async fn fetch(&self, req: reqwest::RequestBuilder) -> Result<Vec<u8>, CliError> {
        let res = req.send().await.map_err(|e| {
            CliError::Usage(format!(
                "cannot reach the Mandate server at {}: {} (is `mandate serve` running? set --server or MANDATE_SERVER)",
                self.base,
                e.to_string().split(':').next().unwrap_or("connection failed")
            ))
        })?;
        let status = res.status();
        let bytes = res
            .bytes()
            .await
            .map_err(|e| CliError::Failed(format!("reading the response failed: {e}")))?;
        if !status.is_success() {
            return Err(problem_error(status, &bytes));
        }
        Ok(bytes.to_vec())
    }
}

fn problem_error(status: StatusCode, body: &[u8]) -> CliError {
    let v = serde_json::from_slice::<serde_json::Value>(body).ok();
    let oauth = v.as_ref().and_then(|v| {
        let code = v.get("error")?.as_str()?;
        let text = v
            .get("error_description")
            .and_then(|d| d.as_str())
            .unwrap_or("");
        Some(format!("{code}: {text}"))
    });
    let detail = v
        .as_ref()
        .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(str::to_owned))
        .or(oauth)
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect());
    let hint = if status == StatusCode::UNAUTHORIZED && detail.contains("admin") {
        " (pass --token or set MANDATE_TOKEN to an admin token)"
    } else {
        ""
    };
    CliError::Api {
        status: status.as_u16(),
        detail: format!("{detail}{hint}"),
    }
}
