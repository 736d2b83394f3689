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
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use conveyor::inspect::Inspector;
use conveyor::{
    Client, PeriodicEntry, Request, Scheduler, Signature, TaskError, TaskMessage, TaskResult, TaskState, Worker,
};
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
    // Waiting tasks, for the bulk actions (no worker runs them now); one due in an hour.
    for _ in 0..3 {
        let mut m = TaskMessage::with_args("xss:ok", &payload_args()).unwrap();
        m.queue = queue.into();
        client.enqueue_message(m).await.unwrap();
    }
    let mut later = TaskMessage::with_args("xss:ok", &payload_args()).unwrap();
    later.queue = queue.into();
    later.eta = Some(std::time::SystemTime::now() + Duration::from_secs(3600));
    client.enqueue_message(later).await.unwrap();

    // A worker that goes on while the browser looks: a task running (to be cancelled from its
    // page), one waiting for a retry, and a flaky one that fails once, to be run again from
    // the archive and complete.
    static FAILED_ONCE: AtomicBool = AtomicBool::new(false);
    let stop_b = CancellationToken::new();
    let worker = Worker::builder(broker.clone(), backend.clone())
        .register_handler("slow:sleep", |_r: Request| async {
            tokio::time::sleep(Duration::from_secs(120)).await;
            TaskResult::Ok(serde_json::value::to_raw_value(&()).unwrap())
        })
        .register_handler("flaky:once", |_r: Request| async {
            if FAILED_ONCE.swap(true, Ordering::SeqCst) {
                TaskResult::Ok(serde_json::value::to_raw_value("sent").unwrap())
            } else {
                Err(TaskError::skip_retry("the mail server said no"))
            }
        })
        .register_handler("flaky:later", |_r: Request| async {
            Err::<Box<serde_json::value::RawValue>, _>(TaskError::retry_after(
                Duration::from_secs(3600),
                "<i>rate limited</i>",
            ))
        })
        .queue("slow", 1)
        .queue("flaky", 1)
        .build()
        .unwrap();
    let running_b = tokio::spawn(worker.run_until(stop_b.clone()));
    let mut flaky = TaskMessage::with_args("flaky:once", &serde_json::json!({ "to": "a@example.com" })).unwrap();
    (flaky.queue, flaky.max_retry) = ("flaky".into(), 0);
    let flaky = client.enqueue_message(flaky).await.unwrap().id;
    assert_eq!(client.wait(&flaky, Duration::from_secs(10)).await.unwrap().state, TaskState::Archived);
    let mut retrying = TaskMessage::with_args("flaky:later", &()).unwrap();
    retrying.queue = "flaky".into();
    let retrying = client.enqueue_message(retrying).await.unwrap().id;
    let mut slow = TaskMessage::with_args("slow:sleep", &()).unwrap();
    slow.queue = "slow".into();
    let slow = client.enqueue_message(slow).await.unwrap().id;
    let ins = Inspector::new(broker.clone(), backend.clone());
    for (id, state) in [(&slow, TaskState::Active), (&retrying, TaskState::Retry)] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while ins.task(id).await.unwrap().state() != state {
            assert!(tokio::time::Instant::now() < deadline, "{id} never became {state}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // A periodic entry, for the scheduler's page: every second, into a queue no worker takes.
    let entry = PeriodicEntry::new(
        "nightly-report",
        "* * * * * *",
        Signature::raw("report:nightly", &()).unwrap().queue("reports"),
    )
    .unwrap();
    let scheduler = Scheduler::builder(broker.clone(), backend.clone()).entry(entry).build().unwrap();
    let stop_s = CancellationToken::new();
    let running_s = tokio::spawn(scheduler.run_until(stop_s.clone()));
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let base = serve(Dashboard::new(ins.clone())).await;
    let ro = serve(Dashboard::new(ins.clone()).read_only(true)).await;
    let auth = serve(Dashboard::new(ins.clone()).auth(Auth::Bearer(TOKEN.into()))).await;

    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    // A screenshot of every page, for a look (target/ is the workspace's).
    let shots = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/dashboard-screenshots");
    std::fs::create_dir_all(shots).unwrap();
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
        .env("FLAKY_ID", flaky.as_str())
        .env("SLOW_ID", slow.as_str())
        .env("SHOTS", shots)
        .output()
        .await
        .expect("node runs (Node.js is needed for the browser test)");
    let said = String::from_utf8_lossy(&out.stdout);
    println!("{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.contains("all checks passed"), "the browser checks failed:\n{said}");

    stop_s.cancel();
    running_s.await.unwrap();
    stop_b.cancel();
    running_b.await.unwrap().unwrap();

    // What the browser did, as the inspector sees it.
    // The failed task was run again (pending), archived with the others, then deleted with
    // the whole archive.
    let s = ins.queue(queue).await.unwrap();
    assert_eq!((s.pending, s.archived, s.paused), (0, 0, false), "{s:?}");
    assert!(matches!(ins.task(&failing).await, Err(conveyor::Error::NotFound { .. })));
    assert_eq!(ins.task(&flaky).await.unwrap().state(), TaskState::Completed, "run again, then completed");
    let cancelled = ins.task(&slow).await.unwrap();
    assert_eq!(cancelled.state(), TaskState::Archived, "cancelled from its page");
    assert_eq!(cancelled.record.unwrap().error.as_deref(), Some(conveyor::inspect::OPERATOR_CANCELLED));
}

/// A unique enough suffix for the key namespace.
fn uuid_like() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{t:x}{}", std::process::id())
}
