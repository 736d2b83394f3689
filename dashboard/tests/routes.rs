//! Every route over HTTP, in process (the memory broker and backend): status codes,
//! authentication, read-only mode, the forgery checks, escaping, redirects. The browser test
//! (`browser.rs`) covers what only a browser shows.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use conveyor::inspect::Inspector;
use conveyor::memory::{MemoryBackend, MemoryBroker};
use conveyor::{Client, TaskMessage};
use conveyor_dashboard::{Auth, Dashboard};
use tower::ServiceExt;

const XSS: &str = "<script>alert(1)</script>\"><img src=x onerror=alert(1)>";

struct App {
    ins: Inspector,
    archived: String,
    pending: String,
}

/// An application with a pending task and an archived one, both carrying payloads.
async fn app() -> App {
    let broker: Arc<dyn conveyor::Broker> = Arc::new(MemoryBroker::new());
    let backend: Arc<dyn conveyor::ResultBackend> = Arc::new(MemoryBackend::new());
    let client = Client::new(broker.clone(), backend.clone());
    let mut m = TaskMessage::with_args("mail:send", &serde_json::json!({ "x": XSS })).unwrap();
    m.queue = "mail".into();
    m.headers.insert("note".into(), XSS.into());
    m.headers.insert(conveyor::PARENT_HEADER.into(), "the-parent".into());
    let pending = client.enqueue_message(m.clone()).await.unwrap().id.to_string();
    m.id = conveyor::TaskId::random();
    let archived = client.enqueue_message(m).await.unwrap().id.to_string();
    let ins = Inspector::new(broker, backend);
    ins.archive(&conveyor::TaskId::from(archived.as_str())).await.unwrap();
    App { ins, archived, pending }
}

fn mounted(d: Dashboard) -> Router {
    Router::new().nest("/ops", d.router())
}

async fn send(r: &Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let res = r.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 24).await.unwrap();
    (parts.status, parts.headers, String::from_utf8_lossy(&bytes).into_owned())
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

/// A GET for the page's CSRF cookie, then a POST of `form` with it (and the token, if `with_token`).
async fn post(r: &Router, path: &str, form: &str, with_token: bool) -> (StatusCode, axum::http::HeaderMap, String) {
    let (_, h, _) = send(r, get("/ops")).await;
    let cookie = h.get(header::SET_COOKIE).unwrap().to_str().unwrap().split(';').next().unwrap().to_owned();
    let token = cookie.split_once('=').unwrap().1.to_owned();
    let body = if with_token { format!("csrf={token}&{form}") } else { form.to_owned() };
    let req = Request::post(path)
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    send(r, req).await
}

#[tokio::test]
async fn every_page_answers_escaped_with_security_headers() {
    let a = app().await;
    let r = mounted(Dashboard::new(a.ins.clone()));
    let pages = [
        "/ops".to_owned(),
        "/ops?page=3&filter=ma".into(),
        "/ops/queues/mail".into(),
        "/ops/queues/mail?state=archived".into(),
        "/ops/queues/mail?state=completed".into(),
        "/ops/queues/mail?state=pending&name=mail:send&page=1".into(),
        "/ops/queues/mail/failures".into(),
        format!("/ops/tasks/{}", a.archived),
        format!("/ops/tasks/{}", a.pending),
        "/ops/workers".into(),
        "/ops/scheduler".into(),
        "/ops/scheduler/nightly".into(),
        "/ops/assets/style.css".into(),
        "/ops/assets/app.js".into(),
    ];
    for p in &pages {
        let (status, h, body) = send(&r, get(p)).await;
        assert_eq!(status, StatusCode::OK, "{p}");
        let csp = h.get(header::CONTENT_SECURITY_POLICY).unwrap().to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && !csp.contains("unsafe"), "{p}: {csp}");
        assert_eq!(h.get(header::X_FRAME_OPTIONS).unwrap(), "DENY", "{p}");
        assert!(!body.contains("<script>alert") && !body.contains("<img src=x"), "{p}: a payload unescaped");
    }
    let (_, _, task) = send(&r, get(&format!("/ops/tasks/{}", a.archived))).await;
    assert!(task.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "the payload shown, escaped");
    assert!(task.contains("launched by <a href=\"/ops/tasks/the-parent\">"), "a link to the workflow's parent");
}

