//! Client behaviour that does not depend on the broker.

use std::sync::Arc;
use std::time::Duration;

use conveyor::broker::{Delivery, Receipt, ReceiveRequest};
use conveyor::memory::MemoryBackend;
use conveyor::{async_trait, Broker, Client, QueueStats, ResultBackend, TaskId, TaskMessage};

/// A broker whose publish never answers (a hung connection).
struct Hung;

#[async_trait]
impl Broker for Hung {
    fn kind(&self) -> &'static str {
        "hung"
    }
    async fn publish(&self, _: &TaskMessage) -> conveyor::Result<()> {
        std::future::pending().await
    }
    async fn receive(&self, _: &ReceiveRequest<'_>) -> conveyor::Result<Vec<Delivery>> {
        Ok(Vec::new())
    }
    async fn ack(&self, _: &Delivery) -> conveyor::Result<()> {
        Ok(())
    }
    async fn retry(&self, _: &Delivery, _: &TaskMessage, _: Duration) -> conveyor::Result<()> {
        Ok(())
    }
    async fn archive(&self, _: &Delivery, _: &str) -> conveyor::Result<()> {
        Ok(())
    }
    async fn release(&self, _: &Delivery) -> conveyor::Result<()> {
        Ok(())
    }
    async fn extend_leases(&self, _: &[Receipt], _: Duration) -> conveyor::Result<Vec<usize>> {
        Ok(Vec::new())
    }
    async fn stats(&self, _: &str) -> conveyor::Result<QueueStats> {
        Ok(QueueStats::default())
    }
}

#[tokio::test]
async fn cancelled_enqueue_does_not_block_the_task_id() {
    let backend = Arc::new(MemoryBackend::new());
    let client = Client::new(Arc::new(Hung), backend.clone());
    let mut m = TaskMessage::with_args("x", &1).unwrap();
    m.id = TaskId::from("order-7");
    // The caller gives up while the publish hangs.
    let r = tokio::time::timeout(Duration::from_millis(100), client.enqueue_message(m)).await;
    assert!(r.is_err(), "the publish should still be pending");
    // A retry with the same id (the broker working again) is not blocked by the record the
    // cancelled enqueue left: that one was never confirmed, and lapses by itself.
    let mut m = TaskMessage::with_args("x", &1).unwrap();
    m.id = TaskId::from("order-7");
    let working = Client::new(Arc::new(conveyor::memory::MemoryBroker::new()), backend.clone());
    working.enqueue_message(m).await.expect("the retry enqueues it");
}

#[tokio::test]
async fn bad_settings_are_typed_errors() {
    use conveyor::memory::MemoryBroker;
    use conveyor::{Error, Worker};
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let backend: Arc<dyn ResultBackend> = Arc::new(MemoryBackend::new());
    let w = || Worker::builder(broker.clone(), backend.clone());
    let cases: Vec<(conveyor::WorkerBuilder, &str, &str)> = vec![
        (w().queue("q", 1).concurrency(0), "concurrency", "concurrency must be at least 1"),
        (w().queue("q", 0), "queue", "queue `q` needs a weight"),
        (w().queue("q", 1).lease(Duration::from_millis(10)), "lease", "too short"),
        (w().queue("q", 1).lease(Duration::ZERO), "lease", "too short"),
        (w().queue("q", 1).batch(0), "batch", "batch must be 1 to 1000"),
    ];
    for (builder, option, expected) in cases {
        let err = builder.build().err().expect("must be refused");
        assert!(
            matches!(&err, Error::InvalidOption { option: o, reason } if *o == option && reason.contains(expected)),
            "{err}"
        );
    }
    let err = w().build().err().expect("no queues");
    assert!(matches!(&err, Error::Config(m) if m.contains("worker has no queues")), "{err}");

    let client = Client::new(broker.clone(), backend.clone());
    let refused = |f: fn(&mut TaskMessage), option: &'static str| {
        let client = client.clone();
        async move {
            let mut m = TaskMessage::with_args("x", &1).unwrap();
            f(&mut m);
            let err = client.enqueue_message(m).await.unwrap_err();
            assert!(matches!(&err, Error::InvalidOption { option: o, .. } if *o == option), "{option}: {err}");
        }
    };
    refused(|m| m.priority = 10, "priority").await;
    refused(|m| m.timeout = Some(Duration::ZERO), "timeout").await;
    refused(|m| m.max_retry = 10_001, "max_retry").await;
    refused(|m| m.id = "".into(), "task_id").await;
    assert_eq!(broker.stats("q").await.unwrap().pending, 0);
    assert_eq!(broker.stats("default").await.unwrap().pending, 0);
}

