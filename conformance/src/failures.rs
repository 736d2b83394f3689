//! Failures: retries exhausted, skip-retry, timeouts, deadlines, and every kind of bad input.

use std::time::{Duration, SystemTime};

use conveyor::broker::Payload;
use conveyor::{Error, TaskMessage, TaskState, UnknownTask};

use super::tasks::{log, probe, Probe};
use super::{eventually, Env, Running};

const WAIT: Duration = Duration::from_secs(10);

/// Waits for `n` archived entries in `queue` and returns their reasons and payloads.
async fn archived(env: &Env, queue: &str, n: usize) -> Vec<(String, Payload)> {
    let admin = env.broker.admin().expect("the conformance suite needs QueueAdmin");
    eventually(WAIT, "tasks in the archive", || async {
        env.broker.stats(queue).await.unwrap().archived as usize >= n
    })
    .await;
    admin.archived(queue, 0, 100).await.unwrap().into_iter().map(|a| (a.reason, a.payload)).collect()
}

pub async fn archive_after_retries_with_reason(env: Env) {
    let q = env.q("exhaust");
    let client = env.client();
    let w = Running::start(env.worker().queue(&q, 1));
    let h = client.task(probe, Probe { fail_times: 99, ..Probe::new(&q) }).queue(&q).max_retry(2).await.unwrap();
    let err = h.get(WAIT).await.unwrap_err();
    assert!(matches!(&err, Error::TaskFailed { error, .. } if error.contains("probe failure on attempt 3")), "{err}");
    assert_eq!(log(&q).starts.len(), 3, "first attempt plus 2 retries");
    let rec = h.status().await.unwrap();
    assert_eq!((rec.state, rec.retried), (TaskState::Archived, 2));
    let a = archived(&env, &q, 1).await;
    assert!(a[0].0.contains("probe failure on attempt 3") && a[0].0.contains("retries exhausted"), "{}", a[0].0);
    assert!(matches!(&a[0].1, Payload::Task(t) if t.id == *h.id()));
    w.stop().await;
}

pub async fn skip_retry_archives_at_once(env: Env) {
    let q = env.q("skip");
    let client = env.client();
    let w = Running::start(env.worker().queue(&q, 1));
    let h = client.task(probe, Probe { fail_times: 1, skip_retry: true, ..Probe::new(&q) }).queue(&q).await.unwrap();
    assert!(h.get(WAIT).await.is_err());
    assert_eq!(log(&q).starts.len(), 1);
    assert_eq!(archived(&env, &q, 1).await[0].0, "probe failure on attempt 1");
    w.stop().await;
}

pub async fn timeout_fails_the_attempt(env: Env) {
    let q = env.q("timeout");
    let client = env.client();
    let w = Running::start(env.worker().queue(&q, 1));
    let p = Probe { sleep_first_ms: 30_000, ..Probe::new(&q) };
    let h = client.task(probe, p).queue(&q).timeout(Duration::from_millis(300)).max_retry(1).await.unwrap();
    // First attempt times out (and is cancelled), the retry succeeds.
    assert_eq!(h.get(WAIT).await.unwrap(), 2);
    let rec = h.status().await.unwrap();
    assert!(rec.error.as_deref().unwrap_or("").contains("timed out after 300ms"), "{rec:?}");
    let l = log(&q);
    assert_eq!(l.finished, 2, "the timed-out handler must have been dropped");
    w.stop().await;
}

pub async fn deadline_passed_archives_without_running(env: Env) {
    let q = env.q("deadline");
    let client = env.client();
    let h = client
        .task(probe, Probe::new(&q))
        .queue(&q)
        .deadline(SystemTime::now() + Duration::from_millis(200))
        .process_in(Duration::from_millis(400))
        .await
        .unwrap();
    let w = Running::start(env.worker().queue(&q, 1));
    let err = h.get(WAIT).await.unwrap_err();
    assert!(err.to_string().contains("deadline exceeded"), "{err}");
    assert!(log(&q).starts.is_empty(), "a task past its deadline must not run");
    assert!(archived(&env, &q, 1).await[0].0.contains("deadline exceeded"));
    w.stop().await;
}

fn message(name: &str, queue: &str, args: &impl serde::Serialize) -> TaskMessage {
    let mut m = TaskMessage::with_args(name, args).unwrap();
    m.queue = queue.to_owned();
    m
}

pub async fn unknown_task_is_archived(env: Env) {
    let q = env.q("unknown");
    let client = env.client();
    let w = Running::start(env.worker().queue(&q, 1));
    let rec = client.enqueue_message(message("no:such:task", &q, &1)).await.unwrap();
    let done = client.wait(&rec.id, WAIT).await.unwrap();
    assert_eq!(done.state, TaskState::Archived);
    assert_eq!(done.error.as_deref(), Some("no handler registered for task `no:such:task`"));
    assert_eq!(archived(&env, &q, 1).await[0].0, "no handler registered for task `no:such:task`");
    w.stop().await;
}

