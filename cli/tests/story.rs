//! The operator's story, with the `conveyor` binary on Redis, RabbitMQ and SQS (with a Redis
//! result backend), against the real servers `scripts/test` starts (`CONVEYOR_TEST_REDIS_URL`,
//! `CONVEYOR_TEST_AMQP_URL`, `CONVEYOR_TEST_SQS_URL`): a task fails until archived,
//! `task ls --state archived` shows it with its error, `task run` runs it again and it
//! completes. Two `task run` of one archived task at once run it once. Bad usage exits 2, a
//! failed operation 1, naming what failed.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conveyor::{CancellationToken, Request, TaskResult, TaskState, Worker};

fn redis_url() -> String {
    let base = std::env::var("CONVEYOR_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6390".into());
    format!("{}/?prefix=cli{}&list_completed=true", base.trim_end_matches('/'), uuid::Uuid::new_v4().simple())
}

/// The broker and backend URLs of a story on `broker` (`redis`, `amqp` or `sqs`), in a
/// namespace of its own.
fn urls(broker: &str) -> Urls {
    let ns = format!("cli{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let backend = redis_url();
    let broker = match broker {
        "redis" => backend.clone(),
        "amqp" => {
            let base = std::env::var("CONVEYOR_TEST_AMQP_URL")
                .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5690/%2f".into());
            format!("{base}?prefix={ns}")
        }
        _ => {
            // The emulator takes any credentials; never look for EC2 instance ones.
            if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
                std::env::set_var("AWS_ACCESS_KEY_ID", "test");
                std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
            }
            std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
            let base = std::env::var("CONVEYOR_TEST_SQS_URL")
                .unwrap_or_else(|_| "sqs://?region=us-east-1&endpoint=http://127.0.0.1:4590".into());
            format!("{base}&prefix={ns}")
        }
    };
    Urls { broker, backend }
}

struct Urls {
    broker: String,
    backend: String,
}

impl Urls {
    async fn connect(&self) -> (Arc<dyn conveyor::Broker>, Arc<dyn conveyor::ResultBackend>) {
        (conveyor::broker(&self.broker).await.unwrap(), conveyor::backend(&self.backend).await.unwrap())
    }
}

fn conveyor(u: &Urls, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_conveyor"))
        .args(args)
        .env("CONVEYOR_BROKER", &u.broker)
        .env("CONVEYOR_BACKEND", &u.backend)
        .env("AWS_ACCESS_KEY_ID", std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "test".into()))
        .env("AWS_SECRET_ACCESS_KEY", std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "test".into()))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("the conveyor binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A worker whose `flaky` task fails on its first run and succeeds after; counts its runs.
fn worker(
    broker: Arc<dyn conveyor::Broker>,
    backend: Arc<dyn conveyor::ResultBackend>,
    runs: Arc<AtomicUsize>,
) -> Worker {
    let counted = runs.clone();
    Worker::builder(broker, backend)
        .register_handler("count", move |_req: Request| {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                TaskResult::Ok(serde_json::value::to_raw_value(&()).expect("unit encodes"))
            }
        })
        .register_handler("flaky", move |_req: Request| {
            let runs = runs.clone();
            async move {
                if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                    TaskResult::Err(conveyor::TaskError::msg("the mail server said no"))
                } else {
                    TaskResult::Ok(serde_json::value::to_raw_value(&"sent").expect("a string encodes"))
                }
            }
        })
        .queue("mail", 1)
        .build()
        .expect("a worker")
}

/// Enqueues `flaky` with no retries (through the CLI), runs a worker until it is archived,
/// and returns its id.
async fn archived_flaky(url: &Urls, runs: &Arc<AtomicUsize>) -> String {
    let args = ["enqueue", "flaky", "--queue", "mail", "--args", "{\"to\":\"a@b.c\"}", "--max-retry", "0", "--json"];
    let o = conveyor(url, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    let id = v["id"].as_str().expect("an id").to_owned();
    let (broker, backend) = url.connect().await;
    let stop = CancellationToken::new();
    let running = tokio::spawn(worker(broker, backend.clone(), runs.clone()).run_until(stop.clone()));
    completed_or_archived(&backend, &id, TaskState::Archived).await;
    stop.cancel();
    running.await.unwrap().unwrap();
    id
}

async fn completed_or_archived(backend: &Arc<dyn conveyor::ResultBackend>, id: &str, state: TaskState) {
    let id = id.into();
    for _ in 0..500 {
        if backend.get(&id).await.unwrap().is_some_and(|r| r.state == state) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for task {id} to be {state}");
}

macro_rules! on_every_broker {
    ($($story:ident),*) => {
        mod redis {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $story() { super::$story(super::urls("redis")).await })*
        }
        mod amqp {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $story() { super::$story(super::urls("amqp")).await })*
        }
        mod sqs {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $story() { super::$story(super::urls("sqs")).await })*
        }
    };
}

on_every_broker!(
    operator_story_fail_list_run_complete,
    two_operators_run_an_archived_task_once,
    pause_reaches_a_worker_in_another_process
);

