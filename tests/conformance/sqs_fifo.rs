//! FIFO queues on SQS lose nothing: each send has its own deduplication id (uniqueness is the
//! unique lock's job, not SQS's), a delay is not an attempt, and one waiting task never holds
//! up the others (a message group per task).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conveyor::memory::MemoryBackend;
use conveyor::{Broker, Client, Request, ResultBackend, TaskMessage, TaskResult, TaskState, UnknownTask, Worker};

use crate::suite::{eventually, Running};

const WAIT: Duration = Duration::from_secs(20);
const Q: &str = "jobs.fifo";

async fn setup() -> (Arc<dyn Broker>, Arc<dyn ResultBackend>, Client) {
    let url = format!("{}&prefix=ff{}", crate::sqs::url(), &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let broker = conveyor::broker(&url).await.expect("the SQS emulator (scripts/moto start)");
    let backend: Arc<dyn ResultBackend> = Arc::new(MemoryBackend::new());
    let client = Client::new(broker.clone(), backend.clone());
    (broker, backend, client)
}

fn message(name: &str) -> TaskMessage {
    let mut m = TaskMessage::with_args(name, &()).unwrap();
    m.queue = Q.into();
    m
}

/// A worker on the FIFO queue counting runs of `fifo:count`.
fn counting(broker: &Arc<dyn Broker>, backend: &Arc<dyn ResultBackend>, runs: &Arc<AtomicUsize>) -> Running {
    let runs = runs.clone();
    Running::start(
        Worker::builder(broker.clone(), backend.clone())
            .register_handler("fifo:count", move |_: Request| {
                let runs = runs.clone();
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    TaskResult::Ok(serde_json::value::to_raw_value(&()).unwrap())
                }
            })
            .queue(Q, 1)
            .lease(Duration::from_secs(5)),
    )
}

/// The unique key was the deduplication id: a second unique enqueue within SQS's 5 minutes,
/// after the first released its lock, was accepted and silently dropped.
#[tokio::test]
async fn unique_task_enqueued_again_after_its_lock_is_released_runs() {
    let (broker, backend, client) = setup().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let w = counting(&broker, &backend, &runs);
    for n in 1..=2 {
        let mut m = message("fifo:count");
        m.unique_key = Some("report-42".into());
        m.unique_ttl = Some(Duration::from_secs(60));
        let rec = client.enqueue_message(m).await.unwrap();
        assert_eq!(client.wait(&rec.id, WAIT).await.unwrap().state, TaskState::Completed, "run {n}");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    w.stop().await;
}

/// A task no handler knows, requeued twice: the second requeue reused the first one's
/// deduplication id, so SQS dropped it, and the original was deleted: the task was gone.
#[tokio::test]
async fn unknown_task_requeued_again_and_again_is_not_lost() {
    let (broker, backend, client) = setup().await;
    let rec = client.enqueue_message(message("fifo:count")).await.unwrap();
    let requeuer = Running::start(
        Worker::builder(broker.clone(), backend.clone())
            .register_handler("fifo:other", |_: Request| async {
                TaskResult::Ok(serde_json::value::to_raw_value(&()).unwrap())
            })
            .queue(Q, 1)
            .unknown_task(UnknownTask::Requeue(Duration::from_millis(100))),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    requeuer.stop().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let w = counting(&broker, &backend, &runs);
    assert_eq!(client.wait(&rec.id, WAIT).await.unwrap().state, TaskState::Completed);
    w.stop().await;
}

/// Raw sends (and archive moves) in one millisecond had one deduplication id: one was dropped.
#[tokio::test]
async fn raw_sends_in_one_millisecond_are_all_kept() {
    let (broker, backend, _) = setup().await;
    let raw = broker.raw().unwrap();
    let sends = (0..5).map(|i| raw.publish_raw(Q, format!("not a task {i}").into_bytes()));
    for r in futures_util::future::join_all(sends).await {
        r.unwrap();
    }
    let runs = Arc::new(AtomicUsize::new(0));
    let w = counting(&broker, &backend, &runs);
    eventually(WAIT, "five archived", || async { broker.stats(Q).await.unwrap().archived == 5 }).await;
    w.stop().await;
}

/// A delay waits by early receives on a FIFO queue: they were counted as lost leases, so a
/// delayed task with no retries was archived without running.
#[tokio::test]
async fn a_delay_is_not_an_attempt() {
    let (broker, backend, client) = setup().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let w = counting(&broker, &backend, &runs);
    let mut m = message("fifo:count");
    m.max_retry = 0;
    m.eta = Some(std::time::SystemTime::now() + Duration::from_secs(2));
    let rec = client.enqueue_message(m).await.unwrap();
    let done = client.wait(&rec.id, WAIT).await.unwrap();
    assert_eq!((done.state, done.retried), (TaskState::Completed, 0), "{:?}", done.error);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    w.stop().await;
}

/// The message group was the whole queue: one delayed message held up every task behind it.
#[tokio::test]
async fn a_delayed_task_does_not_hold_up_the_others() {
    let (broker, backend, client) = setup().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let w = counting(&broker, &backend, &runs);
    let mut later = message("fifo:count");
    later.eta = Some(std::time::SystemTime::now() + Duration::from_secs(8));
    client.enqueue_message(later).await.unwrap();
    let now = client.enqueue_message(message("fifo:count")).await.unwrap();
    let t = tokio::time::Instant::now();
    assert_eq!(client.wait(&now.id, WAIT).await.unwrap().state, TaskState::Completed);
    assert!(t.elapsed() < Duration::from_secs(6), "waited {:?} behind the delayed task", t.elapsed());
    w.stop().await;
}
