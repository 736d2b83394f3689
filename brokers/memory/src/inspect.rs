//! The inspector's view of the memory broker: every operation under the broker's one lock, so
//! each is atomic.

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use conveyor_core::inspect::{check_action, rerun_envelope, BrokerInspect, Moved, Page, Rerun, TaskInfo};
use conveyor_core::{ArchivedTask, Error, Payload, Result, TaskId, TaskState};
use tokio::time::Instant;

use crate::queue::{Entry, Queue};
use crate::MemoryBroker;

fn info(queue: &str, state: TaskState, e: &Entry) -> TaskInfo {
    let id = e.id().cloned().unwrap_or_else(|| TaskId::from("?"));
    TaskInfo::new(id, queue, state, e.payload.clone())
}

fn archived_info(queue: &str, a: &ArchivedTask) -> TaskInfo {
    let id = match &a.payload {
        Payload::Task(t) => t.id.clone(),
        Payload::Undecodable { .. } => TaskId::from("?"),
    };
    let mut i = TaskInfo::new(id, queue, TaskState::Archived, a.payload.clone());
    i.reason = Some(a.reason.clone());
    i.archived_at = Some(a.archived_at);
    i
}

/// The wall-clock time of an instant.
fn wall(at: Instant) -> SystemTime {
    let now = Instant::now();
    if at >= now {
        SystemTime::now() + (at - now)
    } else {
        SystemTime::now() - (now - at)
    }
}

/// Every task of a queue in `state`, in listing order.
fn all(q: &Queue, state: TaskState) -> Vec<TaskInfo> {
    let name = &*q.name;
    match state {
        TaskState::Pending => q.ready.iter().rev().flatten().map(|e| info(name, state, e)).collect(),
        TaskState::Scheduled | TaskState::Retry => {
            let mut due: Vec<_> =
                q.scheduled.iter().filter(|s| s.entry.is_retry() == (state == TaskState::Retry)).collect();
            due.sort_by_key(|s| s.at);
            due.into_iter()
                .map(|s| {
                    let mut i = info(name, state, &s.entry);
                    i.next_run_at = Some(wall(s.at));
                    i
                })
                .collect()
        }
        TaskState::Active => q.active.values().map(|l| info(name, state, &l.entry)).collect(),
        TaskState::Archived => q.archive.iter().map(|a| archived_info(name, a)).collect(),
        TaskState::Completed => Vec::new(),
    }
}

/// Where task `id` is in `q`.
fn state_of(q: &Queue, id: &TaskId) -> Option<TaskState> {
    [TaskState::Pending, TaskState::Scheduled, TaskState::Retry, TaskState::Active, TaskState::Archived]
        .into_iter()
        .find(|s| all(q, *s).iter().any(|t| t.id == *id))
}

/// Takes task `id` out of `q` (not active), with its archive entry if it was archived.
fn take(q: &mut Queue, id: &TaskId) -> Option<(Entry, Option<ArchivedTask>)> {
    if let Some(e) = q.remove_ready(id).or_else(|| q.remove_scheduled(id)) {
        return Some((e, None));
    }
    let a = q.remove_archived(id)?;
    Some((Entry::new(a.payload.clone()), Some(a)))
}

impl MemoryBroker {
    /// Runs `f` on queue `queue` under the lock, then wakes receivers.
    fn with_queue<T>(&self, queue: &str, f: impl FnOnce(&mut Queue) -> Result<T>) -> Result<T> {
        let mut st = self.lock();
        let q = st.queues.get_mut(queue).ok_or_else(|| Error::UnknownQueue { queue: queue.to_owned() })?;
        q.maintain(Instant::now());
        let out = f(q);
        drop(st);
        self.inner.notify.notify_waiters();
        out
    }

    /// Checks `action` on task `id` of `q`, then takes it out.
    fn take_for(q: &mut Queue, id: &TaskId, action: &'static str) -> Result<(Entry, Option<ArchivedTask>)> {
        let state = state_of(q, id).ok_or_else(|| Error::NotFound { id: id.to_string() })?;
        check_action(id, state, action)?;
        take(q, id).ok_or_else(|| Error::NotFound { id: id.to_string() })
    }
}

/// Makes an entry taken out of the archive or a schedule ready to run.
fn to_ready(q: &mut Queue, mut e: Entry, archived: bool, rerun: Rerun) {
    if let (true, Payload::Task(t)) = (archived, &e.payload) {
        e.payload = Payload::Task(Arc::new(rerun_envelope(t.as_ref().clone(), rerun)));
    }
    q.push_ready(e, false);
}

