//! The [`ResultBackend`] trait: task states, results and errors, locks and counters.
//!
//! The broker moves tasks; the backend remembers what happened to them. The client writes the
//! first record (`pending` or `scheduled`) when it enqueues, the worker moves it through the
//! [state machine](crate::TaskState), and the result or last error of a finished task is kept
//! for its retention period (default [`DEFAULT_RETENTION`]), then forgotten.
//!
//! Locks (with a TTL, released only by their holder) serve unique tasks and the scheduler;
//! atomic counters serve groups and chords.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::task::{TaskId, TaskMessage, TaskState};

/// How long a finished task's record (result or error) is kept when the task does not say.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// How long the record of an enqueue whose publish was not confirmed (it failed, or its
/// process died before the broker answered) lives: it never blocks a retry with the same task
/// id, and it lapses by itself. Far longer than any publish takes.
pub const UNCONFIRMED_TTL: Duration = Duration::from_secs(300);

/// What the backend knows about one task.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskRecord {
    /// Task id.
    pub id: TaskId,
    /// Task name.
    pub name: String,
    /// Queue.
    pub queue: String,
    /// Current state.
    pub state: TaskState,
    /// Failed attempts so far.
    pub retried: u32,
    /// Retries allowed.
    pub max_retry: u32,
    /// The result (JSON) once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Box<RawValue>>,
    /// The last error, once an attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the task was enqueued.
    #[serde(with = "crate::time::millis")]
    pub created_at: SystemTime,
    /// When the record last changed.
    #[serde(with = "crate::time::millis")]
    pub updated_at: SystemTime,
    /// The attempts that ended, oldest first: the newest [`ATTEMPTS_KEPT`] of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
}

/// How many attempts a task record keeps (the newest).
pub const ATTEMPTS_KEPT: u32 = 20;

/// One run of a task that ended: when it started and ended, how, and where it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Attempt {
    /// Which run: 0 for the first. A run whose worker died counts too, so numbers can skip
    /// (a dead worker writes nothing).
    pub number: u32,
    /// When its handler started.
    #[serde(with = "crate::time::millis")]
    pub started_at: SystemTime,
    /// When its handler returned.
    #[serde(with = "crate::time::millis")]
    pub ended_at: SystemTime,
    /// What followed: `completed`, `retry` (it failed and runs again) or `archived`.
    pub outcome: TaskState,
    /// Its error, if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The worker process that ran it (`host:pid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

impl Attempt {
    /// Attempt `number`, which ran from `started_at` until now and ended in `outcome`.
    pub fn ended(number: u32, started_at: SystemTime, outcome: TaskState, error: Option<String>) -> Self {
        Attempt { number, started_at, ended_at: SystemTime::now(), outcome, error, worker: None }
    }

    /// The same, run by `worker`.
    pub fn on(mut self, worker: impl Into<String>) -> Self {
        self.worker = Some(worker.into());
        self
    }

    /// How long its handler ran.
    pub fn duration(&self) -> Duration {
        self.ended_at.duration_since(self.started_at).unwrap_or_default()
    }
}

impl TaskRecord {
    /// The record of a task just enqueued: `scheduled` if it has a future `eta`, else `pending`.
    pub fn enqueued(task: &TaskMessage) -> Self {
        let now = SystemTime::now();
        let state = match task.eta {
            Some(eta) if eta > now => TaskState::Scheduled,
            _ => TaskState::Pending,
        };
        TaskRecord {
            id: task.id.clone(),
            name: task.name.clone(),
            queue: task.queue.clone(),
            state,
            retried: task.retried,
            max_retry: task.max_retry,
            result: None,
            error: None,
            created_at: task.created_at,
            updated_at: now,
            attempts: Vec::new(),
        }
    }

    /// The attempt this record was last written by (see [`StateUpdate::attempt`]).
    pub fn attempt(&self) -> u32 {
        attempt_of(self.state, self.retried)
    }

    /// Whether `update` may be written over this record: the fence that keeps a stale run (one
    /// whose lease was lost, while the task ran again elsewhere) from overwriting what a newer
    /// run wrote. Refused: anything but `completed` over `completed`, and any update from an
    /// earlier attempt than the record's. Every backend applies this rule atomically.
    pub fn accepts(&self, update: &StateUpdate) -> bool {
        if self.state == TaskState::Completed && update.state != TaskState::Completed {
            return false;
        }
        update.attempt() >= self.attempt()
    }

