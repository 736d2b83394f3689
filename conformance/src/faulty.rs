//! Wrappers that inject faults into a broker or a result backend at chosen calls.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conveyor::backend::{LockResult, StateUpdate};
use conveyor::broker::{Delivery, RawPublish, Receipt, ReceiveRequest};
use conveyor::{
    async_trait, Broker, Error, QueueAdmin, QueueStats, Result, ResultBackend, TaskId, TaskMessage, TaskRecord,
};
use serde_json::value::RawValue;

/// A broker whose first `fail` publishes of tasks named `name` fail as if the connection
/// dropped: before the broker stored the task, or (`stored`) after, the answer lost. While
/// `cut` is set, its lease extensions fail, as if the worker could not reach it: its leases
/// run out, and the broker hands their tasks to another worker.
pub struct FaultyBroker {
    pub inner: Arc<dyn Broker>,
    pub name: String,
    pub fail: AtomicUsize,
    pub stored: bool,
    pub cut: Arc<AtomicBool>,
}

impl FaultyBroker {
    pub fn new(inner: Arc<dyn Broker>, name: &str, fail: usize, stored: bool) -> Arc<Self> {
        let cut = Arc::default();
        Arc::new(FaultyBroker { inner, name: name.to_owned(), fail: AtomicUsize::new(fail), stored, cut })
    }

    /// A broker cut off from its worker's lease extensions while `cut` is set.
    pub fn partitioned(inner: Arc<dyn Broker>, cut: Arc<AtomicBool>) -> Arc<Self> {
        Arc::new(FaultyBroker { inner, name: String::new(), fail: AtomicUsize::new(0), stored: false, cut })
    }

    /// Whether every planned failure happened.
    pub fn failed_all(&self) -> bool {
        self.fail.load(Ordering::SeqCst) == 0
    }
}

#[async_trait]
impl Broker for FaultyBroker {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    async fn publish(&self, task: &TaskMessage) -> Result<()> {
        if task.name == self.name
            && self.fail.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
        {
            if self.stored {
                self.inner.publish(task).await?;
            }
            return Err(Error::broker("connection reset by peer (a test fault)"));
        }
        self.inner.publish(task).await
    }
    async fn receive(&self, req: &ReceiveRequest<'_>) -> Result<Vec<Delivery>> {
        self.inner.receive(req).await
    }
    async fn ack(&self, d: &Delivery) -> Result<()> {
        self.inner.ack(d).await
    }
    async fn retry(&self, d: &Delivery, task: &TaskMessage, delay: Duration) -> Result<()> {
        self.inner.retry(d, task, delay).await
    }
    async fn archive(&self, d: &Delivery, reason: &str) -> Result<()> {
        self.inner.archive(d, reason).await
    }
    async fn release(&self, d: &Delivery) -> Result<()> {
        self.inner.release(d).await
    }
    async fn extend_leases(&self, receipts: &[Receipt], lease: Duration) -> Result<Vec<usize>> {
        if self.cut.load(Ordering::SeqCst) {
            return Err(Error::broker("connection refused (a test partition)"));
        }
        self.inner.extend_leases(receipts, lease).await
    }
    async fn stats(&self, queue: &str) -> Result<QueueStats> {
        self.inner.stats(queue).await
    }
    fn admin(&self) -> Option<&dyn QueueAdmin> {
        self.inner.admin()
    }
    fn raw(&self) -> Option<&dyn RawPublish> {
        self.inner.raw()
    }
}

/// A result backend whose clean-ups fail (`delete`, and `incr` by a negative amount), as when
/// it is out of reach just as an enqueue fails and tries to undo what it wrote.
pub struct NoCleanup(pub Arc<dyn ResultBackend>);

fn unreachable() -> Error {
    Error::backend("connection refused (a test fault)")
}

#[async_trait]
impl ResultBackend for NoCleanup {
    fn kind(&self) -> &'static str {
        self.0.kind()
    }
    async fn create(&self, record: &TaskRecord) -> Result<()> {
        self.0.create(record).await
    }
    async fn confirm(&self, id: &TaskId) -> Result<()> {
        self.0.confirm(id).await
    }
    async fn update(&self, task: &TaskMessage, update: StateUpdate) -> Result<()> {
        self.0.update(task, update).await
    }
    async fn get(&self, id: &TaskId) -> Result<Option<TaskRecord>> {
        self.0.get(id).await
    }
    async fn delete(&self, _: &TaskId) -> Result<bool> {
        Err(unreachable())
    }
    async fn try_lock(&self, key: &str, holder: &str, ttl: Duration) -> Result<LockResult> {
        self.0.try_lock(key, holder, ttl).await
    }
    async fn unlock(&self, key: &str, holder: &str) -> Result<bool> {
        self.0.unlock(key, holder).await
    }
    async fn incr(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        if delta < 0 {
            return Err(unreachable());
        }
        self.0.incr(key, delta, ttl).await
    }
    async fn group_add(&self, group: &str, index: u32, value: &RawValue, ttl: Duration) -> Result<u32> {
        self.0.group_add(group, index, value, ttl).await
    }
    async fn group_members(&self, group: &str) -> Result<Vec<(u32, Box<RawValue>)>> {
        self.0.group_members(group).await
    }
    async fn list_push(&self, key: &str, value: &str, cap: usize, ttl: Duration) -> Result<()> {
        self.0.list_push(key, value, cap, ttl).await
    }
    async fn list_recent(&self, key: &str, limit: usize) -> Result<Vec<String>> {
        self.0.list_recent(key, limit).await
    }
}
