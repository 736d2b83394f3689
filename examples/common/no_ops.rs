//! A result backend that delegates everything but the operations maps (worker registry, pause
//! flags, cancels, history): with it, a worker runs no operations loop, so the benchmark can
//! measure what that loop costs (`bench --no-ops`).

use std::sync::Arc;
use std::time::Duration;

use conveyor::backend::{async_trait, LockResult, ResultBackend, StateUpdate};
use conveyor::{Result, TaskId, TaskMessage, TaskRecord};
use serde_json::value::RawValue;

/// `inner` without its operations maps (they answer `Unsupported`, the trait's default).
pub struct NoOps(pub Arc<dyn ResultBackend>);

#[async_trait]
impl ResultBackend for NoOps {
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
    async fn delete(&self, id: &TaskId) -> Result<bool> {
        self.0.delete(id).await
    }
    async fn wait(&self, id: &TaskId, timeout: Duration) -> Result<TaskRecord> {
        self.0.wait(id, timeout).await
    }
    async fn try_lock(&self, key: &str, holder: &str, ttl: Duration) -> Result<LockResult> {
        self.0.try_lock(key, holder, ttl).await
    }
    async fn unlock(&self, key: &str, holder: &str) -> Result<bool> {
        self.0.unlock(key, holder).await
    }
    async fn incr(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
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
