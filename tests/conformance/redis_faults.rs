//! Fault tests against the real Redis server: a worker killed mid-task, Redis restarted
//! mid-run, garbage where a task should be.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conveyor::memory::MemoryBackend;
use conveyor::{Client, Payload, Request, TaskMessage, TaskResult, TaskState, Worker};

use crate::suite::{eventually, Running};

const CHILD: &str = "CONVEYOR_FAULT_CHILD";

fn url_with_prefix(base: &str) -> String {
    format!("{}/?prefix=f{}", base.trim_end_matches('/'), uuid::Uuid::new_v4().simple())
}

fn ok() -> TaskResult {
    Ok(serde_json::value::to_raw_value(&()).unwrap())
}

fn message(name: &str, queue: &str) -> TaskMessage {
    let mut m = TaskMessage::with_args(name, &()).unwrap();
    m.queue = queue.into();
    m
}

/// The child's entry point: a worker whose `fault:slow` handler announces itself and never
/// finishes. Does nothing unless run as the child of the test below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_child_entry() {
    let Ok(url) = std::env::var(CHILD) else { return };
    let broker = conveyor::broker(&url).await.unwrap();
    let worker = Worker::builder(broker, Arc::new(MemoryBackend::new()))
        .register_handler("fault:slow", |_req: Request| async {
            println!("RUNNING");
            std::future::pending::<TaskResult>().await
        })
        .queue("faults", 1)
        .lease(Duration::from_secs(1))
        .build()
        .unwrap();
    worker.run().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_mid_task_is_redelivered_and_completes_once() {
    let url = url_with_prefix(&crate::redis::url());
    let broker = conveyor::broker(&url).await.expect("Redis reachable (scripts/redis start)");
    let backend = Arc::new(MemoryBackend::new());
    let client = Client::new(broker.clone(), backend.clone());
    let rec = client.enqueue_message(message("fault:slow", "faults")).await.unwrap();

    // A worker process takes the task, then dies with SIGKILL mid-task.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "redis_faults::fault_child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD, &url)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let started = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout).lines().any(|l| l.is_ok_and(|l| l.ends_with("RUNNING")))
    });
    let started = tokio::time::timeout(Duration::from_secs(30), started).await;
    let _ = Command::new("kill").args(["-KILL", &child.id().to_string()]).status();
    let _ = child.wait();
    assert!(matches!(started, Ok(Ok(true))), "the child never started the task");
    assert_eq!(broker.stats("faults").await.unwrap().active, 1, "the dead worker's task is still leased");

    // Another worker gets it once the lease (1 s) has expired, and runs it once.
    let runs = Arc::new(AtomicUsize::new(0));
    let retried = Arc::new(AtomicU32::new(99));
    let (r, t) = (runs.clone(), retried.clone());
    let w = Running::start(
        Worker::builder(broker.clone(), backend.clone())
            .register_handler("fault:slow", move |req: Request| {
                r.fetch_add(1, Ordering::SeqCst);
                t.store(req.task.retried, Ordering::SeqCst);
                async { ok() }
            })
            .queue("faults", 1),
    );
    let done = client.wait(&rec.id, Duration::from_secs(15)).await.unwrap();
    assert_eq!(done.state, TaskState::Completed);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "completed exactly once more");
    assert_eq!(retried.load(Ordering::SeqCst), 1, "the lost lease counts as an attempt");
    let stats = broker.stats("faults").await.unwrap();
    assert_eq!((stats.pending, stats.active, stats.scheduled), (0, 0, 0));
    w.stop().await;
}