#[async_trait]
impl BrokerInspect for MemoryBroker {
    async fn queues(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self.lock().queues.keys().map(|k| k.to_string()).collect();
        names.sort();
        Ok(names)
    }

    async fn list(&self, queue: &str, state: TaskState, page: Page) -> Result<Vec<TaskInfo>> {
        let mut st = self.lock();
        let Some(q) = st.queues.get_mut(queue) else { return Ok(Vec::new()) };
        q.maintain(Instant::now());
        Ok(all(q, state).into_iter().skip(page.offset).take(page.limit).collect())
    }

    async fn find(&self, queue: &str, id: &TaskId) -> Result<Option<TaskInfo>> {
        let mut st = self.lock();
        let Some(q) = st.queues.get_mut(queue) else { return Ok(None) };
        q.maintain(Instant::now());
        let Some(state) = state_of(q, id) else { return Ok(None) };
        Ok(all(q, state).into_iter().find(|t| t.id == *id))
    }

    async fn run_now(&self, queue: &str, id: &TaskId, rerun: Rerun) -> Result<()> {
        self.with_queue(queue, |q| {
            let (e, archived) = Self::take_for(q, id, "run")?;
            to_ready(q, e, archived.is_some(), rerun);
            Ok(())
        })
    }

    async fn archive_now(&self, queue: &str, id: &TaskId, reason: &str) -> Result<()> {
        let limit = self.inner.archive_limit;
        self.with_queue(queue, |q| {
            let (e, _) = Self::take_for(q, id, "archive")?;
            q.archive(e.payload, reason.to_owned(), limit);
            Ok(())
        })
    }

    async fn delete(&self, queue: &str, id: &TaskId) -> Result<()> {
        self.with_queue(queue, |q| Self::take_for(q, id, "delete").map(drop))
    }

    async fn run_all(&self, queue: &str, state: TaskState) -> Result<u64> {
        check_action(&TaskId::from("*"), state, "run")?;
        self.bulk(queue, state, |q, e, archived| to_ready(q, e, archived, Rerun::default()))
    }

    async fn archive_all(&self, queue: &str, state: TaskState, reason: &str) -> Result<Moved> {
        check_action(&TaskId::from("*"), state, "archive")?;
        let (limit, mut ids) = (self.inner.archive_limit, Vec::new());
        self.bulk(queue, state, |q, e, _| {
            ids.extend(e.id().cloned());
            q.archive(e.payload, reason.to_owned(), limit)
        })?;
        Ok(Moved::ids(ids))
    }

    async fn delete_all(&self, queue: &str, state: TaskState) -> Result<Moved> {
        check_action(&TaskId::from("*"), state, "delete")?;
        let mut ids = Vec::new();
        self.bulk(queue, state, |_, e, _| ids.extend(e.id().cloned()))?;
        Ok(Moved::ids(ids))
    }
}

impl MemoryBroker {
    /// Takes every task of `queue` in `state` out and hands each to `f`.
    fn bulk(&self, queue: &str, state: TaskState, mut f: impl FnMut(&mut Queue, Entry, bool)) -> Result<u64> {
        let mut st = self.lock();
        let Some(q) = st.queues.get_mut(queue) else { return Ok(0) };
        q.maintain(Instant::now());
        let taken: Vec<(Entry, bool)> = match state {
            TaskState::Pending => {
                let all: Vec<Entry> = q.ready.iter_mut().flat_map(std::mem::take).collect();
                q.ready_len = 0;
                all.into_iter().map(|e| (e, false)).collect()
            }
            TaskState::Scheduled | TaskState::Retry => {
                let retry = state == TaskState::Retry;
                let (hit, kept): (Vec<_>, Vec<_>) =
                    std::mem::take(&mut q.scheduled).into_iter().partition(|s| s.entry.is_retry() == retry);
                q.scheduled = kept.into_iter().collect();
                if retry {
                    q.retrying = 0;
                }
                hit.into_iter().map(|s| (s.entry, false)).collect()
            }
            TaskState::Archived => {
                std::mem::take(&mut q.archive).into_iter().map(|a| (Entry::new(a.payload), true)).collect()
            }
            TaskState::Active | TaskState::Completed => Vec::new(),
        };
        let n = taken.len() as u64;
        for (e, archived) in taken {
            f(q, e, archived);
        }
        drop(st);
        self.inner.notify.notify_waiters();
        Ok(n)
    }
}
