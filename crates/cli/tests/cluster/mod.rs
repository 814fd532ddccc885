//! Several `mandate serve` processes on one PostgreSQL database, set up the
//! way the README's "Many nodes on one PostgreSQL" section tells an operator
//! to: `mandate init` once, then every node with the same
//! `MANDATE_MASTER_KEY`, its own (empty) data dir and its own `--listen`.
//! Also the clients that act on the nodes the way agents do (ID tokens from
//! the dev issuer, agent assertions, RFC 8693 exchanges, decisions), a load
//! generator that spreads requests over the nodes and remembers what each
//! node acknowledged, and a private PostgreSQL cluster a test may stop and
//! start. Shared by `tests/nodes.rs` and `benches/nodes.rs`.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ed25519_dalek::SigningKey;
use mandate_core::credential::{
    DETAIL_TYPE, DevIssuer, GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS, TOKEN_TYPE_ID, TOKEN_TYPE_JWT,
    mint_assertion,
};
use mandate_core::ids::SpiffeId;
use serde_json::{Value, json};

use crate::common::*;

/// The issuer `mandate dev-issuer` mints ID tokens for.
pub const DEV_ISSUER: &str = "https://dev-issuer.localhost";

/// Allows whatever a task's scope allows (Mandate checks the scope first).
pub const POLICY: &str = "@id(\"in-scope\")\n\
    @reason(\"An agent may do what its task is scoped for\")\n\
    permit (principal, action, resource);\n";

/// How long a node may take to exit after SIGTERM.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);

/// Events written by the set-up of [`Cluster::start`]: `system.initialized`
/// and `admin.credential_created` (init), `issuer.trusted`,
/// `human.registered`, two `agent.registered`, `policy.activated`.
pub const SETUP_EVENTS: u64 = 7;

/// An HTTP client for load: generous timeout (a bound, not an assertion),
/// keep-alive, never a proxy.
pub fn load_http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build()
        .expect("HTTP client")
}

/// An agent able to prove itself: SPIFFE id and one registered key.
pub struct AgentKey {
    pub spiffe: SpiffeId,
    pub key: SigningKey,
    pub kid: String,
}

/// One HTTP answer, with what a load balancer or client looks at.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub content_type: String,
    pub retry_after: Option<String>,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `503` with `application/problem+json` and a `Retry-After` header.
    pub fn is_clean_unavailable(&self) -> bool {
        self.status == 503
            && self.content_type.starts_with("application/problem+json")
            && self.retry_after.is_some()
            && self.body["status"] == 503
    }
}

/// Sends `req`; a transport failure (no status, or a cut body) is `Err`.
pub async fn answer(req: reqwest::RequestBuilder) -> Result<Answer, String> {
    let r = req.send().await.map_err(|e| format!("{e:?}"))?;
    let status = r.status().as_u16();
    let header = |name: reqwest::header::HeaderName| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header(reqwest::header::CONTENT_TYPE).unwrap_or_default();
    let retry_after = header(reqwest::header::RETRY_AFTER);
    let bytes = r.bytes().await.map_err(|e| format!("body: {e:?}"))?;
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok(Answer {
        status,
        body,
        content_type,
        retry_after,
    })
}

