//! The web console over plain HTTP, on both backends: nothing without a
//! session, sign-in only with a genuine ID token of a registered human,
//! forms refused without their session's CSRF token or from another
//! origin, roles deciding what is seen and done, separation of duties held
//! for approvals answered in the console, and the security headers.

mod support;

use mandate_store::testing::TestStore;
use reqwest::StatusCode;
use support::*;

/// Every console page and form.
const PAGES: &[&str] = &[
    "/ui",
    "/ui/",
    "/ui/inventory",
    "/ui/inventory?q=orch",
    "/ui/agents/orchestrator",
    "/ui/tasks",
    "/ui/approvals",
    "/ui/roai",
    "/ui/roai/report.csv",
    "/ui/roai/evidence.zip",
    "/ui/posture",
    "/ui/audit",
    "/ui/audit?entry=0",
];
const FORMS: &[&str] = &["/ui/sign-out", "/ui/audit/verify"];

fn location(res: &reqwest::Response) -> String {
    res.headers()["location"].to_str().unwrap().to_owned()
}

async fn every_page_redirects_to_sign_in_without_a_session(t: TestStore) {
    let c = setup(t).await;
    let task = format!("/ui/tasks/{}", c.task);
    let approve = format!("/ui/approvals/{}", c.approval);
    let forged = Session {
        cookie: "mandate_console=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
        csrf: String::new(),
    };
    for session in [None, Some(&forged)] {
        for path in PAGES.iter().copied().chain([task.as_str()]) {
            let res = c.get(path, session).await;
            assert_eq!(res.status(), StatusCode::SEE_OTHER, "{path}");
            assert!(
                location(&res).starts_with("/ui/sign-in"),
                "{path} -> {}",
                location(&res)
            );
        }
        for path in FORMS.iter().copied().chain([approve.as_str()]) {
            let res = c
                .post(
                    path,
                    session,
                    &[("csrf", "x"), ("answer", "approve"), ("reason", "r")],
                )
                .await;
            assert_eq!(res.status(), StatusCode::SEE_OTHER, "{path}");
            assert!(location(&res).starts_with("/ui/sign-in"), "{path}");
        }
    }
    // The way back after sign-in is kept, and only to console pages.
    let res = c.get(&task, None).await;
    assert_eq!(
        location(&res),
        format!("/ui/sign-in?next=%2Fui%2Ftasks%2F{}", c.task)
    );
    let res = c.get("/ui/sign-in?next=https://evil.example/", None).await;
    assert!(!res.text().await.unwrap().contains("evil.example"));
    assert_eq!(c.approval_status().await, "pending");
}

async fn pages_carry_the_security_headers(t: TestStore) {
    let c = setup(t).await;
    let s = c.sign_in("erin").await;
    for res in [
        c.get("/ui/sign-in", None).await,
        c.get("/ui/inventory", Some(&s)).await,
    ] {
        assert_eq!(res.status(), StatusCode::OK);
        let h = res.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'none'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("form-action 'self'"));
        assert!(!csp.contains("script-src"), "no script at all: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "same-origin");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["cache-control"], "no-store");
        let html = res.text().await.unwrap();
        assert!(!html.contains("<script"), "the console sends no script");
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "nothing is fetched from elsewhere"
        );
    }
    let css = c.get("/ui/static/console.css", None).await;
    assert_eq!(css.status(), StatusCode::OK);
    assert!(
        css.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
}

