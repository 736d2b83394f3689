//! The dashboard in a real browser (Debian's headless Chromium, driven by playwright-core from
//! `tests/browser/run.mjs`), on a real Redis: what an operator does (find the failed task, read
//! its error and attempts, run it again, bulk-archive, delete all with a confirmation, pause and
//! resume), with task values carrying script payloads that must never run; the security
//! headers, forgery checks, read-only mode and token authentication.
//!
//! Needs Redis (`CONVEYOR_TEST_REDIS_URL`, started by `scripts/redis start`), Chromium at
//! `/usr/bin/chromium` and `npm ci` run in `tests/browser/` (`scripts/test` does all three). A
//! test that cannot reach them fails.

use std::net::SocketAddr;
use std::time::Duration;

use conveyor::inspect::Inspector;
use conveyor::{Client, Request, TaskError, TaskMessage, TaskResult, TaskState, Worker};
use conveyor_dashboard::{Auth, Dashboard};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "a-test-token-of-some-length";

/// Serves `d` nested under `/admin/queues`; the base URL.
async fn serve(d: Dashboard) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let app = axum::Router::new().nest("/admin/queues", d.router());
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/admin/queues")
}

fn payload_args() -> serde_json::Value {
    serde_json::json!({
        "html": "<script>window.__xss=1</script>",
        "attr": "\"><img src=x onerror=window.__xss=2>",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_in_a_real_browser() {
    let redis = std::env::var("CONVEYOR_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6390".into());
    let prefix = format!("dash{}", uuid_like());
    let url = format!("{}/?prefix={prefix}&list_completed=true", redis.trim_end_matches('/'));
    let broker = conveyor::broker(&url).await.unwrap_or_else(|e| panic!("Redis at {redis} is not reachable ({e})"));
    let backend = conveyor::backend(&url).await.unwrap();
    let client = Client::new(broker.clone(), backend.clone());
    let queue = "mail";

    // A task that fails for good, with payloads in its arguments, error and headers; one that
    // completes with a payload in its result.
    let mut failing = TaskMessage::with_args("xss:fail", &payload_args()).unwrap();
    failing.queue = queue.into();
    failing.max_retry = 0;
    failing.headers.insert("x-note".into(), "<b>bold</b><img src=x onerror=window.__xss=5>".into());
    let failing = client.enqueue_message(failing).await.unwrap().id;
    let mut done = TaskMessage::with_args("xss:ok", &payload_args()).unwrap();
    done.queue = queue.into();
    let done = client.enqueue_message(done).await.unwrap().id;
    let stop = CancellationToken::new();
    let worker = Worker::builder(broker.clone(), backend.clone())
        .register_handler("xss:fail", |_r: Request| async {
            Err::<Box<serde_json::value::RawValue>, _>(TaskError::skip_retry(
                "<script>window.__xss=3</script><img src=x onerror=window.__xss=4>",
            ))
        })
        .register_handler("xss:ok", |_r: Request| async {
            TaskResult::Ok(serde_json::value::to_raw_value("<script>window.__xss=6</script>").unwrap())
        })
        .queue(queue, 1)
        .build()
        .unwrap();
    let running = tokio::spawn(worker.run_until(stop.clone()));
    for (id, state) in [(&failing, TaskState::Archived), (&done, TaskState::Completed)] {
        assert_eq!(client.wait(id, Duration::from_secs(10)).await.unwrap().state, state);
    }
    stop.cancel();
    running.await.unwrap().unwrap();
    // Waiting tasks, for the bulk actions (no worker runs them now).
    for _ in 0..3 {
        let mut m = TaskMessage::with_args("xss:ok", &payload_args()).unwrap();
        m.queue = queue.into();
        client.enqueue_message(m).await.unwrap();
    }

    let ins = Inspector::new(broker.clone(), backend.clone());
    let base = serve(Dashboard::new(ins.clone())).await;
    let ro = serve(Dashboard::new(ins.clone()).read_only(true)).await;
    let auth = serve(Dashboard::new(ins.clone()).auth(Auth::Bearer(TOKEN.into()))).await;

    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    assert!(
        std::path::Path::new(dir).join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci` in {dir} (scripts/test does)"
    );
    let out = tokio::process::Command::new("node")
        .arg("run.mjs")
        .current_dir(dir)
        .env("BASE", &base)
        .env("RO_BASE", &ro)
        .env("AUTH_BASE", &auth)
        .env("TOKEN", TOKEN)
        .env("QUEUE", queue)
        .env("ARCHIVED_ID", failing.as_str())
        .env("DONE_ID", done.as_str())
        .output()
        .await
        .expect("node runs (Node.js is needed for the browser test)");
    let said = String::from_utf8_lossy(&out.stdout);
    println!("{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.contains("all checks passed"), "the browser checks failed:\n{said}");

    // What the browser did, as the inspector sees it.
    // The failed task was run again (pending), archived with the others, then deleted with
    // the whole archive.
    let s = ins.queue(queue).await.unwrap();
    assert_eq!((s.pending, s.archived, s.paused), (0, 0, false), "{s:?}");
    assert!(matches!(ins.task(&failing).await, Err(conveyor::Error::NotFound { .. })));
}

/// A unique enough suffix for the key namespace.
fn uuid_like() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{t:x}{}", std::process::id())
}
