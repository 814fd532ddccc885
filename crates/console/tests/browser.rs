//! The console end to end in a real headless Chromium, driven over W3C
//! WebDriver (chromedriver) from Rust, on both backends: sign in with an ID
//! token, find an agent, open a task's lineage, approve a pending request
//! and see the waiting call succeed, open Return on AI and see the chart.
//! Screenshots are saved under `target/console-screenshots/`.
//!
//! Needs Debian's `chromium` and `chromium-driver`; without them the test
//! fails and says how to install them (it never skips).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use mandate_store::testing::TestStore;
use support::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a free loopback port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn require(path: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: the browser test needs Debian's Chromium and its WebDriver. \
         Install them with `apt-get install -y chromium chromium-driver` (.ci/run does this)"
    );
}

async fn driver() -> Driver {
    require(CHROMIUM);
    require(CHROMEDRIVER);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(CHROMEDRIVER)
        .args([
            format!("--port={port}"),
            "--allowed-ips=127.0.0.1".into(),
            "--silent".into(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if http
            .get(format!("{url}/status"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "chromedriver did not start on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Driver {
        child,
        url,
        _profile: tempfile::tempdir().unwrap(),
    }
}

async fn browser(d: &Driver) -> Client {
    let profile = d._profile.path().display().to_string();
    let caps = serde_json::json!({
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1366,900",
                format!("--user-data-dir={profile}"),
            ],
        }
    });
    let caps = match caps {
        serde_json::Value::Object(m) => m,
        _ => unreachable!(),
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&d.url)
        .await
        .expect("a Chromium session through chromedriver")
}

fn shots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(b: &Client, name: &str) {
    let png = b.screenshot().await.unwrap();
    std::fs::write(shots().join(format!("{name}.png")), png).unwrap();
}

async fn text_of(b: &Client, css: &str) -> String {
    b.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

/// Finds the element and clicks it.
async fn click(b: &Client, at: Locator<'_>) {
    b.find(at).await.unwrap().click().await.unwrap();
}

/// Waits (bounded) until the page's heading reads `want`: a click starts a
/// navigation, and the old page answers queries until the new one is in.
async fn heading(b: &Client, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = match b.find(Locator::Css("main h1")).await {
            Ok(h) => h.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "page heading {now:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (bounded) until the browser's URL contains `part`.
async fn url_with(b: &Client, part: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.current_url().await.unwrap().as_str().contains(part) {
        assert!(
            Instant::now() < deadline,
            "the URL never contained {part:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn the_console_in_a_real_browser(t: TestStore, backend: &str) {
    let c = setup(t).await;
    let d = driver().await;
    let b = browser(&d).await;

    // Any page sends an unknown browser to sign-in; Erin pastes her ID token.
    b.goto(&c.url("/ui/inventory")).await.unwrap();
    assert!(
        b.current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/ui/sign-in")
    );
    // The keyboard reaches the form first thing (no pointer needed).
    let field = b.find(Locator::Id("id_token")).await.unwrap();
    field.send_keys(&c.f.id_token("erin")).await.unwrap();
    shot(&b, &format!("{backend}-sign-in")).await;
    click(&b, Locator::Id("sign-in")).await;
    heading(&b, "Inventory").await;

    // Find an agent by name.
    let search = b.find(Locator::Css("input[name=q]")).await.unwrap();
    search.send_keys("orch").await.unwrap();
    click(&b, Locator::Css("form.filters button")).await;
    url_with(&b, "q=orch").await;
    let rows = b
        .find_all(Locator::Css("#inventory tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "only the orchestrator matches");
    shot(&b, &format!("{backend}-inventory")).await;
    click(&b, Locator::LinkText("orchestrator")).await;
    heading(&b, "Agent orchestrator").await;
    assert!(text_of(&b, "#ceiling").await.contains("payments.initiate"));

    // Open its task's lineage: the tree is a graph with the subagent in it.
    click(&b, Locator::LinkText(&c.task)).await;
    heading(&b, "Task lineage").await;
    let graph = b.find(Locator::Css("svg.lineage")).await.unwrap();
    let boxes = graph.find_all(Locator::Css("rect")).await.unwrap();
    assert_eq!(
        boxes.len(),
        3,
        "Alice, the orchestrator's task and the worker's subtask"
    );
    let page = b.source().await.unwrap();
    assert!(
        page.contains("outside_task_scope"),
        "the deny is listed with its reason"
    );
    shot(&b, &format!("{backend}-lineage")).await;

    // The payment waits for approval; approve it with a reason.
    b.goto(&c.url("/ui/approvals")).await.unwrap();
    let card = format!("#approval-{}", c.approval);
    assert!(text_of(&b, &card).await.contains("payments.initiate"));
    shot(&b, &format!("{backend}-approvals")).await;
    b.find(Locator::Css(&format!("{card} textarea")))
        .await
        .unwrap()
        .send_keys("matches the signed quote")
        .await
        .unwrap();
    click(&b, Locator::Css(&format!("{card} button[value=approve]"))).await;
    assert!(text_of(&b, "#answered").await.contains("approved"));
    assert_eq!(c.approval_status().await, "approved");
    // The agent's waiting call, asked again, now goes through.
    let d2 =
        c.f.decide(
            &c.token,
            "payments.initiate",
            "bank:acme/ops",
            big_payment(),
        )
        .await;
    assert_eq!(d2["decision"], "allow", "{d2}");

    // Return on AI: charts first.
    b.goto(&c.url("/ui/roai")).await.unwrap();
    heading(&b, "Return on AI: procurement").await;
    let charts = b.find_all(Locator::Css("svg.chart")).await.unwrap();
    assert!(
        charts.len() >= 3,
        "over time, per workflow and the report's charts"
    );
    let (_, _, w, h) = charts[0].rectangle().await.unwrap();
    assert!(
        w > 100.0 && h > 50.0,
        "the chart is drawn visibly ({w}x{h})"
    );
    shot(&b, &format!("{backend}-roai")).await;

    b.goto(&c.url("/ui/posture")).await.unwrap();
    heading(&b, "Posture").await;
    shot(&b, &format!("{backend}-posture")).await;
    b.goto(&c.url("/ui/audit")).await.unwrap();
    assert_eq!(text_of(&b, "#signature-status").await, "valid");
    shot(&b, &format!("{backend}-audit")).await;

    // Signing out ends it: the next page asks to sign in again.
    click(&b, Locator::Css("header form button")).await;
    heading(&b, "Sign in").await;
    b.goto(&c.url("/ui/inventory")).await.unwrap();
    assert!(
        b.current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/ui/sign-in")
    );
    b.close().await.unwrap();
}

mod sqlite {
    #[tokio::test(flavor = "multi_thread")]
    async fn the_console_in_a_real_browser() {
        super::the_console_in_a_real_browser(mandate_store::testing::sqlite().await, "sqlite")
            .await;
    }
}

mod postgres {
    #[tokio::test(flavor = "multi_thread")]
    async fn the_console_in_a_real_browser() {
        super::the_console_in_a_real_browser(mandate_store::testing::postgres().await, "postgres")
            .await;
    }
}