/// `conveyor queue pause` (a process of its own) stops a running worker taking the queue's
/// tasks within about a second, on every broker; `conveyor workers` lists the worker.
async fn pause_reaches_a_worker_in_another_process(url: Urls) {
    let runs = Arc::new(AtomicUsize::new(0));
    let (broker, backend) = url.connect().await;
    let stop = CancellationToken::new();
    let running = tokio::spawn(worker(broker, backend, runs.clone()).run_until(stop.clone()));
    let o = conveyor(&url, &["enqueue", "count", "--queue", "mail"]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_until("the first task ran", || runs.load(Ordering::SeqCst) == 1).await;

    let o = conveyor(&url, &["workers", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v[0]["pid"].as_u64(), Some(u64::from(std::process::id())), "{v}");
    assert_eq!(v[0]["queues"][0][0], "mail", "{v}");

    let o = conveyor(&url, &["queue", "pause", "mail"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The worker reads the flags every second; then a task enqueued waits.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let o = conveyor(&url, &["enqueue", "count", "--queue", "mail"]);
    assert!(o.status.success(), "{}", stderr(&o));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "no task runs while the queue is paused");
    let o = conveyor(&url, &["queue", "show", "mail", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    assert_eq!(v[0]["paused"], true, "{v}");

    let o = conveyor(&url, &["queue", "resume", "mail"]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_until("the task ran after the resume", || runs.load(Ordering::SeqCst) == 2).await;
    stop.cancel();
    running.await.unwrap().unwrap();
    let o = conveyor(&url, &["workers", "--json"]);
    assert_eq!(stdout(&o).trim(), "[]", "a stopped worker leaves the registry");
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn operator_story_fail_list_run_complete(url: Urls) {
    let runs = Arc::new(AtomicUsize::new(0));
    let id = archived_flaky(&url, &runs).await;

    let o = conveyor(&url, &["task", "ls", "--queue", "mail", "--state", "archived"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = stdout(&o);
    assert!(table.contains(&id) && table.contains("flaky"), "{table}");
    assert!(table.contains("the mail server said no"), "{table}");

    let o = conveyor(&url, &["stats"]);
    assert!(stdout(&o).contains("mail"), "{}", stdout(&o));

    let o = conveyor(&url, &["task", "run", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), format!("ran {id}"));

    let (broker, backend) = url.connect().await;
    let stop = CancellationToken::new();
    let running = tokio::spawn(worker(broker, backend.clone(), runs.clone()).run_until(stop.clone()));
    completed_or_archived(&backend, &id, TaskState::Completed).await;
    stop.cancel();
    running.await.unwrap().unwrap();
    let o = conveyor(&url, &["task", "show", &id, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    assert_eq!(v["record"]["state"], "completed", "{v}");
    assert_eq!(v["record"]["result"], "sent", "{v}");
    let outcomes: Vec<&str> =
        v["record"]["attempts"].as_array().unwrap().iter().map(|a| a["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["archived", "completed"], "the attempt history: {v}");
    assert_eq!(runs.load(Ordering::SeqCst), 2, "the failed run, then the rerun");
    let o = conveyor(&url, &["task", "ls", "--queue", "mail", "--state", "completed"]);
    assert!(o.status.success() && stdout(&o).contains(&id), "{} {}", stdout(&o), stderr(&o));
}

async fn two_operators_run_an_archived_task_once(url: Urls) {
    let runs = Arc::new(AtomicUsize::new(0));
    let id = archived_flaky(&url, &runs).await;
    let url = Arc::new(url);
    let (u1, u2, i1, i2) = (url.clone(), url.clone(), id.clone(), id.clone());
    let a = std::thread::spawn(move || conveyor(&u1, &["task", "run", &i1]));
    let b = std::thread::spawn(move || conveyor(&u2, &["task", "run", &i2]));
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    let oks = [&a, &b].iter().filter(|o| o.status.success()).count();
    assert_eq!(oks, 1, "{} / {}", stderr(&a), stderr(&b));
    let failed = if a.status.success() { &b } else { &a };
    assert_eq!(failed.status.code(), Some(1));
    assert!(stderr(failed).contains(&id), "{}", stderr(failed));
    let o = conveyor(&url, &["queue", "show", "mail", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    assert_eq!((v[0]["pending"].as_u64(), v[0]["archived"].as_u64()), (Some(1), Some(0)), "{v}");
}

#[test]
fn bad_usage_exits_2_and_failures_exit_1_naming_what() {
    let url = urls("redis");
    let o = conveyor(&url, &["task", "ls", "--queue", "mail", "--state", "sleeping"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown task state `sleeping`"), "{}", stderr(&o));
    let o = conveyor(&url, &["task", "show", "no-such-task"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no task with id `no-such-task`"), "{}", stderr(&o));
    let o = conveyor(&url, &["queue", "show", "nowhere"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no queue named `nowhere`"), "{}", stderr(&o));
    let o = Command::new(env!("CARGO_BIN_EXE_conveyor"))
        .args(["stats"])
        .env("CONVEYOR_BROKER", "redis://:S3cretPw@127.0.0.1:1/")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(!stderr(&o).contains("S3cretPw") && stderr(&o).contains("127.0.0.1:1"), "{}", stderr(&o));
    // The dashboard refuses to be reachable from other machines without authentication.
    let o = conveyor(&url, &["dashboard", "--listen", "0.0.0.0:0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("without authentication"), "{}", stderr(&o));
    let o = conveyor(&url, &["dashboard", "--listen", "0.0.0.0:0", "--token", "short"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("at least 16"), "{}", stderr(&o));
    let o = conveyor(&url, &["dashboard", "--basic", "nopassword"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("USER:PASSWORD"), "{}", stderr(&o));
    let o =
        Command::new(env!("CARGO_BIN_EXE_conveyor")).args(["stats"]).env_remove("CONVEYOR_BROKER").output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("CONVEYOR_BROKER"), "{}", stderr(&o));
}
