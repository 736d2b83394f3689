//! Short outages of the result backend while the worker settles tasks.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conveyor::backend::{LockResult, StateUpdate};
use conveyor::{async_trait, Error, Result, ResultBackend, TaskId, TaskMessage, TaskRecord};
use serde_json::value::RawValue;

use super::tasks::{log, probe, Probe};
use super::{Env, Running};

/// A result backend whose next `fail` writes of task states fail as if it were unreachable.
struct Blinking {
    inner: Arc<dyn ResultBackend>,
    fail: AtomicUsize,
}

#[async_trait]
impl ResultBackend for Blinking {
    fn kind(&self) -> &'static str {
        "blinking"
    }
    async fn create(&self, record: &TaskRecord) -> Result<()> {
        self.inner.create(record).await
    }
    async fn confirm(&self, id: &TaskId) -> Result<()> {
        self.inner.confirm(id).await
    }
    async fn update(&self, task: &TaskMessage, update: StateUpdate) -> Result<()> {
        if self.fail.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(Error::Backend("connection refused (a test outage)".into()));
        }
        self.inner.update(task, update).await
    }
    async fn get(&self, id: &TaskId) -> Result<Option<TaskRecord>> {
        self.inner.get(id).await
    }
    async fn delete(&self, id: &TaskId) -> Result<bool> {
        self.inner.delete(id).await
    }
    async fn try_lock(&self, key: &str, holder: &str, ttl: Duration) -> Result<LockResult> {
        self.inner.try_lock(key, holder, ttl).await
    }
    async fn unlock(&self, key: &str, holder: &str) -> Result<bool> {
        self.inner.unlock(key, holder).await
    }
    async fn incr(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        self.inner.incr(key, delta, ttl).await
    }
    async fn group_add(&self, group: &str, index: u32, value: &RawValue, ttl: Duration) -> Result<u32> {
        self.inner.group_add(group, index, value, ttl).await
    }
    async fn group_members(&self, group: &str) -> Result<Vec<(u32, Box<RawValue>)>> {
        self.inner.group_members(group).await
    }
    async fn list_push(&self, key: &str, value: &str, cap: usize, ttl: Duration) -> Result<()> {
        self.inner.list_push(key, value, cap, ttl).await
    }
    async fn list_recent(&self, key: &str, limit: usize) -> Result<Vec<String>> {
        self.inner.list_recent(key, limit).await
    }
}

/// The result backend unreachable for a moment as a task finishes (its first four writes
/// fail, about 0.75 s): the result is recorded once it is back, and the task runs once.
pub async fn result_recorded_after_a_backend_outage(env: Env) {
    let q = env.q("blink");
    let blinking = Arc::new(Blinking { inner: env.backend.clone(), fail: AtomicUsize::new(4) });
    let w = Running::start(env.worker_on(blinking.clone()).queue(&q, 1));
    let h = env.client().task(probe, Probe::new(&q)).queue(&q).await.unwrap();
    assert_eq!(h.get(Duration::from_secs(10)).await.unwrap(), 1);
    assert_eq!(blinking.fail.load(Ordering::SeqCst), 0, "the outage happened");
    w.stop().await;
    assert_eq!(log(&q).starts.len(), 1, "ran once");
}