    /// Applies `update` to this record (whether it [`accepts`](Self::accepts) it is the
    /// caller's check).
    pub fn apply(&mut self, update: StateUpdate) {
        self.state = update.state;
        self.retried = update.retried;
        if update.error.is_some() {
            self.error = update.error;
        }
        if update.result.is_some() {
            self.result = update.result;
        }
        if let Some(a) = update.ran {
            self.attempts.retain(|x| x.number != a.number);
            let at = self.attempts.partition_point(|x| x.number < a.number);
            self.attempts.insert(at, a);
            let over = self.attempts.len().saturating_sub(ATTEMPTS_KEPT as usize);
            self.attempts.drain(..over);
        }
        self.updated_at = SystemTime::now();
    }

    /// Decodes the result into `T`; an archived task gives [`Error::TaskFailed`].
    pub fn result_as<T: serde::de::DeserializeOwned>(&self) -> Result<Option<T>> {
        match (self.state, &self.result) {
            (TaskState::Archived, _) => {
                Err(Error::TaskFailed { id: self.id.to_string(), error: self.error.clone().unwrap_or_default() })
            }
            (TaskState::Completed, Some(raw)) => serde_json::from_str(raw.get())
                .map(Some)
                .map_err(|source| Error::Decode { what: "task result", source }),
            _ => Ok(None),
        }
    }
}

/// A state transition the worker records.
#[derive(Debug)]
#[non_exhaustive]
pub struct StateUpdate {
    /// The new state.
    pub state: TaskState,
    /// Failed attempts so far.
    pub retried: u32,
    /// The error of the failed attempt, if any.
    pub error: Option<String>,
    /// The result, when completed.
    pub result: Option<Box<RawValue>>,
    /// For terminal states: how long to keep the record (zero: delete it now).
    pub retain: Option<Duration>,
    /// The attempt that ended with this update, for the record's [attempt
    /// history](TaskRecord::attempts).
    pub ran: Option<Attempt>,
}

/// The attempt (0 for the first run) that writes `state` with `retried` failed attempts: a
/// `retry` is written by the attempt that failed, one before the count it carries.
fn attempt_of(state: TaskState, retried: u32) -> u32 {
    match state {
        TaskState::Retry => retried.saturating_sub(1),
        _ => retried,
    }
}

impl StateUpdate {
    /// The attempt that writes this update (0 for the first run; a lost lease counts as an
    /// attempt, so the run that replaces a stale one has a higher number). Backends refuse an
    /// update from an earlier attempt than the record's (see [`TaskRecord::accepts`]).
    pub fn attempt(&self) -> u32 {
        attempt_of(self.state, self.retried)
    }

    /// A non-terminal transition.
    pub fn to(state: TaskState, retried: u32) -> Self {
        StateUpdate { state, retried, error: None, result: None, retain: None, ran: None }
    }

    /// The same update, written by the end of attempt `ran`.
    pub fn after(mut self, ran: Option<Attempt>) -> Self {
        self.ran = ran;
        self
    }

    /// Retrying after `error`.
    pub fn retry(retried: u32, error: String) -> Self {
        StateUpdate { error: Some(error), ..Self::to(TaskState::Retry, retried) }
    }

    /// Completed with `result`, kept for `retain`.
    pub fn completed(retried: u32, result: Box<RawValue>, retain: Duration) -> Self {
        StateUpdate { result: Some(result), retain: Some(retain), ..Self::to(TaskState::Completed, retried) }
    }

    /// Archived after `error`, kept for `retain`.
    pub fn archived(retried: u32, error: String, retain: Duration) -> Self {
        StateUpdate { error: Some(error), retain: Some(retain), ..Self::to(TaskState::Archived, retried) }
    }
}

/// The outcome of [`ResultBackend::try_lock`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockResult {
    /// The caller holds the lock now.
    Acquired,
    /// Someone else holds it.
    Held {
        /// The holder's token (for unique tasks: the holding task's id).
        holder: String,
    },
}