/// Who a new task's authority comes from.
pub enum Subject<'a> {
    Human(&'a str),
    Parent(&'a str),
}

/// Everything needed to act on the nodes; cheap to share between tasks.
pub struct Client {
    pub http: reqwest::Client,
    pub bases: Vec<String>,
    pub admin: String,
    /// Mandate's issuer (the `aud` of ID tokens and assertions).
    pub issuer: String,
    pub dev: DevIssuer,
    pub orchestrator: AgentKey,
    pub worker: AgentKey,
}

impl Client {
    pub fn id_token(&self) -> String {
        self.dev
            .mint("alice", &self.issuer, mandate_server::now(), 300)
    }

    pub fn assertion(&self, a: &AgentKey) -> String {
        mint_assertion(
            &a.key,
            &a.kid,
            &a.spiffe,
            &self.issuer,
            mandate_server::now(),
            &uuid::Uuid::now_v7().to_string(),
        )
    }

    /// RFC 8693 exchange at `node`.
    pub async fn exchange(
        &self,
        node: usize,
        subject: Subject<'_>,
        agent: &AgentKey,
        action: &str,
        resource: &str,
    ) -> Result<Answer, String> {
        let (token, kind) = match subject {
            Subject::Human(t) => (t, TOKEN_TYPE_ID),
            Subject::Parent(t) => (t, TOKEN_TYPE_ACCESS),
        };
        let details = json!([{ "type": DETAIL_TYPE, "purpose": "many nodes",
            "actions": [action], "resources": [resource] }])
        .to_string();
        let assertion = self.assertion(agent);
        let form = [
            ("grant_type", GRANT_TOKEN_EXCHANGE),
            ("subject_token", token),
            ("subject_token_type", kind),
            ("actor_token", assertion.as_str()),
            ("actor_token_type", TOKEN_TYPE_JWT),
            ("authorization_details", details.as_str()),
            ("requested_ttl", "900"),
        ];
        answer(
            self.http
                .post(format!("{}/oauth2/token", self.bases[node]))
                .form(&form),
        )
        .await
    }

    /// A root task for the orchestrator started by Alice, at `node`.
    pub async fn root_task(&self, node: usize) -> Result<Answer, String> {
        let id = self.id_token();
        self.exchange(
            node,
            Subject::Human(&id),
            &self.orchestrator,
            "procurement.*",
            "erp:*",
        )
        .await
    }

    /// A root task that must succeed: (token, task id).
    pub async fn must_root_task(&self, node: usize) -> (String, String) {
        let a = self.root_task(node).await.expect("token exchange");
        assert_eq!(a.status, 200, "root task exchange at node {node}: {a:?}");
        token_and_id(&a)
    }

    /// The orchestrator delegates a narrower task to the worker, at `node`.
    pub async fn delegate(&self, node: usize, parent: &str) -> Result<Answer, String> {
        self.exchange(
            node,
            Subject::Parent(parent),
            &self.worker,
            "procurement.read",
            "erp:*",
        )
        .await
    }

    /// `POST /v1/decisions` under `token` at `node`: procurement.read on an invoice.
    pub async fn decide(&self, node: usize, token: &str) -> Result<Answer, String> {
        answer(
            self.http
                .post(format!("{}/v1/decisions", self.bases[node]))
                .bearer_auth(token)
                .json(&json!({ "action": "procurement.read",
                    "resource": { "id": "erp:invoices/1" }, "context": { "risk_score": 10 } })),
        )
        .await
    }

    /// `POST /v1/tasks/{id}/revoke` with the admin token at `node`.
    pub async fn revoke(&self, node: usize, task: &str) -> Result<Answer, String> {
        answer(
            self.http
                .post(format!("{}/v1/tasks/{task}/revoke", self.bases[node]))
                .bearer_auth(&self.admin)
                .json(&json!({ "reason": "revoked by the many-nodes test" })),
        )
        .await
    }

    /// `POST /v1/policies` (validate, store, activate) at `node`.
    pub async fn push_policy(&self, node: usize, text: &str) -> Answer {
        let a = answer(
            self.http
                .post(format!("{}/v1/policies", self.bases[node]))
                .bearer_auth(&self.admin)
                .json(&json!({ "text": text })),
        )
        .await
        .expect("POST /v1/policies");
        assert_eq!(a.status, 201, "policy push at node {node}: {a:?}");
        a
    }

    /// The checkpoint verifier key, to pin in `audit verify`.
    pub async fn vkey(&self, node: usize) -> String {
        let a = answer(
            self.http
                .get(format!("{}/v1/audit/verifier", self.bases[node])),
        )
        .await
        .expect("GET /v1/audit/verifier");
        assert_eq!(a.status, 200, "{a:?}");
        a.body["vkey"].as_str().expect("vkey").to_owned()
    }
}

pub fn token_and_id(a: &Answer) -> (String, String) {
    (
        a.body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token in {a:?}"))
            .to_owned(),
        a.body["task_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no task_id in {a:?}"))
            .to_owned(),
    )
}

/// Reads a private key file written by `mandate agent keygen`.
fn read_agent_key(path: &Path, spiffe: &str) -> AgentKey {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("read the key file"))
        .expect("the key file is JSON");
    let seed: [u8; 32] = B64URL
        .decode(v["d"].as_str().expect("d"))
        .expect("base64url d")
        .try_into()
        .expect("32-byte seed");
    let key = SigningKey::from_bytes(&seed);
    let kid = v["kid"].as_str().map(str::to_owned).unwrap_or_else(|| {
        mandate_core::jwk::Ed25519Jwk::from_verifying_key(&key.verifying_key(), None)
            .kid()
            .to_owned()
    });
    AgentKey {
        spiffe: serde_json::from_value(json!(spiffe)).expect("a SPIFFE id"),
        key,
        kid,
    }
}