/// Names that two brokers' mappings could make share a queue (`a.b`, `a b` and `a_b` are one
/// SQS queue; `x-archive` is `x`'s archive on SQS, `x.archive` and `x.delay.N` on RabbitMQ)
/// are refused at enqueue and at worker build, naming the rule.
#[tokio::test]
async fn queue_names_that_could_alias_are_refused() {
    use conveyor::memory::MemoryBroker;
    use conveyor::{Error, Worker};
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let backend: Arc<dyn ResultBackend> = Arc::new(MemoryBackend::new());
    let client = Client::new(broker.clone(), backend.clone());
    let long = "q".repeat(65);
    for bad in ["a.b", "a b", "x-archive", "x-archive.fifo", "x.archive", "x.delay.400", "", ".fifo", "{x}", "é", &long]
    {
        let mut m = TaskMessage::with_args("x", &1).unwrap();
        m.queue = bad.to_owned();
        let err = client.enqueue_message(m).await.unwrap_err();
        assert!(matches!(&err, Error::InvalidQueueName { name, .. } if name == bad), "{bad:?}: {err}");
        let err = Worker::builder(broker.clone(), backend.clone()).queue(bad, 1).build().err().unwrap();
        assert!(matches!(&err, Error::InvalidQueueName { .. }), "{bad:?}: {err}");
    }
    for good in ["a_b", "a-b", "orders.fifo", "Q9", &"q".repeat(64)] {
        let mut m = TaskMessage::with_args("x", &1).unwrap();
        m.queue = good.to_owned();
        client.enqueue_message(m).await.unwrap_or_else(|e| panic!("{good:?}: {e}"));
    }
}

/// Within one batch the first of two copies wins, always (by id, and by unique key), and a
/// batch larger than a round is sent in rounds.
#[tokio::test]
async fn batch_copies_lose_to_the_first_and_big_batches_go_in_rounds() {
    use conveyor::memory::MemoryBroker;
    use conveyor::Error;
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let client = Client::new(broker.clone(), Arc::new(MemoryBackend::new()));
    let task = |id: &str, key: Option<&str>| {
        let mut m = TaskMessage::with_args("x", &id).unwrap();
        m.id = id.into();
        m.queue = "batch".into();
        if let Some(k) = key {
            m.unique_key = Some(k.into());
            m.unique_ttl = Some(Duration::from_secs(60));
        }
        m
    };
    for _ in 0..20 {
        let n = uuid::Uuid::new_v4().simple().to_string();
        let (a, b, c) = (format!("{n}-a"), format!("{n}-b"), format!("{n}-c"));
        let batch = [task(&a, None), task(&a, None), task(&b, Some(&n)), task(&c, Some(&n))];
        let r = client.enqueue_messages(&batch).await;
        assert!(r[0].is_ok() && r[2].is_ok(), "{r:?}");
        assert!(matches!(&r[1], Err(Error::DuplicateTask { id }) if *id == a), "{r:?}");
        assert!(matches!(&r[3], Err(Error::DuplicateUnique { holder, .. }) if *holder == b), "{r:?}");
    }
    // An invalid first copy does not shadow a valid second one.
    let (mut bad, good) = (task("shadow", None), task("shadow", None));
    bad.priority = 10;
    let r = client.enqueue_messages(&[bad, good]).await;
    assert!(matches!(&r[0], Err(Error::InvalidOption { .. })) && r[1].is_ok(), "{r:?}");
    let before = broker.stats("batch").await.unwrap().pending;
    let big: Vec<TaskMessage> = (0..conveyor::BATCH_ROUND * 2 + 500).map(|i| task(&format!("big-{i}"), None)).collect();
    assert!(client.enqueue_messages(&big).await.iter().all(|r| r.is_ok()));
    assert_eq!(broker.stats("batch").await.unwrap().pending - before, big.len() as u64);
}
