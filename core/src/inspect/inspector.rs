//! The inspector: a broker and result backend pair, as operators and tools use them.

use std::sync::Arc;

use super::{check_action, BrokerInspect, Page, Rerun, TaskInfo};
use crate::backend::{ResultBackend, StateUpdate, TaskRecord};
use crate::broker::{Broker, QueueStats};
use crate::error::{Error, Result};
use crate::task::{check_queue_name, TaskId, TaskState};

/// The reason the archive gives for a task an operator archived.
pub const OPERATOR_ARCHIVED: &str = "archived by operator";

/// The reason the archive gives for a running task an operator cancelled.
pub const OPERATOR_CANCELLED: &str = "cancelled by operator";

/// How long [`Inspector::cancel`] waits for the worker running the task to take the cancel.
const CANCEL_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a record of a task an operator archived is kept.
const ARCHIVED_RETENTION: std::time::Duration = crate::backend::DEFAULT_RETENTION;

/// How many tasks of a state a name filter ([`Inspector::tasks_named`],
/// [`Inspector::completed_named`]) looks at, at most: a filter that matches few tasks of a
/// backlog of millions answers in bounded time, from the first of them.
pub const NAMED_SCAN: usize = 50_000;

/// The `page` of the items that `fetch` lists and `keep` keeps: fetched 500 at a time, among
/// the first [`NAMED_SCAN`].
async fn named<T, F, Fut>(fetch: F, keep: impl Fn(&T) -> bool, page: Page) -> Result<Vec<T>>
where
    F: Fn(Page) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>>>,
{
    const SCAN: usize = 500;
    let (mut out, mut skipped, mut offset) = (Vec::new(), 0, 0);
    while offset < NAMED_SCAN {
        let batch = fetch(Page::new(offset, SCAN)).await?;
        let n = batch.len();
        for t in batch.into_iter().filter(|t| keep(t)) {
            if skipped < page.offset {
                skipped += 1;
            } else if out.len() < page.limit {
                out.push(t);
            }
        }
        if n < SCAN || out.len() >= page.limit {
            return Ok(out);
        }
        offset += n;
    }
    Ok(out)
}

/// Everything known about one task: its record in the result backend and where its broker
/// holds it. At least one of the two is there.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TaskDetail {
    /// The task's id.
    pub id: TaskId,
    /// Its record (state, attempts, result or error), unless it expired or was never written.
    pub record: Option<TaskRecord>,
    /// The task as its broker holds it, unless the broker no longer does (completed, deleted).
    pub info: Option<TaskInfo>,
}

impl TaskDetail {
    /// The task's state: where the broker holds it, else what its record says.
    pub fn state(&self) -> TaskState {
        self.info.as_ref().map(|i| i.state).or(self.record.as_ref().map(|r| r.state)).unwrap_or(TaskState::Pending)
    }

    /// The task's queue.
    pub fn queue(&self) -> &str {
        self.info.as_ref().map(|i| i.queue.as_str()).or(self.record.as_ref().map(|r| r.queue.as_str())).unwrap_or("")
    }
}

/// Operations on a broker and result backend pair; see the [module docs](super). Cheap to
/// clone.
#[derive(Clone)]
pub struct Inspector {
    broker: Arc<dyn Broker>,
    backend: Arc<dyn ResultBackend>,
}

impl Inspector {
    /// The inspector of the application whose tasks `broker` holds and `backend` records.
    pub fn new(broker: Arc<dyn Broker>, backend: Arc<dyn ResultBackend>) -> Self {
        Inspector { broker, backend }
    }

