//! Operations: see what every queue holds, list and look up tasks, and act on them (run now,
//! archive, delete), on any broker that offers it, without writing code for it.
//!
//! Two layers, as for the rest of Conveyor:
//!
//! - [`BrokerInspect`], the capability a broker implements ([`Broker::inspect`]): what only the
//!   broker can see and do, queue by queue and task by task, each action one atomic step on the
//!   broker.
//! - [`Inspector`], what operators and tools (the `conveyor` CLI, the dashboard) use: a broker
//!   and result backend pair, which finds a task's queue from its record, keeps the record in
//!   step with each action, and filters and pages.
//!
//! ```
//! # async fn demo() -> conveyor_core::Result<()> {
//! use std::sync::Arc;
//! use conveyor_core::inspect::{Inspector, Page};
//! use conveyor_core::TaskState;
//! # let broker: Arc<dyn conveyor_core::Broker> = unimplemented!();
//! # let backend: Arc<dyn conveyor_core::ResultBackend> = unimplemented!();
//! let inspector = Inspector::new(broker, backend);
//! for q in inspector.stats().await? {
//!     println!("{}: {} pending, {} archived", q.queue, q.pending, q.archived);
//! }
//! for t in inspector.tasks("emails", TaskState::Archived, Page::first(20)).await? {
//!     println!("{} {:?}", t.id, t.reason);
//!     inspector.run(&t.id).await?; // back to pending, with a fresh retry budget
//! }
//! # Ok(()) }
//! ```
//!
//! [`Broker::inspect`]: crate::Broker::inspect

pub mod cron;
pub mod history;
mod inspector;
pub mod workers;

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

use crate::broker::Payload;
use crate::error::{Error, Result};
use crate::task::{TaskId, TaskMessage, TaskState};

pub use inspector::{Inspector, TaskDetail, NAMED_SCAN, OPERATOR_ARCHIVED, OPERATOR_CANCELLED};
pub use workers::WorkerInfo;

/// Which tasks of a list: `limit` tasks after the first `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Tasks skipped.
    pub offset: usize,
    /// Tasks returned at most.
    pub limit: usize,
}

impl Page {
    /// The first `limit` tasks.
    pub fn first(limit: usize) -> Self {
        Page { offset: 0, limit }
    }

    /// `limit` tasks after the first `offset`.
    pub fn new(offset: usize, limit: usize) -> Self {
        Page { offset, limit }
    }
}

/// One task as its broker holds it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TaskInfo {
    /// The task's id (for an undecodable entry, the id the broker stored it under).
    pub id: TaskId,
    /// Its queue.
    pub queue: String,
    /// Where it is: pending, scheduled, retry, active or archived.
    pub state: TaskState,
    /// The task, or the bytes that did not decode.
    pub payload: Payload,
    /// When it runs next (scheduled and retry tasks).
    pub next_run_at: Option<SystemTime>,
    /// Why it was archived (archived tasks).
    pub reason: Option<String>,
    /// When it was archived (archived tasks).
    pub archived_at: Option<SystemTime>,
}

impl TaskInfo {
    /// A task in `state`; the other fields empty.
    pub fn new(id: TaskId, queue: impl Into<String>, state: TaskState, payload: Payload) -> Self {
        TaskInfo { id, queue: queue.into(), state, payload, next_run_at: None, reason: None, archived_at: None }
    }

    /// The decoded task, if it decoded.
    pub fn task(&self) -> Option<&Arc<TaskMessage>> {
        match &self.payload {
            Payload::Task(t) => Some(t),
            Payload::Undecodable { .. } => None,
        }
    }

    /// The task's name (`?` if it did not decode).
    pub fn name(&self) -> &str {
        self.task().map_or("?", |t| t.name.as_str())
    }
}

/// What the inspector can ask a broker; see the [module docs](self).
///
/// Every action is one atomic step on the broker: a task is moved, never copied and then
/// removed, so it is never both re-run and left archived, and two operators acting on the same
/// task at once act once (the second gets [`Error::NotFound`] or [`Error::InvalidTaskState`]).
/// A broker that cannot do one of these returns [`Error::Unsupported`]; the capability table in
/// `docs/operations.md` lists them.
#[async_trait]
pub trait BrokerInspect: Send + Sync {
    /// Every queue the broker holds tasks (or an archive, or a pause flag) for, by name, sorted.
    async fn queues(&self) -> Result<Vec<String>>;

    /// Tasks of `queue` in `state` (pending, scheduled, retry, active or archived): pending in
    /// the order they run, scheduled and retry by due time, archived newest first.
    async fn list(&self, queue: &str, state: TaskState, page: Page) -> Result<Vec<TaskInfo>>;

    /// The task `id` of `queue`, where it is now; `None` if the broker does not hold it.
    async fn find(&self, queue: &str, id: &TaskId) -> Result<Option<TaskInfo>>;

    /// Moves a scheduled, retry or archived task to pending. An archived task's envelope is
    /// renewed with [`rerun_envelope`] first (a fresh retry budget), in the same atomic step.
    async fn run_now(&self, queue: &str, id: &TaskId, rerun: Rerun) -> Result<()>;

    /// Moves a pending, scheduled or retry task to the archive with `reason`.
    async fn archive_now(&self, queue: &str, id: &TaskId, reason: &str) -> Result<()>;

    /// Deletes a task in any state but active.
    async fn delete(&self, queue: &str, id: &TaskId) -> Result<()>;

