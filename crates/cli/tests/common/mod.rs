//! The real `mandate` binary: commands, servers on loopback ports, and
//! fresh PostgreSQL databases for one run each.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a server may take to answer `GET /healthz`.
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(10);

/// A `mandate` command with an environment that cannot point it elsewhere:
/// everything it uses comes from explicit flags.
pub fn mandate_cmd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mandate"));
    for var in [
        "MANDATE_MASTER_KEY",
        "MANDATE_DATABASE_URL",
        "MANDATE_DATA_DIR",
        "MANDATE_LISTEN",
        "MANDATE_SERVER",
        "MANDATE_TOKEN",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        c.env_remove(var);
    }
    c.stdin(Stdio::null());
    c
}

pub fn mandate(args: &[&str]) -> Output {
    mandate_cmd()
        .args(args)
        .output()
        .expect("run the mandate binary")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn assert_ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "`{what}` failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

/// A free loopback port: bind port 0, read it, let it go.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("HTTP client")
}

pub fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!("{}_{}", std::process::id(), nanos % 1_000_000_000_000)
}

/// A fresh PostgreSQL database for one run, dropped (best effort) at the end.
pub struct PgDatabase {
    /// The URL we were given, used to create and drop the database.
    pub admin_url: String,
    pub name: String,
    /// Same host and user, the fresh database.
    pub url: String,
}

impl PgDatabase {
    pub fn create() -> PgDatabase {
        let admin_url = std::env::var("MANDATE_TEST_DATABASE_URL").unwrap_or_default();
        assert!(
            !admin_url.is_empty(),
            "MANDATE_TEST_DATABASE_URL is not set: the PostgreSQL crash test needs a server, e.g. \
             MANDATE_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test (this test fails rather than skips)"
        );
        let name = format!("mandate_crash_{}", unique_suffix());
        psql(&admin_url, &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("cannot create the test database {name}: {e}"));
        let url = with_database(&admin_url, &name);
        PgDatabase {
            admin_url,
            name,
            url,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Err(e) = psql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        ) {
            eprintln!("warning: could not drop {}: {e}", self.name);
        }
    }
}

pub fn psql(url: &str, sql: &str) -> Result<(), String> {
    let o = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!("psql {}: {}", o.status, stderr(&o).trim()))
    }
}

/// `url` with its database name (the path) replaced by `db`, keeping any query.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{db}?{q}"),
        None => format!("{host_part}/{db}"),
    }
}

/// Where one run keeps its state: a data dir (master key, SQLite) and, for
/// PostgreSQL, the database URL.
pub struct Backend {
    pub dir: tempfile::TempDir,
    pub database_url: Option<String>,
}

impl Backend {
    pub fn sqlite() -> Backend {
        Backend {
            dir: tempfile::tempdir().expect("temp dir"),
            database_url: None,
        }
    }

    /// Keep `db` alive (declared first) until every server is gone.
    pub fn postgres(db: &PgDatabase) -> Backend {
        Backend {
            dir: tempfile::tempdir().expect("temp dir"),
            database_url: Some(db.url.clone()),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `--data-dir D [--database-url U]`
    pub fn store_args(&self) -> Vec<String> {
        let mut a = vec![
            "--data-dir".to_owned(),
            self.data_dir()
                .to_str()
                .expect("utf-8 temp path")
                .to_owned(),
        ];
        if let Some(u) = &self.database_url {
            a.push("--database-url".to_owned());
            a.push(u.clone());
        }
        a
    }

    pub fn run(&self, sub: &[&str]) -> Output {
        let store = self.store_args();
        let mut args: Vec<&str> = sub.to_vec();
        args.extend(store.iter().map(String::as_str));
        mandate(&args)
    }

    /// `mandate init`; returns the admin token.
    pub fn init(&self) -> String {
        let o = self.run(&["init", "--trust-domain", "acme.example"]);
        assert_ok(&o, "mandate init");
        stdout(&o)
            .lines()
            .find(|l| l.contains("mandate_admin_"))
            .map(|l| l.trim().to_owned())
            .unwrap_or_else(|| panic!("no admin token in the init output:\n{}", stdout(&o)))
    }

    /// Starts `mandate serve` on a free loopback port and waits for `/healthz`.
    pub async fn serve(&self, extra: &[&str]) -> Server {
        let port = free_port();
        let log = self
            .dir
            .path()
            .join(format!("serve-{port}-{}.log", unique_suffix()));
        let log_file = std::fs::File::create(&log).expect("create the server log");
        let child = mandate_cmd()
            .arg("serve")
            .args(self.store_args())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn mandate serve");
        let mut server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        server.wait_healthy().await;
        server
    }
}

/// A running `mandate serve`; killed when dropped, so a failed assertion
/// never leaves a server behind.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub log: PathBuf,
}

impl Server {
    pub async fn wait_healthy(&mut self) {
        let client = http();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the server") {
                panic!(
                    "mandate serve exited with {status} before answering /healthz:\n{}",
                    self.log_text()
                );
            }
            if let Ok(r) = client.get(format!("{}/healthz", self.base)).send().await
                && r.status() == reqwest::StatusCode::OK
            {
                return;
            }
            assert!(
                started.elapsed() < STARTUP_DEADLINE,
                "mandate serve did not answer GET /healthz within {STARTUP_DEADLINE:?}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL (what `Child::kill` sends on Unix), then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