async fn sign_in_needs_a_genuine_token_of_a_registered_human(t: TestStore) {
    let c = setup(t).await;
    // The session cookie: HttpOnly, SameSite=Strict, /ui only; plain HTTP is
    // allowed here because the browser addressed loopback.
    let form = c.get("/ui/sign-in", None).await;
    let set = form.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/ui"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "loopback: {set}");
    // Addressed by a name that is not loopback, the cookie is Secure.
    let res = c
        .http
        .get(c.url("/ui/sign-in"))
        .header("host", "mandate.acme.example")
        .send()
        .await
        .unwrap();
    assert!(
        res.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .ends_with("; Secure")
    );

    let now = mandate_server::now();
    let other_issuer = mandate_core::credential::DevIssuer::new("https://other.example", [9; 32]);
    for (token, why) in [
        (c.f.id_token("nobody"), "no human is registered"),
        (
            c.f.dev
                .mint("alice", "https://wrong-audience.example", now, 300),
            "audience",
        ),
        (
            other_issuer.mint("alice", &c.f.issuer(), now, 300),
            "not trusted",
        ),
        ("not a token".to_owned(), ""),
        (String::new(), "paste an ID token"),
    ] {
        let (res, _) = c.try_sign_in(&token).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{why}");
        assert!(
            cookie_of(&res).is_none(),
            "no session for a refused sign-in"
        );
        let html = res.text().await.unwrap();
        assert!(html.contains("sign-in-error"), "{why}: the reason is shown");
        assert!(html.contains(why), "{why}: {html}");
        if !token.is_empty() {
            assert!(!html.contains(&token), "the token is never echoed back");
        }
    }
    // A sign-in form posted without the form's session (login CSRF) is refused.
    let res = c
        .post("/ui/sign-in", None, &[("id_token", &c.f.id_token("alice"))])
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(
        cookie_of(&res).map(|k| k.len() > 20).unwrap_or(false),
        "only a fresh anonymous form session"
    );
    let res = c
        .get(
            "/ui/inventory",
            Some(&Session {
                cookie: cookie_of(&res).unwrap(),
                csrf: String::new(),
            }),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "that session is not signed in"
    );

    // Signed in, then out: the session is gone.
    let s = c.sign_in("alice").await;
    assert_eq!(
        c.get("/ui/inventory", Some(&s)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        c.post("/ui/sign-out", Some(&s), &[]).await.status(),
        StatusCode::FORBIDDEN,
        "sign-out needs the CSRF token too"
    );
    let res = c.post("/ui/sign-out", Some(&s), &[("csrf", &s.csrf)]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(
        res.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        c.get("/ui/inventory", Some(&s)).await.status(),
        StatusCode::SEE_OTHER
    );

    // A human deactivated after signing in is out at the next click.
    let s = c.sign_in("mallory").await;
    let (st, _) =
        c.f.s
            .post(
                &format!("/v1/humans/{}/deactivate", c.f.mallory),
                serde_json::json!({}),
            )
            .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        c.get("/ui/roai", Some(&s)).await.status(),
        StatusCode::SEE_OTHER
    );
}

async fn an_auditor_cannot_approve(t: TestStore) {
    let c = setup(t).await;
    let s = c.sign_in("dana").await;
    let before = c.f.s.footprint().await;
    // The queue is readable, with no answer form.
    let res = c.get("/ui/approvals", Some(&s)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    assert!(html.contains(&c.approval));
    // The context the waiting request carried is shown, not only its digest.
    let amount = support::big_payment()["amount"].to_string();
    assert!(
        html.contains("risk_score") && html.contains(&amount),
        "the request's context is not shown"
    );
    assert!(!html.contains(&format!("action=\"/ui/approvals/{}\"", c.approval)));
    for answer in ["approve", "deny"] {
        let res = c
            .post(
                &format!("/ui/approvals/{}", c.approval),
                Some(&s),
                &[
                    ("csrf", &s.csrf),
                    ("answer", answer),
                    ("reason", "looks fine"),
                ],
            )
            .await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{answer}");
        assert!(res.text().await.unwrap().contains("approver role"));
    }
    assert_eq!(c.approval_status().await, "pending");
    assert_eq!(c.f.s.footprint().await, before, "nothing was written");
    let d =
        c.f.decide(
            &c.token,
            "payments.initiate",
            "bank:acme/ops",
            big_payment(),
        )
        .await;
    assert_eq!(d["decision"], "needs_approval", "still waiting: {d}");
}

async fn a_forged_form_is_refused_and_the_real_one_unlocks_the_call(t: TestStore) {
    let c = setup(t).await;
    let s = c.sign_in("bob").await;
    let path = format!("/ui/approvals/{}", c.approval);
    let before = c.f.s.footprint().await;
    for form in [
        vec![("answer", "approve"), ("reason", "forged")],
        vec![("csrf", ""), ("answer", "approve"), ("reason", "forged")],
        vec![
            ("csrf", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            ("answer", "approve"),
            ("reason", "forged"),
        ],
    ] {
        let res = c.post(&path, Some(&s), &form).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{form:?}");
        assert!(res.text().await.unwrap().contains("CSRF"));
    }
    // The right token from another site's page is still refused.
    let res = c
        .http
        .post(c.url(&path))
        .header("cookie", &s.cookie)
        .header("origin", "https://evil.example")
        .form(&[
            ("csrf", s.csrf.as_str()),
            ("answer", "approve"),
            ("reason", "forged"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // Another session's token does not fit this session.
    let other = c.sign_in("erin").await;
    let res = c
        .post(
            &path,
            Some(&s),
            &[
                ("csrf", &other.csrf),
                ("answer", "approve"),
                ("reason", "forged"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // A reason is required.
    let res = c
        .post(
            &path,
            Some(&s),
            &[("csrf", &s.csrf), ("answer", "approve"), ("reason", "  ")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(c.approval_status().await, "pending");
    assert_eq!(c.f.s.footprint().await, before, "nothing was written");

    let res = c
        .post(
            &path,
            Some(&s),
            &[
                ("csrf", &s.csrf),
                ("answer", "approve"),
                ("reason", "matches the quote"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(location(&res).starts_with("/ui/approvals?answered="));
    assert_eq!(c.approval_status().await, "approved");
    let d =
        c.f.decide(
            &c.token,
            "payments.initiate",
            "bank:acme/ops",
            big_payment(),
        )
        .await;
    assert_eq!(d["decision"], "allow", "the waiting call goes through: {d}");
    // Answered once: a second answer is a conflict.
    let res = c
        .post(
            &path,
            Some(&s),
            &[("csrf", &s.csrf), ("answer", "deny"), ("reason", "again")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
}

async fn the_initiator_cannot_approve_their_own_task(t: TestStore) {
    let c = setup(t).await;
    // Erin is an approver, but here she starts the task herself.
    let details = serde_json::json!([{ "type": "mandate_task", "purpose": "pay", "actions": ["payments.initiate"],
        "resources": ["bank:acme/*"], "limits": { "max_calls": 5 } }]);
    let (st, b) =
        c.f.root(
            &c.f.id_token("erin"),
            &c.f.agent("orchestrator", ORCH),
            details,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let token = b["access_token"].as_str().unwrap().to_owned();
    let d =
        c.f.decide(&token, "payments.initiate", "bank:acme/ops", big_payment())
            .await;
    let own = d["approval_id"].as_str().unwrap().to_owned();
    let s = c.sign_in("erin").await;
    let html = c.get("/ui/approvals", Some(&s)).await.text().await.unwrap();
    assert!(html.contains("Waiting for another approver"));
    assert!(
        !html.contains(&format!("action=\"/ui/approvals/{own}\"")),
        "no answer form for her own task"
    );
    let res = c
        .post(
            &format!("/ui/approvals/{own}"),
            Some(&s),
            &[("csrf", &s.csrf), ("answer", "approve"), ("reason", "mine")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let (_, a) = c.f.s.get(&format!("/v1/approvals/{own}")).await;
    assert_eq!(a["status"], "pending");
}

async fn roles_decide_what_is_seen(t: TestStore) {
    let c = setup(t).await;
    let lineage = format!("/ui/tasks/{}", c.task);
    let child = format!("/ui/tasks/{}", c.child);
    // An admin sees every page.
    let admin = c.sign_in("erin").await;
    for path in PAGES.iter().copied().chain([
        lineage.as_str(),
        child.as_str(),
        "/ui/audit?agent=orchestrator",
        "/ui/tasks?agent=orchestrator",
    ]) {
        let res = c.get(path, Some(&admin)).await;
        let st = res.status();
        assert!(
            st == StatusCode::OK
                || (st == StatusCode::SEE_OTHER && path.starts_with("/ui") && path.len() <= 4),
            "{path}: {st}"
        );
    }
    let html = c.get(&lineage, Some(&admin)).await.text().await.unwrap();
    assert!(html.contains("<svg class=\"lineage\""), "the tree is drawn");
    assert!(
        html.contains("spiffe://acme.example/agent/worker"),
        "the subagent is in it"
    );
    assert!(
        html.contains("outside_task_scope"),
        "the deny's reason is listed"
    );
    assert!(
        html.contains("/ui/audit?entry="),
        "entries are linked to their proofs"
    );
    let html = c
        .get("/ui/audit?entry=1", Some(&admin))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("id=\"proof-status\">verified"), "{html}");
    assert!(
        c.get("/ui/audit", Some(&admin))
            .await
            .text()
            .await
            .unwrap()
            .contains("id=\"signature-status\">valid")
    );
    let res = c
        .post("/ui/audit/verify", Some(&admin), &[("csrf", &admin.csrf)])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(
        c.get("/ui/audit", Some(&admin))
            .await
            .text()
            .await
            .unwrap()
            .contains("id=\"verify-status\">PASS")
    );
    // Searching the log by task id or jti leads to the lineage.
    let res = c
        .get(&format!("/ui/audit?q={}", c.child), Some(&admin))
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(location(&res).starts_with(&format!("/ui/tasks/{}", c.child)));
    let res = c.get("/ui/audit?q=no-such-thing", Some(&admin)).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let csv = c.get("/ui/roai/report.csv", Some(&admin)).await;
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let zip = c.get("/ui/roai/evidence.zip", Some(&admin)).await;
    assert_eq!(zip.status(), StatusCode::OK);
    assert_eq!(&zip.bytes().await.unwrap()[..2], b"PK");
    let roai = c.get("/ui/roai", Some(&admin)).await.text().await.unwrap();
    assert!(roai.contains("<svg class=\"chart\""), "charts are drawn");
    assert!(
        roai.find("<svg").unwrap() < roai.find("<table").unwrap(),
        "charts first, tables below"
    );

    // Alice owns the agents: her inventory, her tasks, her workflow; not posture or the log.
    let alice = c.sign_in("alice").await;
    let html = c
        .get("/ui/inventory", Some(&alice))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("orchestrator") && html.contains("Showing the agents you own"));
    assert_eq!(c.get(&lineage, Some(&alice)).await.status(), StatusCode::OK);
    assert_eq!(
        c.get("/ui/roai", Some(&alice)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        c.get("/ui/posture", Some(&alice)).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        c.get("/ui/audit", Some(&alice)).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        c.get("/ui/approvals", Some(&alice)).await.status(),
        StatusCode::FORBIDDEN
    );

    // Mallory has no role and owns nothing.
    let mallory = c.sign_in("mallory").await;
    for path in [
        "/ui/inventory",
        "/ui/agents/orchestrator",
        lineage.as_str(),
        "/ui/posture",
        "/ui/audit",
        "/ui/approvals",
        "/ui/roai/report.csv",
    ] {
        let res = c.get(path, Some(&mallory)).await;
        assert!(
            matches!(res.status(), StatusCode::FORBIDDEN | StatusCode::NOT_FOUND),
            "{path}: {}",
            res.status()
        );
    }
    let html = c
        .get("/ui/roai", Some(&mallory))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("no-workflows"), "no figures for her");

    // Bob approves: he sees the queue and, through it, the task's lineage.
    let bob = c.sign_in("bob").await;
    assert_eq!(c.get(&lineage, Some(&bob)).await.status(), StatusCode::OK);
    assert_eq!(
        c.get("/ui/inventory", Some(&bob)).await.status(),
        StatusCode::FORBIDDEN
    );

    // Bad input is a clear 400.
    for path in [
        "/ui/inventory?kind=robot",
        "/ui/inventory?q=%3Cscript%3E",
        "/ui/tasks/not-a-task",
        "/ui/roai?from=yesterday",
        "/ui/posture?severity=dire",
    ] {
        let res = c.get(path, Some(&admin)).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{path}");
        let html = res.text().await.unwrap();
        assert!(html.contains("role=\"alert\""), "{path}");
        assert!(!html.contains("<script>"), "{path}: input is escaped");
    }
}

/// Grants Orchestrator break-glass, an unreviewed grant posture reports;
/// returns the grant's id.
async fn grant_breakglass(c: &Console) -> String {
    let (st, g) = c
        .f
        .s
        .post(
            "/v1/breakglass",
            serde_json::json!({ "agent": "orchestrator", "ttl_s": 600, "reason": "ERP outage INC-7",
                "scope": [{ "action": "procurement.po.create", "resource": "erp:purchase-orders/*" }] }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    g["id"].as_str().unwrap().to_owned()
}

async fn posture_shows_a_change_at_once_on_a_small_registry(t: TestStore) {
    let c = setup(t).await;
    let s = c.sign_in("erin").await;
    let before = c.get("/ui/posture", Some(&s)).await.text().await.unwrap();
    let id = grant_breakglass(&c).await;
    assert!(!before.contains(&id));
    // The assessment is kept, but the log moved and it is quick to redo.
    let after = c.get("/ui/posture", Some(&s)).await.text().await.unwrap();
    assert!(after.contains(&id), "the new grant is a finding at once");
    assert!(!after.contains("id=\"behind\""));
}

async fn a_slow_assessment_is_shown_behind_then_refreshed(t: TestStore) {
    // Every assessment counts as slow, as at 10,000 agents.
    let settings = mandate_console::Settings {
        posture: mandate_console::PostureRefresh {
            inline_under: std::time::Duration::ZERO,
            max_age: std::time::Duration::from_secs(600),
        },
        ..Default::default()
    };
    let c = setup_with(t, settings).await;
    let s = c.sign_in("erin").await;
    let first = c.get("/ui/posture", Some(&s)).await.text().await.unwrap();
    assert!(!first.contains("id=\"behind\""), "the first view assesses");
    let kept = c.get("/ui/posture", Some(&s)).await.text().await.unwrap();
    assert!(!kept.contains("id=\"behind\""), "nothing changed: current");

    let id = grant_breakglass(&c).await;
    let behind = c.get("/ui/posture", Some(&s)).await.text().await.unwrap();
    assert!(!behind.contains(&id), "the kept assessment is shown");
    assert!(
        behind.contains("id=\"behind\"") && behind.contains("The log has grown by"),
        "and said to be behind"
    );
    // The background assessment lands without further changes to the log.
    let mut seen = None;
    for _ in 0..100 {
        let page = c.get("/ui/posture", Some(&s)).await.text().await.unwrap();
        if page.contains(&id) {
            seen = Some(page);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let page = seen.expect("the new grant became a finding within 5 s");
    assert!(!page.contains("id=\"behind\""), "and the page is current");
}

mandate_store::backend_tests!(
    posture_shows_a_change_at_once_on_a_small_registry,
    a_slow_assessment_is_shown_behind_then_refreshed,
    every_page_redirects_to_sign_in_without_a_session,
    pages_carry_the_security_headers,
    sign_in_needs_a_genuine_token_of_a_registered_human,
    an_auditor_cannot_approve,
    a_forged_form_is_refused_and_the_real_one_unlocks_the_call,
    the_initiator_cannot_approve_their_own_task,
    roles_decide_what_is_seen,
);