    /// The broker.
    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }

    /// The result backend.
    pub fn backend(&self) -> &Arc<dyn ResultBackend> {
        &self.backend
    }

    fn cap(&self, operation: &'static str) -> Result<&dyn BrokerInspect> {
        self.broker.inspect().ok_or(Error::Unsupported { broker: self.broker.kind(), operation })
    }

    /// Every queue of the application, sorted by name.
    pub async fn queues(&self) -> Result<Vec<String>> {
        self.cap("list queues")?.queues().await
    }

    /// The counts of every queue, sorted by name (16 queues asked at a time).
    pub async fn stats(&self) -> Result<Vec<QueueStats>> {
        let queues = self.queues().await?;
        self.stats_of(&queues).await
    }

    /// The counts of `queues` (a page of [`queues`](Self::queues), say), in their order, 16
    /// asked at a time.
    pub async fn stats_of(&self, queues: &[String]) -> Result<Vec<QueueStats>> {
        use futures_util::StreamExt;
        let asked =
            futures_util::stream::iter(queues.iter().map(|q| self.broker.stats(q)).collect::<Vec<_>>()).buffered(16);
        let mut all: Vec<QueueStats> = asked.collect::<Vec<_>>().await.into_iter().collect::<Result<_>>()?;
        let done =
            futures_util::stream::iter(queues.iter().map(|q| self.backend.completed_count(q)).collect::<Vec<_>>());
        let done = done.buffered(16);
        let done: Vec<Result<u64>> = done.collect().await;
        let flags = self.pause_flags().await;
        for (s, done) in all.iter_mut().zip(done) {
            s.paused |= flags.contains(&s.queue);
            s.completed = done.ok();
        }
        Ok(all)
    }

    /// The counts of one queue; [`Error::UnknownQueue`] if the broker holds nothing for it.
    pub async fn queue(&self, queue: &str) -> Result<QueueStats> {
        self.known(queue).await?;
        let mut s = self.broker.stats(queue).await?;
        s.paused |= self.pause_flags().await.contains(queue);
        s.completed = self.backend.completed_count(queue).await.ok();
        Ok(s)
    }

    /// The queues an operator paused (empty if the backend keeps no operations state).
    async fn pause_flags(&self) -> std::collections::HashSet<String> {
        let flags = self.backend.map_all(super::workers::PAUSED_MAP).await.unwrap_or_default();
        flags.into_iter().map(|(q, _)| q).collect()
    }

    /// The queue's processed and failed counts per minute (24 h) and per day (90 days).
    pub async fn history(&self, queue: &str) -> Result<super::history::History> {
        check_queue_name(queue)?;
        super::history::history(self.backend.as_ref(), queue).await
    }

    /// The processed and failed counts of all queues together, per minute (24 h) and per day
    /// (90 days): one read, however many queues.
    pub async fn history_total(&self) -> Result<super::history::History> {
        super::history::history(self.backend.as_ref(), super::history::ALL_QUEUES).await
    }

    /// Every periodic entry of the application's schedulers, with its next and last fire.
    pub async fn cron(&self) -> Result<Vec<super::cron::CronEntry>> {
        super::cron::entries(self.backend.as_ref()).await
    }

    /// The newest `limit` fires of periodic entry `id`, newest first.
    pub async fn cron_history(&self, id: &str, limit: usize) -> Result<Vec<crate::scheduler::FireRecord>> {
        crate::scheduler::history(self.backend.as_ref(), id, limit).await
    }

    /// The worker processes running now, by start time; those that stopped beating are left
    /// out (and their entries removed).
    pub async fn workers(&self) -> Result<Vec<super::WorkerInfo>> {
        let mut out = Vec::new();
        for (id, json) in self.backend.map_all(super::workers::WORKERS_MAP).await? {
            match serde_json::from_str::<super::WorkerInfo>(&json) {
                Ok(w) if !w.is_gone() => out.push(w),
                _ => {
                    let _ = self.backend.map_remove(super::workers::WORKERS_MAP, &id).await;
                }
            }
        }
        out.sort_by_key(|w| w.started_at);
        Ok(out)
    }

    async fn known(&self, queue: &str) -> Result<()> {
        check_queue_name(queue)?;
        if self.queues().await?.iter().any(|q| q == queue) {
            Ok(())
        } else {
            Err(Error::UnknownQueue { queue: queue.to_owned() })
        }
    }

    /// Pauses `queue`: every worker of the application stops taking its tasks within about a
    /// second (enqueueing goes on). On brokers whose own pause is per process (RabbitMQ, SQS)
    /// the other processes follow a flag in the result backend (see [`super::workers`]).
    pub async fn pause(&self, queue: &str) -> Result<()> {
        check_queue_name(queue)?;
        let admin = self.broker.admin().ok_or(Error::Unsupported { broker: self.broker.kind(), operation: "pause" })?;
        admin.pause(queue).await?;
        let at = crate::time::to_millis(std::time::SystemTime::now()).to_string();
        match self.backend.map_set(super::workers::PAUSED_MAP, queue, &at).await {
            Ok(()) | Err(Error::Unsupported { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Undoes [`pause`](Self::pause).
    pub async fn resume(&self, queue: &str) -> Result<()> {
        check_queue_name(queue)?;
        match self.backend.map_remove(super::workers::PAUSED_MAP, queue).await {
            Ok(()) | Err(Error::Unsupported { .. }) => {}
            Err(e) => return Err(e),
        }
        let admin =
            self.broker.admin().ok_or(Error::Unsupported { broker: self.broker.kind(), operation: "resume" })?;
        admin.resume(queue).await
    }

    /// Tasks of `queue` in `state` (see [`BrokerInspect::list`]).
    pub async fn tasks(&self, queue: &str, state: TaskState, page: Page) -> Result<Vec<TaskInfo>> {
        check_queue_name(queue)?;
        if state == TaskState::Completed {
            // Not held by the broker: see `completed`.
            return Err(Error::Unsupported { broker: self.broker.kind(), operation: "list completed tasks" });
        }
        self.cap("list tasks")?.list(queue, state, page).await
    }

    /// The completed tasks of `queue` whose records are kept, newest first: their records
    /// (name, result, attempts; a completed task's arguments are not kept). Where the backend
    /// keeps no index of them, [`Error::Unsupported`].
    pub async fn completed(&self, queue: &str, page: Page) -> Result<Vec<TaskRecord>> {
        check_queue_name(queue)?;
        self.backend.completed(queue, page.offset, page.limit).await
    }

    /// Tasks of `queue` in `state` named `name`, paged among those; among the first
    /// [`NAMED_SCAN`] tasks of the state.
    pub async fn tasks_named(&self, queue: &str, state: TaskState, name: &str, page: Page) -> Result<Vec<TaskInfo>> {
        named(|p| self.tasks(queue, state, p), |t: &TaskInfo| t.name() == name, page).await
    }

    /// [`completed`](Self::completed) tasks named `name`, paged among those.
    pub async fn completed_named(&self, queue: &str, name: &str, page: Page) -> Result<Vec<TaskRecord>> {
        named(|p| self.completed(queue, p), |r: &TaskRecord| r.name == name, page).await
    }

    /// Everything known about task `id`; [`Error::NotFound`] if neither the backend nor the
    /// broker knows it.
    pub async fn task(&self, id: &TaskId) -> Result<TaskDetail> {
        let record = self.backend.get(id).await?;
        let info = match &record {
            Some(r) => self.cap("find a task")?.find(&r.queue, id).await?,
            None => self.search(id).await?,
        };
        if record.is_none() && info.is_none() {
            return Err(Error::NotFound { id: id.to_string() });
        }
        Ok(TaskDetail { id: id.clone(), record, info })
    }

    /// Looks for `id` in every queue (a task with no record), 16 queues at a time.
    async fn search(&self, id: &TaskId) -> Result<Option<TaskInfo>> {
        use futures_util::StreamExt;
        let cap = self.cap("find a task")?;
        let queues = cap.queues().await?;
        let finds = futures_util::stream::iter(queues.iter().map(|q| cap.find(q, id)).collect::<Vec<_>>()).buffered(16);
        futures_util::pin_mut!(finds);
        while let Some(found) = finds.next().await {
            if let Some(found) = found? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Where the broker holds `id`, checked against `action`.
    async fn locate(&self, id: &TaskId, action: &'static str) -> Result<(TaskDetail, TaskInfo)> {
        let detail = self.task(id).await?;
        let Some(info) = detail.info.clone() else {
            // Known only by its record: completed (or archived and since trimmed, or deleted).
            return Err(super::invalid_state(id, detail.state(), action));
        };
        check_action(id, info.state, action)?;
        Ok((detail, info))
    }

    /// Runs task `id` now: a scheduled, retry or archived task becomes pending; an archived one
    /// gets a fresh retry budget. Two operators running the same task at once run it once: the
    /// second gets [`Error::NotFound`] or [`Error::InvalidTaskState`].
    pub async fn run(&self, id: &TaskId) -> Result<()> {
        let (detail, info) = self.locate(id, "run").await?;
        let rerun = Rerun { retried_at_least: detail.record.as_ref().map_or(0, |r| r.retried) };
        self.cap("run a task")?.run_now(&info.queue, id, rerun).await?;
        if let Some(task) = info.task() {
            let retried = match info.state {
                TaskState::Archived => super::rerun_envelope(task.as_ref().clone(), rerun).retried,
                _ => task.retried,
            };
            // Best effort: the broker holds the truth; a worker's writes follow at once.
            let _ = self.backend.update(task, StateUpdate::to(TaskState::Pending, retried)).await;
        }
        Ok(())
    }

    /// Archives task `id` (pending, scheduled or retry) with the reason
    /// [`OPERATOR_ARCHIVED`].
    pub async fn archive(&self, id: &TaskId) -> Result<()> {
        let (_, info) = self.locate(id, "archive").await?;
        self.cap("archive a task")?.archive_now(&info.queue, id, OPERATOR_ARCHIVED).await?;
        if let Some(task) = info.task() {
            let update = StateUpdate::archived(task.retried, OPERATOR_ARCHIVED.to_owned(), ARCHIVED_RETENTION);
            let _ = self.backend.update(task, update).await;
        }
        Ok(())
    }

    /// Cancels running task `id`: the worker running it drops its handler where it stands (its
    /// cancellation fires at its next await) and archives it with the reason
    /// [`OPERATOR_CANCELLED`]. Workers look for cancels once a second; [`Error::Timeout`] if
    /// none took it within 5 s (the task finished meanwhile, or its worker keeps no operations
    /// state), and then the cancel is withdrawn.
    pub async fn cancel(&self, id: &TaskId) -> Result<()> {
        let detail = self.task(id).await?;
        check_action(id, detail.state(), "cancel")?;
        let map = super::workers::CANCEL_MAP;
        let at = crate::time::to_millis(std::time::SystemTime::now()).to_string();
        self.backend.map_set(map, id.as_str(), &at).await?;
        let deadline = tokio::time::Instant::now() + CANCEL_WAIT;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            if !self.backend.map_all(map).await?.iter().any(|(f, _)| f == id.as_str()) {
                return Ok(());
            }
        }
        let _ = self.backend.map_remove(map, id.as_str()).await;
        Err(Error::Timeout(CANCEL_WAIT))
    }

    /// Deletes task `id` (any state but active), and its record.
    pub async fn delete(&self, id: &TaskId) -> Result<()> {
        let detail = self.task(id).await?;
        let Some(info) = detail.info else {
            // Known only by its record: a completed task (or an archived one whose archive
            // entry was trimmed) has nothing left on the broker. Any other is on a broker that
            // cannot find it (RabbitMQ, SQS: a waiting task), which cannot delete it either.
            if !detail.state().is_terminal() {
                return Err(super::invalid_state(id, detail.state(), "delete"));
            }
            self.backend.delete(id).await?;
            return Ok(());
        };
        check_action(id, info.state, "delete")?;
        self.cap("delete a task")?.delete(&info.queue, id).await?;
        let _ = self.backend.delete(id).await;
        Ok(())
    }

    /// Runs every task of `queue` in `state` now; how many. Archived tasks go one by one
    /// through [`run`](Self::run), so that each record takes its new run's writes.
    pub async fn run_all(&self, queue: &str, state: TaskState) -> Result<u64> {
        check_queue_name(queue)?;
        check_action(&TaskId::from("*"), state, "run")?;
        if state != TaskState::Archived {
            return self.cap("run tasks")?.run_all(queue, state).await;
        }
        let mut n = 0;
        loop {
            let page = self.tasks(queue, state, Page::first(500)).await?;
            if page.is_empty() {
                return Ok(n);
            }
            let mut moved = 0;
            for t in page {
                match self.run(&t.id).await {
                    Ok(()) => moved += 1,
                    // Run, archived or deleted by someone else meanwhile.
                    Err(Error::NotFound { .. } | Error::InvalidTaskState { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            if moved == 0 {
                return Ok(n);
            }
            n += moved;
        }
    }

    /// Archives every task of `queue` in `state`; how many.
    pub async fn archive_all(&self, queue: &str, state: TaskState) -> Result<u64> {
        use futures_util::StreamExt;
        check_queue_name(queue)?;
        check_action(&TaskId::from("*"), state, "archive")?;
        let moved = self.cap("archive tasks")?.archive_all(queue, state, OPERATOR_ARCHIVED).await?;
        let records =
            futures_util::stream::iter(moved.ids.iter().map(|id| self.record_archived(id)).collect::<Vec<_>>());
        records.buffer_unordered(64).for_each(|_| async {}).await;
        Ok(moved.count)
    }

    /// Best effort: the record of task `id`, archived by an operator, says so (its waiters
    /// see it failed), unless it is gone or already finished.
    async fn record_archived(&self, id: &TaskId) {
        let Ok(Some(r)) = self.backend.get(id).await else { return };
        if r.state.is_terminal() {
            return;
        }
        // The record carries what the update writes; the arguments are not needed.
        let mut t = crate::task::TaskMessage::new(r.name, serde_json::value::RawValue::NULL.to_owned());
        (t.id, t.queue, t.retried, t.max_retry, t.created_at) = (r.id, r.queue, r.retried, r.max_retry, r.created_at);
        let update = StateUpdate::archived(t.retried, OPERATOR_ARCHIVED.to_owned(), ARCHIVED_RETENTION);
        let _ = self.backend.update(&t, update).await;
    }

    /// Deletes every task of `queue` in `state`, and their records; how many. (Where the
    /// broker purges without seeing the tasks, their records lapse with their retention.)
    pub async fn delete_all(&self, queue: &str, state: TaskState) -> Result<u64> {
        use futures_util::StreamExt;
        check_queue_name(queue)?;
        check_action(&TaskId::from("*"), state, "delete")?;
        let deleted = self.cap("delete tasks")?.delete_all(queue, state).await?;
        let records =
            futures_util::stream::iter(deleted.ids.iter().map(|id| self.backend.delete(id)).collect::<Vec<_>>())
                .buffer_unordered(64);
        records.for_each(|_| async {}).await;
        Ok(deleted.count)
    }
}
