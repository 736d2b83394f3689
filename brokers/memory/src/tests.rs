use std::time::Duration;

use conveyor_core::{Broker, ReceiveRequest, TaskMessage};

use super::MemoryBroker;

static STOP: std::sync::LazyLock<conveyor_core::CancellationToken> = std::sync::LazyLock::new(Default::default);

fn req<'a>(queues: &'a [&'a str], wait: Duration) -> ReceiveRequest<'a> {
    ReceiveRequest { queues, max: 10, wait, lease: Duration::from_secs(30), max_payload: usize::MAX, stop: &STOP }
}

fn task(queue: &str, priority: u8) -> TaskMessage {
    let mut t = TaskMessage::with_args("t", &priority).unwrap();
    t.queue = queue.into();
    t.priority = priority;
    t
}

#[tokio::test(start_paused = true)]
async fn delayed_task_is_never_early() {
    let b = MemoryBroker::new();
    let mut t = task("q", 0);
    t.eta = Some(std::time::SystemTime::now() + Duration::from_secs(60));
    b.publish(&t).await.unwrap();
    let start = tokio::time::Instant::now();
    assert!(b.receive(&req(&["q"], Duration::from_secs(59))).await.unwrap().is_empty());
    let got = b.receive(&req(&["q"], Duration::from_secs(5))).await.unwrap();
    assert_eq!(got.len(), 1);
    assert!(start.elapsed() >= Duration::from_secs(59), "{:?}", start.elapsed());
}

#[tokio::test]
async fn higher_priority_first_then_fifo() {
    let b = MemoryBroker::new();
    for p in [0, 5, 0, 9] {
        b.publish(&task("q", p)).await.unwrap();
    }
    let got = b.receive(&req(&["q"], Duration::ZERO)).await.unwrap();
    let prios: Vec<u8> = got.iter().map(|d| d.task().unwrap().priority).collect();
    assert_eq!(prios, [9, 5, 0, 0]);
}

#[tokio::test(start_paused = true)]
async fn expired_lease_redelivers_with_an_attempt_used_and_stale_ack_is_ignored() {
    let b = MemoryBroker::new();
    b.publish(&task("q", 0)).await.unwrap();
    let mut r = req(&["q"], Duration::ZERO);
    r.lease = Duration::from_secs(2);
    let first = b.receive(&r).await.unwrap().pop().unwrap();
    tokio::time::advance(Duration::from_secs(3)).await;
    let again = b.receive(&r).await.unwrap().pop().unwrap();
    assert!(again.redelivered);
    assert_eq!(again.lost_leases, 1);
    let err = b.ack(&first).await.unwrap_err(); // stale: must not remove the new delivery
    assert!(err.is_lease_lost(), "{err}");
    assert_eq!(b.stats("q").await.unwrap().active, 1);
    b.ack(&again).await.unwrap();
    assert_eq!(b.stats("q").await.unwrap().active, 0);
}

#[test]
fn urls() {
    assert!(MemoryBroker::from_url("memory://").unwrap().same_as(&MemoryBroker::from_url("memory:///").unwrap()));
    assert!(!MemoryBroker::from_url("memory://a").unwrap().same_as(&MemoryBroker::from_url("memory://b").unwrap()));
    let e = MemoryBroker::from_url("memory://a?x=1").err().unwrap();
    assert!(e.to_string().contains("takes only a name"), "{e}");
}