pub async fn unknown_task_can_be_requeued(env: Env) {
    let q = env.q("unknown-requeue");
    let client = env.client();
    let w = Running::start(env.worker().queue(&q, 1).unknown_task(UnknownTask::Requeue(Duration::from_secs(60))));
    let rec = client.enqueue_message(message("later:task", &q, &1)).await.unwrap();
    eventually(WAIT, "the unknown task put back as scheduled", || async {
        env.broker.stats(&q).await.unwrap().scheduled == 1
    })
    .await;
    let stats = env.broker.stats(&q).await.unwrap();
    assert_eq!((stats.archived, stats.active), (0, 0));
    assert_ne!(client.get(&rec.id).await.unwrap().unwrap().state, TaskState::Archived);
    w.stop().await;
}

/// A foreign producer (no client check) sends a task larger than the worker's limit: it is
/// archived unparsed, with the reason `payload too large`, and never run.
pub async fn oversized_delivery_is_archived_unparsed(env: Env) {
    let q = env.q("oversized");
    let mut big = TaskMessage::with_args("conformance:probe", &Probe::new(&q)).unwrap();
    big.queue = q.clone();
    big.headers.insert("padding".into(), "x".repeat(100 * 1024));
    let raw = env.broker.raw().expect("the conformance suite needs RawPublish");
    raw.publish_raw(&q, serde_json::to_vec(&big).unwrap()).await.unwrap();
    let w = Running::start(env.worker().queue(&q, 1).max_payload(64 * 1024));
    let a = archived(&env, &q, 1).await;
    // The archive keeps the message as the broker stored it, for an operator to inspect.
    assert!(a[0].0.starts_with("payload too large: 10"), "{}", a[0].0);
    w.stop().await;
    assert!(log(&q).starts.is_empty(), "never run");
}

pub async fn undecodable_payload_is_archived(env: Env) {
    let q = env.q("garbage");
    let raw = env.broker.raw().expect("the conformance suite needs RawPublish");
    raw.publish_raw(&q, b"\x00\x01 this is not a task".to_vec()).await.unwrap();
    raw.publish_raw(&q, br#"{"v":99,"id":"x","name":"n","queue":"q","created_at":0}"#.to_vec()).await.unwrap();
    let w = Running::start(env.worker().queue(&q, 1));
    let mut a = archived(&env, &q, 2).await;
    a.sort_by(|x, y| x.0.cmp(&y.0));
    assert!(a[0].0.starts_with("undecodable payload: cannot decode task payload"), "{}", a[0].0);
    assert!(a[1].0.contains("unsupported task wire format version 99"), "{}", a[1].0);
    assert!(matches!(&a[0].1, Payload::Undecodable { raw, .. } if raw.starts_with(b"\x00\x01")));
    // The worker goes on.
    let h = env.client().task(probe, Probe::new(&q)).queue(&q).await.unwrap();
    h.get(WAIT).await.unwrap();
    w.stop().await;
}

pub async fn bad_args_are_archived_not_retried(env: Env) {
    let q = env.q("bad-args");
    let client = env.client();
    let w = Running::start(env.worker().queue(&q, 1));
    let rec = client.enqueue_message(message("conformance:probe", &q, &"not a probe")).await.unwrap();
    let done = client.wait(&rec.id, WAIT).await.unwrap();
    assert_eq!((done.state, done.retried), (TaskState::Archived, 0));
    let reason = &archived(&env, &q, 1).await[0].0;
    assert!(reason.starts_with("arguments do not decode for `conformance:probe`"), "{reason}");
    w.stop().await;
}

pub async fn panic_is_a_failure_and_worker_goes_on(env: Env) {
    let q = env.q("panic");
    let client = env.client();
    let w = Running::start(env.worker().queue(&q, 1).concurrency(1));
    let h = client.task(probe, Probe { panic_times: 1, ..Probe::new(&q) }).queue(&q).await.unwrap();
    assert_eq!(h.get(WAIT).await.unwrap(), 2);
    let rec = h.status().await.unwrap();
    // The message, and where the panic happened.
    let error = rec.error.unwrap_or_default();
    assert!(
        error.starts_with("handler panicked: probe panic on attempt 1 at ") && error.contains("tasks.rs:"),
        "{error}"
    );
    let key2 = format!("{q}-after");
    let h2 = client.task(probe, Probe::new(&key2)).queue(&q).await.unwrap();
    assert_eq!(h2.get(WAIT).await.unwrap(), 1);
    w.stop().await;
}

/// An id whose earlier task was archived, and whose record has gone, can be enqueued again:
/// the new task runs (the broker must not drop it as a duplicate of the archived one).
pub async fn archived_id_can_be_enqueued_again(env: Env) {
    let q = env.q("reuse-id");
    let client = env.client();
    let w = Running::start(env.worker().queue(&q, 1));
    let id = format!("{q}-job");
    let first = Probe { fail_times: 1, skip_retry: true, ..Probe::new(&q) };
    let h = client.task(probe, first).queue(&q).task_id(id.as_str()).await.unwrap();
    assert!(h.get(WAIT).await.is_err());
    archived(&env, &q, 1).await;
    env.backend.delete(h.id()).await.unwrap(); // its record expired
    let again = client.task(probe, Probe::new(format!("{q}-2"))).queue(&q).task_id(id.as_str()).await.unwrap();
    assert_eq!(again.get(WAIT).await.unwrap(), 1);
    w.stop().await;
}