/// Stores task states and results, locks and counters.
///
/// Implementations are used as `Arc<dyn ResultBackend>`.
#[async_trait]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a Conveyor result backend",
    note = "implement `conveyor::ResultBackend` for it (see the memory backend for a complete example)"
)]
pub trait ResultBackend: Send + Sync + 'static {
    /// A short name for logs: `"memory"`, `"redis"`.
    fn kind(&self) -> &'static str;

    /// Where this backend keeps its records, for the worker's start line: server, namespace,
    /// with any password redacted. The default is [`kind`](Self::kind).
    fn describe(&self) -> String {
        self.kind().to_owned()
    }

    /// Records a task being enqueued, before it is published: *unconfirmed* until
    /// [`confirm`](Self::confirm) (the broker holds it) or the first
    /// [`update`](Self::update) (a worker runs it), it lapses after [`UNCONFIRMED_TTL`].
    ///
    /// Fails with [`Error::DuplicateTask`] if a confirmed record with this id exists. An
    /// unconfirmed one (of an enqueue that failed, or whose outcome is unknown) is replaced, so
    /// that retrying an enqueue with the same id is never blocked by a task that is not queued.
    async fn create(&self, record: &TaskRecord) -> Result<()>;

    /// The broker holds the task `id` whose record [`create`](Self::create) wrote: the record
    /// is confirmed and no longer lapses. Nothing happens to a record already confirmed or
    /// updated, or gone.
    async fn confirm(&self, id: &TaskId) -> Result<()>;

    /// Records a state transition of `task`, creating the record if it is missing (a task
    /// published by other means), and confirming it if it is not (the task was queued, since
    /// a worker runs it). A terminal update with `retain` of zero deletes the record.
    ///
    /// Fenced, as one atomic step: an update the record does not
    /// [`accept`](TaskRecord::accepts) (a stale run's, over a newer attempt's or a completed
    /// record) is dropped, and the call still succeeds.
    async fn update(&self, task: &TaskMessage, update: StateUpdate) -> Result<()>;

    /// The record of `id`, if there is one.
    async fn get(&self, id: &TaskId) -> Result<Option<TaskRecord>>;

    /// Deletes the record of `id`; true if there was one.
    async fn delete(&self, id: &TaskId) -> Result<bool>;

    /// Waits until `id` is completed or archived and returns its record; [`Error::Timeout`]
    /// after `timeout`, [`Error::NotFound`] if there is no record.
    ///
    /// The default polls [`ResultBackend::get`] with a growing interval (5 ms to 250 ms);
    /// backends with notifications override it.
    async fn wait(&self, id: &TaskId, timeout: Duration) -> Result<TaskRecord> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut interval = Duration::from_millis(5);
        loop {
            match self.get(id).await? {
                None => return Err(Error::NotFound { id: id.to_string() }),
                Some(r) if r.state.is_terminal() => return Ok(r),
                Some(_) => {}
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(Error::Timeout(timeout));
            }
            tokio::time::sleep(interval.min(deadline - now)).await;
            interval = (interval * 2).min(Duration::from_millis(250));
        }
    }

    /// Takes the lock `key` for `holder` for `ttl`, unless someone else holds it.
    /// Taking a lock one already holds renews it.
    async fn try_lock(&self, key: &str, holder: &str, ttl: Duration) -> Result<LockResult>;

    /// Releases `key` if `holder` holds it; true if it did.
    async fn unlock(&self, key: &str, holder: &str) -> Result<bool>;

    /// Adds `delta` to the counter `key` (created at 0) and returns the new value. A `ttl`
    /// (re)sets the counter's expiry.
    async fn incr(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64>;

    /// Stores `value` as member `index` of `group` unless that index already holds a value
    /// (first write wins), and returns how many distinct members the group holds now, as one
    /// atomic step. Storing an index twice (a redelivered member) neither counts twice nor
    /// changes its value; of the members that complete a group at the same instant, exactly one
    /// sees the full count. `ttl` (re)sets the group's expiry. Redis: `HSETNX` + `HLEN` in one
    /// script.
    async fn group_add(&self, group: &str, index: u32, value: &RawValue, ttl: Duration) -> Result<u32>;

    /// The members stored in `group`, as `(index, value)` sorted by index.
    async fn group_members(&self, group: &str) -> Result<Vec<(u32, Box<RawValue>)>>;

    /// Prepends `value` to the capped list `key`, keeping its newest `cap` items, and (re)sets
    /// the list's expiry to `ttl`, as one atomic step. The scheduler keeps each periodic
    /// entry's fire history here. Redis: `LPUSH` + `LTRIM` + `PEXPIRE` in a transaction.
    async fn list_push(&self, key: &str, value: &str, cap: usize, ttl: Duration) -> Result<()>;

    /// The newest `limit` items of the list `key`, newest first (empty if there is none).
    async fn list_recent(&self, key: &str, limit: usize) -> Result<Vec<String>>;

    /// The completed tasks of `queue` whose records are kept, newest first (by when their
    /// record lapses, which is completion order for tasks of one retention): `limit` of them
    /// after the first `offset`. Redis keeps an index per queue, written with the completed
    /// record in the same round trip. A backend that keeps none answers
    /// [`Error::Unsupported`](crate::Error::Unsupported).
    async fn completed(&self, queue: &str, offset: usize, limit: usize) -> Result<Vec<TaskRecord>> {
        let _ = (queue, offset, limit);
        Err(crate::Error::Unsupported { broker: "this result backend", operation: "list completed tasks" })
    }

    /// How many completed tasks of `queue` have their records kept (see
    /// [`completed`](Self::completed)); cheap (Redis: one `ZCOUNT`).
    async fn completed_count(&self, queue: &str) -> Result<u64> {
        let _ = queue;
        Err(crate::Error::Unsupported { broker: "this result backend", operation: "count completed tasks" })
    }

    /// Sets `field` of the small map `map` to `value`: state every process of the application
    /// shares for operations (the worker registry, pause flags). Redis: `HSET`. A backend that
    /// keeps no such state answers [`Error::Unsupported`](crate::Error::Unsupported), and the
    /// worker registry and cross-process pause are then off.
    async fn map_set(&self, map: &str, field: &str, value: &str) -> Result<()> {
        let _ = (map, field, value);
        Err(crate::Error::Unsupported { broker: "this result backend", operation: "keep operations state" })
    }

    /// Removes `field` of `map`.
    async fn map_remove(&self, map: &str, field: &str) -> Result<()> {
        let _ = (map, field);
        Err(crate::Error::Unsupported { broker: "this result backend", operation: "keep operations state" })
    }

    /// Adds `delta` to the integer in `field` of `map` (created at 0) and returns the new value.
    /// Redis: `HINCRBY`.
    async fn map_incr(&self, map: &str, field: &str, delta: i64) -> Result<i64> {
        let _ = (map, field, delta);
        Err(crate::Error::Unsupported { broker: "this result backend", operation: "keep operations state" })
    }

    /// Every field of `map` with its value (empty if there is none).
    async fn map_all(&self, map: &str) -> Result<Vec<(String, String)>> {
        let _ = map;
        Err(crate::Error::Unsupported { broker: "this result backend", operation: "keep operations state" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_history_keeps_the_newest_in_order() {
        let task = TaskMessage::new("t", serde_json::value::to_raw_value(&()).unwrap());
        let mut rec = TaskRecord::enqueued(&task);
        let at = SystemTime::now();
        for n in (0..ATTEMPTS_KEPT + 5).rev() {
            let a = Attempt::ended(n, at, TaskState::Retry, Some(format!("e{n}")));
            rec.apply(StateUpdate::retry(n + 1, format!("e{n}")).after(Some(a)));
        }
        // Written again (a redelivered attempt): replaced, not added.
        rec.apply(StateUpdate::to(TaskState::Active, 7).after(Some(Attempt::ended(7, at, TaskState::Retry, None))));
        let numbers: Vec<u32> = rec.attempts.iter().map(|a| a.number).collect();
        assert_eq!(numbers, (5..ATTEMPTS_KEPT + 5).collect::<Vec<_>>());
        assert_eq!(rec.attempts.iter().find(|a| a.number == 7).unwrap().error, None);
    }
}