/// Starts `mandate serve` as node `i`: its own empty data dir, the shared
/// database and master key, a free loopback port. Waits for `/healthz`.
pub async fn start_node(backend: &Backend, master_key: &str, i: usize, extra: &[&str]) -> Server {
    let port = free_port();
    let dir = backend.dir.path().join(format!("node-{i}"));
    std::fs::create_dir_all(&dir).expect("node data dir");
    let log = backend
        .dir
        .path()
        .join(format!("node-{i}-{port}-{}.log", unique_suffix()));
    let log_file = std::fs::File::create(&log).expect("create the node log");
    let url = backend
        .database_url
        .as_deref()
        .expect("nodes share a PostgreSQL database");
    let child = mandate_cmd()
        .arg("serve")
        .args(["--data-dir", dir.to_str().expect("utf-8 path")])
        .args(["--database-url", url])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .env("MANDATE_MASTER_KEY", master_key)
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("spawn mandate serve");
    let mut s = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        log,
    };
    s.wait_healthy().await;
    s
}

/// SIGTERM, then wait (bounded) for the exit.
pub fn terminate(s: &mut Server) -> ExitStatus {
    let pid = s.child.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -TERM {pid} failed");
    let started = Instant::now();
    loop {
        if let Some(st) = s.child.try_wait().expect("poll the node") {
            return st;
        }
        assert!(
            started.elapsed() < SHUTDOWN_DEADLINE,
            "node {} did not exit within {SHUTDOWN_DEADLINE:?} of SIGTERM:\n{}",
            s.base,
            s.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM, then wait (bounded) without blocking the runtime, so load keeps
/// flowing to the node while it drains.
pub async fn terminate_async(s: &mut Server) -> ExitStatus {
    let pid = s.child.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -TERM {pid} failed");
    let started = Instant::now();
    loop {
        if let Some(st) = s.child.try_wait().expect("poll the node") {
            return st;
        }
        assert!(
            started.elapsed() < SHUTDOWN_DEADLINE,
            "node {} did not exit within {SHUTDOWN_DEADLINE:?} of SIGTERM:\n{}",
            s.base,
            s.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Nothing half-written: every task has its credential and its creation
/// event, and no event names a task that is not stored.
pub fn assert_whole(url: &str) {
    let counts = query(
        url,
        "SELECT (SELECT count(*) FROM tasks), (SELECT count(*) FROM credentials), \
         (SELECT count(*) FROM audit_log WHERE kind IN ('task.created', 'task.delegated'))",
    );
    let n: Vec<&str> = counts.trim().split('|').collect();
    assert!(
        n.len() == 3 && n[0] == n[1] && n[1] == n[2],
        "tasks | credentials | creation events: {counts}"
    );
}

/// `psql -At -c sql` against `url`: the rows as text.
pub fn query(url: &str, sql: &str) -> String {
    let o = Command::new("psql")
        .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::null())
        .output()
        .expect("run psql");
    assert!(o.status.success(), "psql {sql:?}: {}", stderr(&o));
    stdout(&o)
}

/// Entries per event kind in the stored log.
pub fn kinds(url: &str) -> BTreeMap<String, u64> {
    query(
        url,
        "SELECT kind, count(*) FROM audit_log GROUP BY kind ORDER BY kind",
    )
    .lines()
    .filter_map(|l| l.split_once('|'))
    .map(|(k, n)| (k.to_owned(), n.trim().parse().expect("a count")))
    .collect()
}

pub fn log_len(url: &str) -> u64 {
    query(url, "SELECT count(*) FROM audit_log")
        .trim()
        .parse()
        .expect("a count")
}

/// Every UUID named anywhere in the entries of `kind`.
pub fn ids_in_log(url: &str, kind: &str) -> HashSet<String> {
    let text = query(
        url,
        &format!("SELECT entry FROM audit_log WHERE kind = '{kind}' ORDER BY idx"),
    );
    text.split(|c: char| !(c.is_ascii_hexdigit() || c == '-'))
        .filter(|t| t.len() == 36 && t.matches('-').count() == 4)
        .map(str::to_owned)
        .collect()
}

/// A database, `mandate init` once, `n` nodes, and the set-up every test
/// starts from: the dev issuer trusted, Alice, an orchestrator and a worker
/// agent with keys, and a policy set, each step through a different node.
pub struct Cluster {
    /// Declared first: dropped (SIGKILLed) before the data dir goes.
    pub nodes: Vec<Server>,
    pub backend: Backend,
    pub master_key: String,
    pub client: std::sync::Arc<Client>,
}

impl Cluster {
    pub async fn start(backend: Backend, n: usize, extra: &[&str]) -> Cluster {
        let admin = backend.init();
        let data = backend.data_dir();
        let master_key = std::fs::read_to_string(data.join("master.key"))
            .expect("init wrote master.key")
            .trim()
            .to_owned();
        let mut nodes = Vec::new();
        for i in 0..n {
            nodes.push(start_node(&backend, &master_key, i, extra).await);
        }
        let bases: Vec<String> = nodes.iter().map(|s| s.base.clone()).collect();
        let run = |node: usize, args: &[&str]| {
            let mut a = args.to_vec();
            a.extend_from_slice(&["--server", &bases[node % n], "--token", &admin]);
            let o = mandate(&a);
            assert_ok(&o, &args[..2].join(" "));
            stdout(&o)
        };
        let data_s = data.to_str().expect("utf-8 path").to_owned();
        run(0, &["dev-issuer", "trust", "--data-dir", &data_s]);
        let human: Value = serde_json::from_str(&run(
            1,
            &[
                "human",
                "register",
                "--issuer",
                DEV_ISSUER,
                "--subject",
                "alice",
                "--name",
                "Alice",
                "--json",
            ],
        ))
        .expect("human JSON");
        let alice = human["id"].as_str().expect("human id").to_owned();
        let dir = backend.dir.path();
        let mut keys = Vec::new();
        for (i, (name, grant)) in [
            ("orchestrator", "procurement.*=erp:*"),
            ("worker", "procurement.read=erp:*"),
        ]
        .into_iter()
        .enumerate()
        {
            let key = dir.join(format!("{name}.key"));
            let o = mandate(&["agent", "keygen", "--out", key.to_str().expect("path")]);
            assert_ok(&o, "agent keygen");
            let public = dir.join(format!("{name}.jwk"));
            std::fs::write(&public, stdout(&o)).expect("write the public JWK");
            run(
                2 + i,
                &[
                    "agent",
                    "register",
                    "--name",
                    name,
                    "--owner",
                    &alice,
                    "--description",
                    name,
                    "--grant",
                    grant,
                    "--key",
                    &format!("@{}", public.display()),
                ],
            );
            keys.push(read_agent_key(
                &key,
                &format!("spiffe://acme.example/agent/{name}"),
            ));
        }
        let policy = dir.join("policy.cedar");
        std::fs::write(&policy, POLICY).expect("write the policy");
        run(
            n + 1,
            &["policy", "push", policy.to_str().expect("utf-8 path")],
        );
        let http = load_http();
        let meta = answer(http.get(format!(
            "{}/.well-known/oauth-authorization-server",
            bases[0]
        )))
        .await
        .expect("metadata");
        let issuer = meta.body["issuer"].as_str().expect("issuer").to_owned();
        let seed: [u8; 32] = B64URL
            .decode(
                std::fs::read_to_string(data.join("dev-issuer.key"))
                    .expect("dev-issuer trust wrote its key")
                    .trim(),
            )
            .expect("base64url")
            .try_into()
            .expect("32 bytes");
        let worker = keys.pop().expect("worker key");
        let orchestrator = keys.pop().expect("orchestrator key");
        let client = Client {
            http,
            bases,
            admin,
            issuer,
            dev: DevIssuer::new(DEV_ISSUER, seed),
            orchestrator,
            worker,
        };
        Cluster {
            nodes,
            backend,
            master_key,
            client: std::sync::Arc::new(client),
        }
    }

    pub fn database_url(&self) -> &str {
        self.backend.database_url.as_deref().expect("PostgreSQL")
    }

    /// SIGTERM every node still running; each must exit with status 0.
    pub fn terminate_all(&mut self, skip: &[usize]) {
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if skip.contains(&i) {
                continue;
            }
            let st = terminate(node);
            assert!(
                st.success(),
                "node {i} ({}) exited with {st} after SIGTERM, not 0:\n{}",
                node.base,
                node.log_text()
            );
        }
    }

    /// `mandate audit verify` against the database with the pinned key.
    pub fn verify(&self, vkey: &str) -> String {
        let o = self.backend.run(&["audit", "verify", "--vkey", vkey]);
        assert_ok(&o, "mandate audit verify");
        let out = stdout(&o);
        assert!(out.contains("audit log OK"), "audit verify said: {out}");
        out.trim().to_owned()
    }
}

// ---- load -------------------------------------------------------------------

/// An acknowledged (2xx) request: which node, in which phase, and the id the
/// answer carried (a decision id, or the delegated task's id).
#[derive(Debug, Clone)]
pub struct Acked {
    pub node: usize,
    pub phase: usize,
    pub id: String,
    /// When the request was sent and when its answer was read.
    pub sent: Instant,
    pub done: Instant,
}

#[derive(Debug, Clone)]
pub struct Failed {
    pub node: usize,
    pub phase: usize,
    pub what: &'static str,
    pub answer: Answer,
    /// How long the answer took (reported, never asserted).
    pub took: Duration,
}

#[derive(Debug, Default)]
pub struct Results {
    pub decisions: Vec<Acked>,
    pub delegations: Vec<Acked>,
    /// Answers that were not the expected 2xx (a decision answered but not
    /// `allow` counts here too).
    pub failures: Vec<Failed>,
    /// Transport errors: (node, phase, error).
    pub errors: Vec<(usize, usize, String)>,
}

impl Results {
    pub fn acked(&self) -> usize {
        self.decisions.len() + self.delegations.len()
    }

    pub fn summary(&self) -> String {
        let mut per_status: BTreeMap<u16, usize> = BTreeMap::new();
        for f in &self.failures {
            *per_status.entry(f.answer.status).or_default() += 1;
        }
        format!(
            "{} decisions and {} delegations acknowledged, failures by status {per_status:?}, {} transport errors",
            self.decisions.len(),
            self.delegations.len(),
            self.errors.len()
        )
    }
}

/// Concurrent decisions (and, every `delegate_every`-th request, a
/// delegation) under live root tasks, spread round-robin over the nodes
/// that are not marked dead.
pub struct Load {
    pub client: std::sync::Arc<Client>,
    /// Root task tokens the load acts under.
    pub roots: Vec<String>,
    pub delegate_every: usize,
    pub stop: AtomicBool,
    pub dead: Vec<AtomicBool>,
    /// A label the test moves forward (e.g. before / during / after an outage).
    pub phase: AtomicUsize,
    pub results: Mutex<Results>,
}

impl Load {
    pub fn new(client: std::sync::Arc<Client>, roots: Vec<String>, delegate_every: usize) -> Self {
        let dead = (0..client.bases.len())
            .map(|_| AtomicBool::new(false))
            .collect();
        Load {
            client,
            roots,
            delegate_every,
            stop: AtomicBool::new(false),
            dead,
            phase: AtomicUsize::new(0),
            results: Mutex::new(Results::default()),
        }
    }

    pub fn acked(&self) -> usize {
        self.results.lock().unwrap().acked()
    }

    pub fn take(&self) -> Results {
        std::mem::take(&mut *self.results.lock().unwrap())
    }

    /// Starts `workers` tasks, each making at most `max_ops` requests.
    pub fn spawn(
        self: &std::sync::Arc<Self>,
        workers: usize,
        max_ops: usize,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        (0..workers)
            .map(|w| tokio::spawn(self.clone().worker(w, max_ops)))
            .collect()
    }

    async fn worker(self: std::sync::Arc<Self>, w: usize, max_ops: usize) {
        for k in 0..max_ops {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            let live: Vec<usize> = (0..self.dead.len())
                .filter(|i| !self.dead[*i].load(Ordering::SeqCst))
                .collect();
            if live.is_empty() {
                return;
            }
            let node = live[(w + k) % live.len()];
            let root = &self.roots[(w * 7 + k) % self.roots.len()];
            let phase = self.phase.load(Ordering::SeqCst);
            let sent = Instant::now();
            let delegation = self.delegate_every > 0 && k % self.delegate_every == 0;
            let res = if delegation {
                self.client.delegate(node, root).await
            } else {
                self.client.decide(node, root).await
            };
            let took = sent.elapsed();
            let done = Instant::now();
            let mut r = self.results.lock().unwrap();
            match res {
                Err(e) => r.errors.push((node, phase, e)),
                Ok(a) if delegation => match a.body["task_id"].as_str() {
                    Some(id) if a.status == 200 => r.delegations.push(Acked {
                        node,
                        phase,
                        id: id.to_owned(),
                        sent,
                        done,
                    }),
                    _ => r.failures.push(Failed {
                        node,
                        phase,
                        what: "delegation",
                        answer: a,
                        took,
                    }),
                },
                Ok(a) => match a.body["decision_id"].as_str() {
                    Some(id) if a.status == 200 && a.body["decision"] == "allow" => {
                        r.decisions.push(Acked {
                            node,
                            phase,
                            id: id.to_owned(),
                            sent,
                            done,
                        })
                    }
                    _ => r.failures.push(Failed {
                        node,
                        phase,
                        what: "decision",
                        answer: a,
                        took,
                    }),
                },
            }
        }
    }
}

/// Every acknowledged decision has its `decision.made` entry (by decision
/// id) and every acknowledged delegation its `task.delegated` entry (by
/// task id); returns how many were checked.
pub fn assert_all_logged(url: &str, r: &Results, when: &str) -> usize {
    let decided = ids_in_log(url, "decision.made");
    let delegated = ids_in_log(url, "task.delegated");
    let lost: Vec<_> = r
        .decisions
        .iter()
        .filter(|d| !decided.contains(&d.id))
        .chain(r.delegations.iter().filter(|d| !delegated.contains(&d.id)))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged requests have no audit entry {when}, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    r.acked()
}

/// Waits (bounded) until `cond` holds; false if the deadline passed.
pub async fn wait_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

// ---- a private PostgreSQL cluster --------------------------------------------

/// A throwaway PostgreSQL cluster in a temp dir on a free loopback port, so
/// a test can stop and start it without touching the shared server. As root,
/// the PostgreSQL tools run as the `postgres` user (they refuse root).
pub struct PrivatePg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
    pub port: u16,
}

fn pg_bindir() -> PathBuf {
    if let Ok(o) = Command::new("pg_config").arg("--bindir").output()
        && o.status.success()
    {
        let p = PathBuf::from(stdout(&o).trim());
        if p.join("pg_ctl").exists() && p.join("initdb").exists() {
            return p;
        }
    }
    if let Ok(rd) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut dirs: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("pg_ctl").exists() && p.join("initdb").exists())
            .collect();
        dirs.sort();
        if let Some(d) = dirs.pop() {
            return d;
        }
    }
    panic!(
        "initdb and pg_ctl were not found (pg_config --bindir, /usr/lib/postgresql/*/bin): \
         the PostgreSQL restart test needs them to run a private cluster; \
         install the PostgreSQL server package"
    );
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

impl PrivatePg {
    pub fn start() -> PrivatePg {
        let bin = pg_bindir();
        let as_postgres = running_as_root();
        let dir = tempfile::Builder::new()
            .prefix("mandate-pg-")
            .tempdir()
            .expect("temp dir");
        if as_postgres {
            let o = Command::new("chown")
                .args(["postgres:", dir.path().to_str().expect("utf-8 path")])
                .output()
                .expect("run chown");
            assert!(
                o.status.success(),
                "running as root, the private cluster must belong to the postgres user, \
                 but chown failed: {}",
                stderr(&o)
            );
        }
        let pg = PrivatePg {
            dir,
            bin,
            as_postgres,
            port: free_port(),
        };
        let data = pg.data();
        pg.tool(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        pg.start_server();
        pg
    }

    fn data(&self) -> String {
        self.dir
            .path()
            .join("data")
            .to_str()
            .expect("utf-8 path")
            .to_owned()
    }

    fn tool(&self, name: &str, args: &[&str]) -> String {
        let exe = self.bin.join(name);
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let o = c
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
        assert!(
            o.status.success(),
            "{name} {args:?} failed ({}):\n{}\n{}\nserver log:\n{}",
            o.status,
            stdout(&o),
            stderr(&o),
            self.server_log()
        );
        stdout(&o)
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// `pg_ctl start -w`: returns once it accepts connections.
    pub fn start_server(&self) {
        let log = self.dir.path().join("server.log");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        self.tool(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &opts,
                "-l",
                log.to_str().expect("utf-8 path"),
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
    }

    /// `pg_ctl stop -m immediate`: like a crash, every connection cut, WAL
    /// replayed at the next start.
    pub fn stop_immediate(&self) {
        self.tool(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-m",
                "immediate",
                "-w",
                "-t",
                "30",
                "stop",
            ],
        );
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        // Best effort: it may already be stopped.
        let exe = self.bin.join("pg_ctl");
        let data = self.data();
        let args = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
        let _ = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&exe)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
        } else {
            Command::new(&exe)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
        };
    }
}
