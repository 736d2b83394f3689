//! Client behaviour that does not depend on the broker.

use std::sync::Arc;
use std::time::Duration;

use conveyor::memory::MemoryBackend;
use conveyor::{
    async_trait, Broker, Client, Delivery, QueueStats, Receipt, ReceiveRequest, ResultBackend, TaskId, TaskMessage,
};

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
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(backend.get(&TaskId::from("order-7")).await.unwrap().is_none(), "the record must be removed");
}

#[tokio::test]
async fn bad_settings_are_typed_errors() {
    use conveyor::memory::MemoryBroker;
    use conveyor::{Error, Worker};
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let backend: Arc<dyn ResultBackend> = Arc::new(MemoryBackend::new());
    let cases: Vec<(conveyor::WorkerBuilder, &str)> = vec![
        (
            Worker::builder(broker.clone(), backend.clone()).queue("q", 1).concurrency(0),
            "concurrency must be at least 1",
        ),
        (Worker::builder(broker.clone(), backend.clone()), "worker has no queues"),
        (Worker::builder(broker.clone(), backend.clone()).queue("q", 0), "queue `q` needs a name and a weight"),
        (Worker::builder(broker.clone(), backend.clone()).queue("q", 1).lease(Duration::from_millis(10)), "too short"),
        (Worker::builder(broker.clone(), backend.clone()).queue("q", 1).batch(0), "batch must be 1 to 1000"),
    ];
    for (builder, expected) in cases {
        let err = builder.build().err().expect("must be refused");
        assert!(matches!(&err, Error::Config(m) if m.contains(expected)), "{err}");
    }
    let client = Client::new(broker.clone(), backend.clone());
    let mut m = TaskMessage::with_args("x", &1).unwrap();
    m.priority = 10;
    let err = client.enqueue_message(m).await.unwrap_err();
    assert!(matches!(&err, Error::Config(msg) if msg.contains("priority 10")), "{err}");
    let mut m = TaskMessage::with_args("x", &1).unwrap();
    m.queue = String::new();
    assert!(matches!(client.enqueue_message(m).await, Err(Error::Config(_))));
    assert_eq!(broker.stats("q").await.unwrap().pending, 0);
}