    /// [`run_now`](Self::run_now) for every task of `queue` in `state`; how many moved.
    /// Archived tasks are renewed with `Rerun::default()`.
    async fn run_all(&self, queue: &str, state: TaskState) -> Result<u64>;

    /// [`archive_now`](Self::archive_now) for every task of `queue` in `state`: the ids of
    /// those archived (the inspector archives their records too).
    async fn archive_all(&self, queue: &str, state: TaskState, reason: &str) -> Result<Moved>;

    /// [`delete`](Self::delete) for every task of `queue` in `state`: the ids of those that
    /// went (`ids_known: false` with a count when the broker purged without seeing them).
    async fn delete_all(&self, queue: &str, state: TaskState) -> Result<Moved>;
}

/// What [`BrokerInspect::delete_all`] deleted, or [`BrokerInspect::archive_all`] archived.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Moved {
    /// How many tasks went.
    pub count: u64,
    /// Their ids, when the broker saw them (a purge does not): the inspector writes their
    /// records to match (deleted, or archived).
    pub ids: Vec<TaskId>,
}

impl Moved {
    /// Tasks moved by id.
    pub fn ids(ids: Vec<TaskId>) -> Self {
        Moved { count: ids.len() as u64, ids }
    }

    /// `count` tasks purged unseen.
    pub fn purged(count: u64) -> Self {
        Moved { count, ids: Vec::new() }
    }
}

/// The error for an action not valid in a task's state.
pub fn invalid_state(id: &TaskId, state: TaskState, action: &'static str) -> Error {
    Error::InvalidTaskState { id: id.to_string(), state, action }
}

/// Which states an action applies to: `run` (scheduled, retry, archived), `archive` (pending,
/// scheduled, retry), `delete` (all but active), `cancel` (active). `Err` names the task and its state.
pub fn check_action(id: &TaskId, state: TaskState, action: &'static str) -> Result<()> {
    use TaskState::*;
    let ok = match action {
        "run" => matches!(state, Scheduled | Retry | Archived),
        "archive" => matches!(state, Pending | Scheduled | Retry),
        "delete" => !matches!(state, Active),
        "cancel" => matches!(state, Active),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(invalid_state(id, state, action))
    }
}

/// How an archived task is renewed when it runs again (see [`rerun_envelope`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rerun {
    /// The failed attempts its record counts: the renewed envelope counts at least as many,
    /// so that the record (fenced by attempt, see
    /// [`TaskRecord::accepts`](crate::TaskRecord::accepts)) takes the new run's writes.
    pub retried_at_least: u32,
}

/// The header that keeps a task's own retry budget across reruns.
pub const RETRY_BUDGET_HEADER: &str = "conveyor-retry-budget";

/// An archived task's envelope for running again: due now, with a fresh retry budget. Attempts
/// keep counting up (the record is fenced by attempt, and its attempt history numbers them):
/// the archived attempt counts as failed, and the rerun is the next one. So the budget is
/// raised instead: `max_retry` becomes the attempts so far plus the task's own budget (its
/// first `max_retry`, kept in the [`RETRY_BUDGET_HEADER`] header).
pub fn rerun_envelope(mut task: TaskMessage, rerun: Rerun) -> TaskMessage {
    let budget = task.headers.get(RETRY_BUDGET_HEADER).and_then(|b| b.parse().ok()).unwrap_or(task.max_retry);
    task.headers.insert(RETRY_BUDGET_HEADER.to_owned(), budget.to_string());
    task.retried = task.retried.max(rerun.retried_at_least).saturating_add(1);
    task.max_retry = task.retried.saturating_add(budget);
    task.eta = None;
    task
}

/// [`BrokerInspect::run_all`] for archived tasks on a broker that renews envelopes one task at
/// a time: runs each task of a page of the archive with [`BrokerInspect::run_now`] until a page
/// moves none (the rest ran, were deleted by someone else, or do not decode).
pub async fn run_all_archived(b: &dyn BrokerInspect, queue: &str) -> Result<u64> {
    let mut n = 0;
    loop {
        let page = b.list(queue, TaskState::Archived, Page::first(500)).await?;
        let mut moved = 0;
        for t in page.iter().filter(|t| t.task().is_some()) {
            match b.run_now(queue, &t.id, Rerun::default()).await {
                Ok(()) => moved += 1,
                Err(Error::NotFound { .. } | Error::InvalidTaskState { .. } | Error::InvalidPayload(_)) => {}
                Err(e) => return Err(e),
            }
        }
        n += moved;
        if moved == 0 {
            return Ok(n);
        }
    }
}

/// The archive entries of a broker's [`QueueAdmin::archived`](crate::QueueAdmin::archived) as
/// the inspector lists them.
pub fn archived_infos(queue: &str, entries: Vec<crate::ArchivedTask>) -> Vec<TaskInfo> {
    entries
        .into_iter()
        .map(|a| {
            let id = match &a.payload {
                Payload::Task(t) => t.id.clone(),
                Payload::Undecodable { .. } => TaskId::from("?"),
            };
            let mut i = TaskInfo::new(id, queue, TaskState::Archived, a.payload);
            i.reason = Some(a.reason);
            i.archived_at = Some(a.archived_at);
            i
        })
        .collect()
}

/// The error for what a broker cannot do.
pub fn unsupported(broker: &'static str, operation: &'static str) -> Error {
    Error::Unsupported { broker, operation }
}