#[tokio::test]
async fn errors_have_their_status() {
    let a = app().await;
    let r = mounted(Dashboard::new(a.ins));
    assert_eq!(send(&r, get("/ops/tasks/no-such-task")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(send(&r, get("/ops/queues/nowhere")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(send(&r, get("/ops/queues/mail?state=sleeping")).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(send(&r, get("/ops/queues/bad%20name")).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(send(&r, get("/ops/nothing-here")).await.0, StatusCode::NOT_FOUND);
    let (status, h, _) = send(&r, get("/ops/search?id=abc")).await;
    assert_eq!((status, h.get(header::LOCATION).unwrap().to_str().unwrap()), (StatusCode::SEE_OTHER, "/ops/tasks/abc"));
    // The refresh picker goes back inside the dashboard only.
    let (_, h, _) = send(&r, get("/ops/refresh?every=5&back=https://evil.example/")).await;
    assert_eq!(h.get(header::LOCATION).unwrap(), "/ops");
    let (_, h, _) = send(&r, get("/ops/refresh?every=5&back=/ops/workers")).await;
    assert_eq!(h.get(header::LOCATION).unwrap(), "/ops/workers");
    assert!(h.get(header::SET_COOKIE).unwrap().to_str().unwrap().starts_with("conveyor_refresh=5"));
}

#[tokio::test]
async fn actions_need_the_form_token_and_the_same_origin() {
    let a = app().await;
    let r = mounted(Dashboard::new(a.ins.clone()));
    let path = format!("/ops/tasks/{}/run", a.archived);
    assert_eq!(post(&r, &path, "", false).await.0, StatusCode::FORBIDDEN, "no token");
    let req = Request::post(&path)
        .header(header::ORIGIN, "https://evil.example")
        .header(header::HOST, "127.0.0.1")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&r, req).await.0, StatusCode::FORBIDDEN, "cross-site");
    assert_eq!(a.ins.task(&a.archived.as_str().into()).await.unwrap().state(), conveyor::TaskState::Archived);

    let (status, h, _) = post(&r, &path, "", true).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(h.get(header::LOCATION).unwrap().to_str().unwrap(), format!("/ops/tasks/{}", a.archived));
    assert_eq!(a.ins.task(&a.archived.as_str().into()).await.unwrap().state(), conveyor::TaskState::Pending);
    // An action its state does not allow: the page says why, with 409.
    let (status, _, body) = post(&r, &format!("/ops/tasks/{}/run", a.pending), "", true).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body.contains("it is pending"), "{body}");
    // Every task of a state: a confirmation page first, then done.
    let (status, _, body) = post(&r, "/ops/queues/mail/all", "action=archive&state=pending", true).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("all 2 pending tasks"), "{body}");
    assert_eq!(a.ins.queue("mail").await.unwrap().pending, 2, "nothing done before the confirmation");
    let (status, _, _) = post(&r, "/ops/queues/mail/all", "action=archive&state=pending&confirm=yes", true).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(a.ins.queue("mail").await.unwrap().archived, 2);
    // The selected tasks; pause and resume, back to where the form was.
    let form = format!("action=delete&state=archived&id={}&back=/ops/queues/mail", a.pending);
    let (status, h, _) = post(&r, "/ops/queues/mail/bulk", &form, true).await;
    assert_eq!(
        (status, h.get(header::LOCATION).unwrap().to_str().unwrap()),
        (StatusCode::SEE_OTHER, "/ops/queues/mail")
    );
    assert_eq!(a.ins.queue("mail").await.unwrap().archived, 1);
    assert_eq!(post(&r, "/ops/queues/mail/pause", "back=/ops", true).await.0, StatusCode::SEE_OTHER);
    assert!(a.ins.queue("mail").await.unwrap().paused);
    assert_eq!(
        post(&r, "/ops/queues/mail/resume", "back=https://evil.example", true).await.1[header::LOCATION],
        "/ops"
    );
    assert!(!a.ins.queue("mail").await.unwrap().paused);
}

#[tokio::test]
async fn read_only_has_no_action_route() {
    let a = app().await;
    let r = mounted(Dashboard::new(a.ins.clone()).read_only(true));
    for path in
        [format!("/ops/tasks/{}/run", a.archived), "/ops/queues/mail/pause".into(), "/ops/queues/mail/all".into()]
    {
        let status = post(&r, &path, "action=delete&state=archived&confirm=yes", true).await.0;
        assert!(status == StatusCode::METHOD_NOT_ALLOWED || status == StatusCode::NOT_FOUND, "{path}: {status}");
    }
    let (_, _, page) = send(&r, get(&format!("/ops/tasks/{}", a.archived))).await;
    assert!(!page.contains("method=\"post\"") && page.contains("read-only"));
    assert_eq!(a.ins.queue("mail").await.unwrap().archived, 1, "nothing changed");
}

#[tokio::test]
async fn authentication_is_asked_and_checked() {
    let a = app().await;
    let r = mounted(Dashboard::new(a.ins.clone()).auth(Auth::Bearer("s3cret-token-0123456789".into())));
    assert_eq!(send(&r, get("/ops")).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(send(&r, get("/ops/assets/style.css")).await.0, StatusCode::UNAUTHORIZED);
    let req = Request::get("/ops").header(header::AUTHORIZATION, "Bearer s3cret-token-0123456789").body(Body::empty());
    assert_eq!(send(&r, req.unwrap()).await.0, StatusCode::OK);
    assert_eq!(send(&r, get("/ops?token=wrong")).await.0, StatusCode::UNAUTHORIZED);
    let (status, h, _) = send(&r, get("/ops/workers?token=s3cret-token-0123456789")).await;
    assert_eq!((status, h.get(header::LOCATION).unwrap().to_str().unwrap()), (StatusCode::SEE_OTHER, "/ops/workers"));
    let cookie = h.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let req = Request::get("/ops").header(header::COOKIE, cookie.split(';').next().unwrap()).body(Body::empty());
    assert_eq!(send(&r, req.unwrap()).await.0, StatusCode::OK);

    let basic = mounted(Dashboard::new(a.ins.clone()).auth(Auth::Basic { user: "ops".into(), password: "pw".into() }));
    let (status, h, _) = send(&basic, get("/ops")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(h.get(header::WWW_AUTHENTICATE).unwrap().to_str().unwrap().starts_with("Basic"));
    let req = Request::get("/ops").header(header::AUTHORIZATION, "Basic b3BzOnB3").body(Body::empty()); // ops:pw
    assert_eq!(send(&basic, req.unwrap()).await.0, StatusCode::OK);
    let req = Request::get("/ops").header(header::AUTHORIZATION, "Basic b3BzOnB4").body(Body::empty()); // ops:px
    assert_eq!(send(&basic, req.unwrap()).await.0, StatusCode::UNAUTHORIZED);

    let hook = mounted(Dashboard::new(a.ins).authorize(|p| p.headers.contains_key("x-admin")));
    assert_eq!(send(&hook, get("/ops")).await.0, StatusCode::FORBIDDEN);
    let req = Request::get("/ops").header("x-admin", "1").body(Body::empty());
    assert_eq!(send(&hook, req.unwrap()).await.0, StatusCode::OK);
    // Never on a non-loopback address without any of them.
    let exposed = "0.0.0.0:8080".parse().unwrap();
    assert!(conveyor_dashboard::check_exposure(exposed, false).unwrap_err().contains("without authentication"));
    assert!(conveyor_dashboard::check_exposure(exposed, true).is_ok());
    assert!(conveyor_dashboard::check_exposure("127.0.0.1:8080".parse().unwrap(), false).is_ok());
}

#[tokio::test]
async fn review_edges_redirects_secrets_ids_and_refresh() {
    let a = app().await;
    // Mounted at the root: a `back` with a tab (which browsers strip from a Location) is refused.
    let root = Dashboard::new(a.ins.clone()).router();
    let (_, h, _) = send(&root, get("/refresh?every=5&back=/%09/evil.example")).await;
    assert_eq!(h.get(header::LOCATION).unwrap(), "/");
    // Nested: back to the overview's page and filter.
    let r = mounted(Dashboard::new(a.ins.clone()));
    let (_, h, _) = send(&r, get("/ops/refresh?every=0&back=/ops%3Fpage%3D3")).await;
    assert_eq!(h.get(header::LOCATION).unwrap(), "/ops?page=3");
    // An empty secret authenticates nothing, and does not count as authentication.
    let empty = Dashboard::new(a.ins.clone()).auth(Auth::Bearer(String::new()));
    assert!(!empty.authenticates());
    assert_eq!(send(&mounted(empty), get("/ops")).await.0, StatusCode::UNAUTHORIZED);
    let basic = Dashboard::new(a.ins.clone()).auth(Auth::Basic { user: "ops".into(), password: String::new() });
    assert!(!basic.authenticates());
    // Sec-Fetch-Site decides for browsers, whatever the Host says (HTTP/2, proxies).
    let (_, h, _) = send(&r, get("/ops")).await;
    let cookie = h.get(header::SET_COOKIE).unwrap().to_str().unwrap().split(';').next().unwrap().to_owned();
    let token = cookie.split_once('=').unwrap().1.to_owned();
    let pause = |site: &'static str| {
        Request::post("/ops/queues/mail/pause")
            .header(header::COOKIE, &cookie)
            .header("sec-fetch-site", site)
            .header(header::ORIGIN, "https://dashboard.example")
            .body(Body::from(format!("csrf={token}")))
            .unwrap()
    };
    assert_eq!(send(&r, pause("cross-site")).await.0, StatusCode::FORBIDDEN);
    assert_eq!(send(&r, pause("same-origin")).await.0, StatusCode::SEE_OTHER);
    a.ins.resume("mail").await.unwrap();
    // A task id with a space: its link works.
    let client = Client::new(a.ins.broker().clone(), a.ins.backend().clone());
    let mut m = TaskMessage::with_args("mail:send", &()).unwrap();
    (m.queue, m.id) = ("mail".into(), "has space".into());
    client.enqueue_message(m).await.unwrap();
    let (_, _, list) = send(&r, get("/ops/queues/mail")).await;
    assert!(list.contains("href=\"/ops/tasks/has%20space\""), "the id encoded for a path");
    assert_eq!(send(&r, get("/ops/tasks/has%20space")).await.0, StatusCode::OK);
    // A workflow step: links back to its parent, forward to its next steps and chord body.
    let mut m = TaskMessage::with_args("wf:step", &()).unwrap();
    m.queue = "mail".into();
    let wf = r#"{"frames":[{"steps":[{"task":{"id":"next-1","name":"wf:next"}}]}],
        "report":{"group":"g1","index":0,"size":3,"after":{"body":{"task":{"id":"body-1","name":"wf:body"}}}}}"#;
    m.workflow = Some(serde_json::value::RawValue::from_string(wf.into()).unwrap());
    let step = client.enqueue_message(m).await.unwrap().id;
    let (_, _, page) = send(&r, get(&format!("/ops/tasks/{step}"))).await;
    assert!(page.contains("href=\"/ops/tasks/next-1\">wf:next</a>"), "next steps linked");
    assert!(page.contains("href=\"/ops/tasks/body-1\">wf:body</a>"), "the chord body linked");
    assert!(page.contains("1 of 3 of group"), "membership");
    // Live refresh never on the answer to a form (it would post it again).
    let req = Request::post("/ops/queues/mail/all")
        .header(header::COOKIE, format!("{cookie}; conveyor_refresh=2"))
        .body(Body::from(format!("csrf={token}&action=archive&state=pending")))
        .unwrap();
    let (status, _, body) = send(&r, req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Are you sure") && !body.contains("http-equiv=\"refresh\""), "{body}");
    let req = Request::get("/ops").header(header::COOKIE, "conveyor_refresh=2").body(Body::empty()).unwrap();
    assert!(send(&r, req).await.2.contains("http-equiv=\"refresh\" content=\"2\""));
    // A page number past any backlog is the last page there can be, not an overflow.
    assert_eq!(send(&r, get(&format!("/ops/queues/mail?page={}", usize::MAX))).await.0, StatusCode::OK);
}
