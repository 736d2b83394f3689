//! The in-memory result backend of [Conveyor](https://crates.io/crates/conveyor).
//!
//! Task records, locks and counters live in this process, with their TTLs (on tokio's clock,
//! so paused-time tests work). `memory://` is the process-wide default instance and
//! `memory://NAME` a named one, as for the memory broker. Results are visible only to the
//! process that holds them: use a network backend when clients and workers are separate
//! processes.

mod records;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use conveyor_core::{Error, LockResult, Result, ResultBackend, StateUpdate, TaskId, TaskMessage, TaskRecord};
use serde_json::value::RawValue;
use tokio::time::Instant;

use records::Records;

/// The in-memory result backend. Cheap to clone (clones share state).
#[derive(Clone, Default)]
pub struct MemoryBackend {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    records: Records,
    locks: Mutex<Expiring<String>>,
    counters: Mutex<Expiring<i64>>,
    groups: Mutex<Expiring<BTreeMap<u32, Box<RawValue>>>>,
    lists: Mutex<Expiring<VecDeque<String>>>,
    maps: Mutex<std::collections::HashMap<String, BTreeMap<String, String>>>,
}

/// A map whose entries may expire; swept now and then so it cannot grow without bound.
struct Expiring<V> {
    map: HashMap<String, (V, Option<Instant>)>,
    ops: u32,
}

impl<V> Default for Expiring<V> {
    fn default() -> Self {
        Expiring { map: HashMap::new(), ops: 0 }
    }
}

impl<V> Expiring<V> {
    /// The live entry of `key`, dropping it if expired.
    fn live(&mut self, key: &str, now: Instant) -> Option<&mut (V, Option<Instant>)> {
        self.ops = self.ops.wrapping_add(1);
        if self.ops.is_multiple_of(1024) {
            self.map.retain(|_, (_, exp)| exp.is_none_or(|e| e > now));
        }
        if self.map.get(key).is_some_and(|(_, exp)| exp.is_some_and(|e| e <= now)) {
            self.map.remove(key);
        }
        self.map.get_mut(key)
    }
}

impl MemoryBackend {
    /// A new, unshared backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide backend called `name` (`""` is the default instance).
    pub fn named(name: &str) -> Self {
        static REGISTRY: OnceLock<Mutex<HashMap<String, MemoryBackend>>> = OnceLock::new();
        let mut map = REGISTRY.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
        map.entry(name.to_owned()).or_default().clone()
    }

    /// The backend a `memory://[NAME]` URL names.
    pub fn from_url(url: &str) -> Result<Self> {
        let bad = |reason: &str| Error::invalid_url(url, reason);
        let rest = url.strip_prefix("memory://").ok_or_else(|| bad("a memory URL starts with `memory://`"))?;
        let name = rest.strip_suffix('/').unwrap_or(rest);
        if name.contains(['/', '?', '#', '@', ':']) {
            return Err(bad("the memory backend takes only a name: `memory://` or `memory://NAME`"));
        }
        Ok(Self::named(name))
    }

    /// Number of task records held (expired ones may linger until swept).
    pub fn len(&self) -> usize {
        self.inner.records.len()
    }

    /// True when no task record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[async_trait]
impl ResultBackend for MemoryBackend {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn create(&self, record: &TaskRecord) -> Result<()> {
        self.inner.records.create(record)
    }

    async fn confirm(&self, id: &TaskId) -> Result<()> {
        self.inner.records.confirm(id);
        Ok(())
    }

    async fn update(&self, task: &TaskMessage, update: StateUpdate) -> Result<()> {
        self.inner.records.update(task, update);
        Ok(())
    }

    async fn get(&self, id: &TaskId) -> Result<Option<TaskRecord>> {
        Ok(self.inner.records.get(id))
    }

    async fn completed(&self, queue: &str, offset: usize, limit: usize) -> Result<Vec<TaskRecord>> {
        Ok(self.inner.records.completed(queue).into_iter().skip(offset).take(limit).collect())
    }

    async fn completed_count(&self, queue: &str) -> Result<u64> {
        Ok(self.inner.records.completed_count(queue) as u64)
    }

    async fn delete(&self, id: &TaskId) -> Result<bool> {
        Ok(self.inner.records.delete(id))
    }