/// Runs `scripts/redis` for the restart test's own server.
fn redis_script(action: &str, port: u16, dir: &str) {
    let status = Command::new("scripts/redis")
        .arg(action)
        .env("CONVEYOR_REDIS_PORT", port.to_string())
        .env("CONVEYOR_REDIS_DIR", dir)
        .env("CONVEYOR_REDIS_FSYNC", "always")
        .status()
        .expect("scripts/redis runs");
    assert!(status.success(), "scripts/redis {action} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_mid_run_loses_no_accepted_task() {
    let port = 6391;
    let dir = format!("/tmp/conveyor-redis-restart-{}", std::process::id());
    redis_script("start", port, &dir);
    let url = url_with_prefix(&format!("redis://127.0.0.1:{port}"));
    let broker = conveyor::broker(&url).await.unwrap();
    let backend = Arc::new(MemoryBackend::new());
    let client = Client::new(broker.clone(), backend.clone());
    let done = Arc::new(Mutex::new(HashSet::new()));
    let d = done.clone();
    let w = Running::start(
        Worker::builder(broker.clone(), backend.clone())
            .register_handler("fault:count", move |req: Request| {
                d.lock().unwrap().insert(req.task.id.clone());
                async { ok() }
            })
            .queue("restart", 1)
            .concurrency(8),
    );
    let mut accepted = HashSet::new();
    let mut refused = 0;
    let mut restart = None;
    for i in 0..300 {
        if i == 100 {
            let dir = dir.clone();
            restart = Some(std::thread::spawn(move || redis_script("restart", port, &dir)));
        }
        match client.enqueue_message(message("fault:count", "restart")).await {
            Ok(rec) => {
                accepted.insert(rec.id);
            }
            Err(e) => {
                assert!(e.is_transient(), "an outage is a broker error: {e}");
                refused += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    restart.unwrap().join().unwrap();
    // Every task whose enqueue returned Ok runs, also those published just before the restart.
    eventually(Duration::from_secs(30), "every accepted task processed", || async {
        accepted.iter().all(|id| done.lock().unwrap().contains(id))
    })
    .await;
    println!("redis restart: {} of 300 enqueues accepted, {refused} refused during the outage", accepted.len());
    assert!(accepted.len() >= 200, "only {} of 300 accepted ({refused} refused)", accepted.len());
    w.stop().await;
    redis_script("stop", port, &dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_where_a_task_should_be_is_archived() {
    let url = url_with_prefix(&crate::redis::url());
    let prefix = url.rsplit("prefix=").next().unwrap().to_owned();
    let broker = conveyor::broker(&url).await.unwrap();
    let backend = Arc::new(MemoryBackend::new());
    let client = Client::new(broker.clone(), backend.clone());
    let a = client.enqueue_message(message("fault:count", "garbage")).await.unwrap();
    let b = client.enqueue_message(message("fault:count", "garbage")).await.unwrap();
    // Something else overwrote the tasks: one key with the wrong type, one with a bad payload.
    let key = |id: &conveyor::TaskId| format!("{prefix}:{{{prefix}:garbage}}:t:{id}");
    let mut conn = redis::Client::open(crate::redis::url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    redis::cmd("SET").arg(key(&a.id)).arg("\u{0}garbage").query_async::<()>(&mut conn).await.unwrap();
    redis::cmd("HSET").arg(key(&b.id)).arg("msg").arg("{not json").query_async::<()>(&mut conn).await.unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let w = Running::start(
        Worker::builder(broker.clone(), backend.clone())
            .register_handler("fault:count", move |_req: Request| {
                r.fetch_add(1, Ordering::SeqCst);
                async { ok() }
            })
            .queue("garbage", 1),
    );
    eventually(Duration::from_secs(10), "both archived", || async {
        broker.stats("garbage").await.unwrap().archived == 2
    })
    .await;
    let archived = broker.admin().unwrap().archived("garbage", 0, 10).await.unwrap();
    for a in &archived {
        assert!(a.reason.starts_with("undecodable payload"), "{}", a.reason);
        assert!(matches!(a.payload, Payload::Undecodable { .. }));
    }
    // The worker goes on.
    let c = client.enqueue_message(message("fault:count", "garbage")).await.unwrap();
    assert_eq!(client.wait(&c.id, Duration::from_secs(10)).await.unwrap().state, TaskState::Completed);
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    w.stop().await;
}

/// A queue structure key holding the wrong type makes claims fail with a clear error, before
/// any write: no task is lost, and consuming resumes once the key is repaired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_type_structure_key_loses_nothing() {
    let url = url_with_prefix(&crate::redis::url());
    let prefix = url.rsplit("prefix=").next().unwrap().to_owned();
    let broker = conveyor::broker(&url).await.unwrap();
    let backend = Arc::new(MemoryBackend::new());
    let client = Client::new(broker.clone(), backend.clone());
    let leases = format!("{prefix}:{{{prefix}:broken}}:leases");
    let mut conn = redis::Client::open(crate::redis::url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    redis::cmd("SET").arg(&leases).arg("oops").query_async::<()>(&mut conn).await.unwrap();
    let rec = client.enqueue_message(message("fault:count", "broken")).await.unwrap();
    let stop = conveyor::CancellationToken::new();
    let req = conveyor::ReceiveRequest {
        queues: &["broken"],
        max: 10,
        wait: Duration::from_millis(100),
        lease: Duration::from_secs(30),
        stop: &stop,
    };
    let err = broker.receive(&req).await.unwrap_err();
    assert!(err.to_string().contains("holds a string, expected a hash"), "{err}");
    assert_eq!(broker.stats("broken").await.unwrap().pending, 1, "nothing removed by the failed claim");
    redis::cmd("DEL").arg(&leases).query_async::<()>(&mut conn).await.unwrap();
    let w = Running::start(
        Worker::builder(broker.clone(), backend.clone())
            .register_handler("fault:count", |_req: Request| async { ok() })
            .queue("broken", 1),
    );
    assert_eq!(client.wait(&rec.id, Duration::from_secs(10)).await.unwrap().state, TaskState::Completed);
    w.stop().await;
}