    async fn wait(&self, id: &TaskId, timeout: Duration) -> Result<TaskRecord> {
        self.inner.records.wait(id, timeout).await
    }

    async fn try_lock(&self, key: &str, holder: &str, ttl: Duration) -> Result<LockResult> {
        let now = Instant::now();
        let mut locks = lock(&self.inner.locks);
        if let Some((h, exp)) = locks.live(key, now) {
            if h != holder {
                return Ok(LockResult::Held { holder: h.clone() });
            }
            *exp = Some(now + ttl);
            return Ok(LockResult::Acquired);
        }
        locks.map.insert(key.to_owned(), (holder.to_owned(), Some(now + ttl)));
        Ok(LockResult::Acquired)
    }

    async fn unlock(&self, key: &str, holder: &str) -> Result<bool> {
        let mut locks = lock(&self.inner.locks);
        let held = locks.live(key, Instant::now()).is_some_and(|(h, _)| h == holder);
        if held {
            locks.map.remove(key);
        }
        Ok(held)
    }

    async fn incr(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        let now = Instant::now();
        let mut counters = lock(&self.inner.counters);
        if counters.live(key, now).is_none() {
            counters.map.insert(key.to_owned(), (0, None));
        }
        let (v, exp) = counters.map.get_mut(key).expect("inserted above");
        *v += delta;
        if let Some(ttl) = ttl {
            *exp = Some(now + ttl);
        }
        Ok(*v)
    }

    async fn group_add(&self, group: &str, index: u32, value: &RawValue, ttl: Duration) -> Result<u32> {
        let now = Instant::now();
        let mut groups = lock(&self.inner.groups);
        if groups.live(group, now).is_none() {
            groups.map.insert(group.to_owned(), (BTreeMap::new(), None));
        }
        let (members, exp) = groups.map.get_mut(group).expect("inserted above");
        members.entry(index).or_insert_with(|| value.to_owned());
        *exp = now.checked_add(ttl);
        Ok(members.len() as u32)
    }

    async fn group_members(&self, group: &str) -> Result<Vec<(u32, Box<RawValue>)>> {
        let mut groups = lock(&self.inner.groups);
        Ok(groups
            .live(group, Instant::now())
            .map(|(members, _)| members.iter().map(|(i, v)| (*i, v.clone())).collect())
            .unwrap_or_default())
    }

    async fn list_push(&self, key: &str, value: &str, cap: usize, ttl: Duration) -> Result<()> {
        let now = Instant::now();
        let mut lists = lock(&self.inner.lists);
        if lists.live(key, now).is_none() {
            lists.map.insert(key.to_owned(), (VecDeque::new(), None));
        }
        let (items, exp) = lists.map.get_mut(key).expect("inserted above");
        items.push_front(value.to_owned());
        items.truncate(cap.max(1));
        *exp = now.checked_add(ttl);
        Ok(())
    }

    async fn list_recent(&self, key: &str, limit: usize) -> Result<Vec<String>> {
        let mut lists = lock(&self.inner.lists);
        Ok(lists
            .live(key, Instant::now())
            .map(|(items, _)| items.iter().take(limit).cloned().collect())
            .unwrap_or_default())
    }

    async fn map_set(&self, map: &str, field: &str, value: &str) -> Result<()> {
        let mut maps = self.inner.maps.lock().unwrap_or_else(|e| e.into_inner());
        maps.entry(map.to_owned()).or_default().insert(field.to_owned(), value.to_owned());
        Ok(())
    }

    async fn map_remove(&self, map: &str, field: &str) -> Result<()> {
        let mut maps = self.inner.maps.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = maps.get_mut(map) {
            m.remove(field);
        }
        Ok(())
    }

    async fn map_incr(&self, map: &str, field: &str, delta: i64) -> Result<i64> {
        let mut maps = self.inner.maps.lock().unwrap_or_else(|e| e.into_inner());
        let v = maps.entry(map.to_owned()).or_default().entry(field.to_owned()).or_insert_with(|| "0".to_owned());
        let n = v.parse::<i64>().unwrap_or(0).saturating_add(delta);
        *v = n.to_string();
        Ok(n)
    }

    async fn map_all(&self, map: &str) -> Result<Vec<(String, String)>> {
        let maps = self.inner.maps.lock().unwrap_or_else(|e| e.into_inner());
        Ok(maps.get(map).map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests;
