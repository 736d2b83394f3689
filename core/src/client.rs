//! The [`Client`]: enqueues tasks and reads their state and results.

use std::future::IntoFuture;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::backend::LockResult;
use crate::backend::{ResultBackend, TaskRecord};
use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::handler::{BoxFuture, Task};
use crate::task::{TaskId, TaskMessage, TaskState, UniqueRelease};

/// The default payload limit: 256 KiB, SQS's limit, so a task that fits one broker fits all.
pub const DEFAULT_MAX_PAYLOAD: usize = 256 * 1024;

/// Enqueues tasks and reads their state and results. Cheap to clone.
///
/// ```
/// # use conveyor_core::{Client, TaskState};
/// # async fn demo(client: Client) -> conveyor_core::Result<()> {
/// # let (send_email, args) = ((), ());
/// // With a task defined by #[conveyor::task] (see the `conveyor` crate docs):
/// // let handle = client.enqueue(send_email, args).await?;
/// // let handle = client.task(send_email, args).queue("critical").process_in(Duration::from_secs(60)).await?;
/// // let result = handle.get(Duration::from_secs(5)).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    broker: Arc<dyn Broker>,
    backend: Arc<dyn ResultBackend>,
    max_payload: usize,
}

impl Client {
    /// A client publishing to `broker` and recording states in `backend`.
    pub fn new(broker: Arc<dyn Broker>, backend: Arc<dyn ResultBackend>) -> Self {
        Client { broker, backend, max_payload: DEFAULT_MAX_PAYLOAD }
    }

    /// Sets the payload limit in bytes (default [`DEFAULT_MAX_PAYLOAD`]). A larger task is
    /// refused with [`Error::PayloadTooLarge`] before anything is published.
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// The broker.
    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }

    /// The result backend.
    pub fn backend(&self) -> &Arc<dyn ResultBackend> {
        &self.backend
    }

    /// Enqueues `task` with `args` and the task's default options.
    pub async fn enqueue<T: Task>(&self, task: T, args: T::Args) -> Result<TaskHandle<T>> {
        self.task(task, args).send().await
    }

    /// Starts building a task with options; `.await` it (or call `.send()`) to enqueue.
    pub fn task<T: Task>(&self, _task: T, args: T::Args) -> TaskBuilder<'_, T> {
        let defaults = T::defaults();
        let opts = Options {
            queue: defaults.queue.to_owned(),
            max_retry: defaults.max_retry,
            timeout: defaults.timeout,
            ..Options::default()
        };
        TaskBuilder { client: self, args, opts, _t: PhantomData }
    }

    /// Enqueues a prepared envelope (untyped: for tools, bridges and other languages' tasks).
    ///
    /// Safe to retry with the same task id after any error: the retry either enqueues the
    /// task, or answers [`Error::DuplicateTask`], which means a task with this id is queued
    /// (or ran). [`Error::may_have_been_stored`] tells whether a failed call may have left the
    /// task with the broker (its answer was lost), so that the retry is worth making with the
    /// same id rather than a new one.
    pub async fn enqueue_message(&self, task: TaskMessage) -> Result<TaskRecord> {
        self.check(&task)?;
        let record = TaskRecord::enqueued(&task);
        // The record is written unconfirmed: if this enqueue fails or is abandoned before the
        // broker answers, it never blocks a retry, and lapses by itself. If the caller drops
        // this future, the record and the unique lock are left to lapse: removing them in the
        // background could remove those of a retry made meanwhile (same id, same lock holder).
        let mut guard = self.record_and_lock(&task, &record).await?;
        let published = self.broker.publish(&task).await;
        let (backend, lock) = guard.disarm();
        match published {
            Ok(()) => {
                confirm(&backend, &task.id).await;
                Ok(record)
            }
            Err(e @ Error::DuplicateTask { .. }) => {
                // The broker holds a live task with this id: an earlier enqueue of it reached
                // the broker, and its answer was lost. It is queued; say so.
                confirm(&backend, &task.id).await;
                Err(e)
            }
            Err(e) => {
                // Not published (or not known to be): the record and the lock must not claim
                // otherwise.
                forget(backend, task.id.clone(), lock).await;
                Err(e)
            }
        }
    }

    /// Creates the task's record (a duplicate id fails here, before any lock is touched), then
    /// takes its unique lock, if it has one.
    async fn record_and_lock<'a>(&self, task: &'a TaskMessage, record: &TaskRecord) -> Result<RecordGuard<'a>> {
        self.backend.create(record).await?;
        let mut guard = RecordGuard { backend: Some(self.backend.clone()), id: &task.id, lock: None };
        match self.lock_unique(task).await {
            Ok(lock) => {
                guard.lock = lock;
                Ok(guard)
            }
            Err(e) => {
                let (backend, _) = guard.disarm();
                let _ = backend.delete(&task.id).await;
                Err(e)
            }
        }
    }

    /// Takes the unique lock of a task that has a unique key; the lock's name, if taken.
    async fn lock_unique(&self, task: &TaskMessage) -> Result<Option<String>> {
        let Some(key) = &task.unique_key else { return Ok(None) };
        let ttl = task.unique_ttl.ok_or_else(|| Error::InvalidOption {
            option: "unique_key",
            reason: format!("unique key `{key}` needs a unique TTL (`.unique(ttl)`)"),
        })?;
        let name = unique_lock_name(key);
        match self.backend.try_lock(&name, task.id.as_str(), ttl).await? {
            LockResult::Acquired => Ok(Some(name)),
            LockResult::Held { holder } => Err(Error::DuplicateUnique { key: key.clone(), holder }),
        }
    }

    /// Enqueues many prepared envelopes with the broker's batch publish, and says task by task
    /// whether each was enqueued (a batch can fail part-way: only the failed ones need sending
    /// again, and their ids are free for it).
    ///
    /// Within a batch, the first of two copies of a task (the same id, or the same unique key)
    /// wins, always; the later copy gets [`Error::DuplicateTask`] or
    /// [`Error::DuplicateUnique`]. A large batch goes in rounds of [`BATCH_ROUND`] tasks, so
    /// that its memory and the backend's pipelines stay bounded.
    pub async fn enqueue_messages(&self, tasks: &[TaskMessage]) -> Vec<Result<()>> {
        let mut out = Vec::with_capacity(tasks.len());
        for round in tasks.chunks(BATCH_ROUND) {
            out.extend(self.enqueue_round(round).await);
        }
        out
    }

    async fn enqueue_round(&self, tasks: &[TaskMessage]) -> Vec<Result<()>> {
        // Copies within the round are refused before the backend is asked: their records and
        // locks would be written concurrently, and either could win.
        let mut ids = std::collections::HashSet::new();
        let mut keys = std::collections::HashMap::new();
        let copies: Vec<Option<Error>> = tasks
            .iter()
            .map(|t| {
                // An invalid task is refused as such, and does not shadow a valid copy.
                if let Err(e) = self.check(t) {
                    return Some(e);
                }
                if !ids.insert(&t.id) {
                    return Some(Error::DuplicateTask { id: t.id.to_string() });
                }
                let key = t.unique_key.as_ref()?;
                match keys.get(key) {
                    Some(holder) => Some(Error::DuplicateUnique { key: key.clone(), holder: format!("{holder}") }),
                    None => {
                        keys.insert(key, &t.id);
                        None
                    }
                }
            })
            .collect();
        // The records (and unique locks) of the whole round at once: a backend on the network
        // pipelines them, one round trip for the round rather than one per task.
        let prepared = futures_util::future::join_all(tasks.iter().zip(copies).map(|(t, copy)| async move {
            if let Some(e) = copy {
                return Err(e);
            }
            self.check(t)?;
            let mut guard = self.record_and_lock(t, &TaskRecord::enqueued(t)).await?;
            Ok::<_, Error>(guard.disarm().1)
        }))
        .await;
        let mut out: Vec<Result<()>> = Vec::with_capacity(tasks.len());
        let mut ready = Vec::with_capacity(tasks.len());
        for (i, p) in prepared.into_iter().enumerate() {
            match p {
                Ok(lock) => {
                    ready.push((i, lock));
                    out.push(Ok(()));
                }
                Err(e) => out.push(Err(e)),
            }
        }
        let subset: Vec<TaskMessage>;
        let batch = if ready.len() == tasks.len() {
            tasks
        } else {
            subset = ready.iter().map(|(i, _)| tasks[*i].clone()).collect();
            &subset
        };
        let mut published = self.broker.publish_many(batch).await.into_iter();
        let mut held = Vec::with_capacity(ready.len());
        for (i, lock) in ready {
            let r =
                published.next().unwrap_or_else(|| Err(Error::broker("the broker answered for fewer tasks than sent")));
            match &r {
                // Queued (by this call, or by an earlier one whose answer was lost).
                Ok(()) => held.push(&tasks[i].id),
                Err(Error::DuplicateTask { .. }) => held.push(&tasks[i].id),
                // Not published: neither its record nor its unique lock may claim otherwise.
                Err(_) => forget(self.backend.clone(), tasks[i].id.clone(), lock).await,
            }
            out[i] = r;
        }
        futures_util::future::join_all(held.into_iter().map(|id| confirm(&self.backend, id))).await;
        out
    }

    /// The current record of a task.
    pub async fn get(&self, id: &TaskId) -> Result<Option<TaskRecord>> {
        self.backend.get(id).await
    }

    /// Waits until the task is completed or archived (see [`ResultBackend::wait`]).
    pub async fn wait(&self, id: &TaskId, timeout: Duration) -> Result<TaskRecord> {
        self.backend.wait(id, timeout).await
    }

    pub(crate) fn check(&self, task: &TaskMessage) -> Result<()> {
        task.check_options()?;
        let size = task.encoded_len();
        if size > self.max_payload {
            return Err(Error::PayloadTooLarge { size, limit: self.max_payload });
        }
        Ok(())
    }
}

#[derive(Default)]
struct Options {
    queue: String,
    max_retry: u32,
    timeout: Option<Duration>,
    deadline: Option<SystemTime>,
    eta: Option<SystemTime>,
    id: Option<TaskId>,
    retention: Option<Duration>,
    priority: u8,
    headers: Vec<(String, String)>,
    unique: Option<Duration>,
    unique_key: Option<String>,
    unique_release: UniqueRelease,
}

/// A task being built with options. Enqueue it with `.await` or [`TaskBuilder::send`].
#[must_use = "a task is enqueued only when the builder is awaited"]
pub struct TaskBuilder<'a, T: Task> {
    client: &'a Client,
    args: T::Args,
    opts: Options,
    _t: PhantomData<T>,
}

impl<'a, T: Task> TaskBuilder<'a, T> {
    /// The queue (default: the task's, else `"default"`).
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.opts.queue = queue.into();
        self
    }
    /// Retries allowed after the first attempt (default: the task's, else 25).
    pub fn max_retry(mut self, n: u32) -> Self {
        self.opts.max_retry = n;
        self
    }
    /// Per-attempt timeout: the handler is cancelled and the attempt fails.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.opts.timeout = Some(d);
        self
    }
    /// The task must not start after `t`; a running attempt is cancelled at `t`. A task past
    /// its deadline is archived, never retried.
    pub fn deadline(mut self, t: SystemTime) -> Self {
        self.opts.deadline = Some(t);
        self
    }
    /// Run no earlier than `d` from now.
    pub fn process_in(mut self, d: Duration) -> Self {
        self.opts.eta = Some(SystemTime::now() + d);
        self
    }
    /// Run no earlier than `t`.
    pub fn process_at(mut self, t: SystemTime) -> Self {
        self.opts.eta = Some(t);
        self
    }
    /// Use this id instead of a random one: a second enqueue with the same id, while the first
    /// is known to the backend, is an [`Error::DuplicateTask`].
    pub fn task_id(mut self, id: impl Into<TaskId>) -> Self {
        self.opts.id = Some(id.into());
        self
    }
    /// Keep the result (or error) this long after the task finishes (default 24 h; zero keeps
    /// nothing).
    pub fn retention(mut self, d: Duration) -> Self {
        self.opts.retention = Some(d);
        self
    }
    /// Priority within the queue, 0 (default) to 9, higher first, where the broker supports it.
    pub fn priority(mut self, p: u8) -> Self {
        self.opts.priority = p;
        self
    }
    /// Makes the task unique for `ttl`: while its lock is held, enqueueing the same task (same
    /// name, queue and arguments, or the same [`unique_key`](Self::unique_key)) fails with
    /// [`Error::DuplicateUnique`] naming the task that holds it. The lock lives in the result
    /// backend and is released as [`unique_release`](Self::unique_release) says, or when `ttl`
    /// runs out (so a lock is never held forever, also if the task is lost).
    pub fn unique(mut self, ttl: Duration) -> Self {
        self.opts.unique = Some(ttl);
        self
    }
    /// Uses `key` instead of name + queue + arguments as the unique key (with [`unique`](Self::unique)).
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.opts.unique_key = Some(key.into());
        self
    }
    /// When the unique lock is released (default [`UniqueRelease::OnSuccess`]).
    pub fn unique_release(mut self, when: UniqueRelease) -> Self {
        self.opts.unique_release = when;
        self
    }
    /// Adds a string header (metadata carried with the task).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.opts.headers.push((name.into(), value.into()));
        self
    }

    /// Builds the envelope without enqueueing it.
    pub fn build(self) -> Result<TaskMessage> {
        let mut m = TaskMessage::with_args(T::NAME, &self.args)?;
        let o = self.opts;
        if let Some(id) = o.id {
            m.id = id;
        }
        m.queue = o.queue;
        m.max_retry = o.max_retry;
        m.timeout = o.timeout;
        m.deadline = o.deadline;
        m.eta = o.eta;
        m.retention = o.retention;
        m.priority = o.priority;
        m.headers.extend(o.headers);
        match (o.unique, o.unique_key) {
            (Some(ttl), key) => {
                m.unique_key = Some(key.unwrap_or_else(|| crate::task::unique_key_of(&m.name, &m.queue, &m.args)));
                m.unique_ttl = Some(ttl);
                m.unique_release = o.unique_release;
            }
            (None, Some(key)) => {
                return Err(Error::InvalidOption {
                    option: "unique_key",
                    reason: format!("unique key `{key}` given without `.unique(ttl)`"),
                });
            }
            (None, None) => {}
        }
        m.check_options()?;
        Ok(m)
    }

    /// Enqueues the task.
    pub async fn send(self) -> Result<TaskHandle<T>> {
        let client = self.client.clone();
        let msg = self.build()?;
        let record = client.enqueue_message(msg).await?;
        Ok(TaskHandle { id: record.id, state: record.state, queue: record.queue, client, _t: PhantomData })
    }
}

impl<'a, T: Task> IntoFuture for TaskBuilder<'a, T> {
    type Output = Result<TaskHandle<T>>;
    type IntoFuture = BoxFuture<Result<TaskHandle<T>>>;

    fn into_future(self) -> Self::IntoFuture {
        let client = self.client.clone();
        let built = self.build();
        Box::pin(async move {
            let record = client.enqueue_message(built?).await?;
            Ok(TaskHandle { id: record.id, state: record.state, queue: record.queue, client, _t: PhantomData })
        })
    }
}

/// A handle on an enqueued task: its id, and its state and typed result.
pub struct TaskHandle<T> {
    id: TaskId,
    state: TaskState,
    queue: String,
    client: Client,
    _t: PhantomData<fn() -> T>,
}

impl<T: Task> TaskHandle<T> {
    /// The task id.
    pub fn id(&self) -> &TaskId {
        &self.id
    }

    /// The state right after enqueueing (`pending` or `scheduled`).
    pub fn enqueued_state(&self) -> TaskState {
        self.state
    }

    /// The queue.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The task's current record.
    pub async fn status(&self) -> Result<TaskRecord> {
        self.client.get(&self.id).await?.ok_or_else(|| Error::NotFound { id: self.id.to_string() })
    }

    /// Waits up to `timeout` for the task to finish and returns its result.
    /// An archived task gives [`Error::TaskFailed`] with its last error.
    pub async fn get(&self, timeout: Duration) -> Result<T::Output>
    where
        T::Output: serde::de::DeserializeOwned,
    {
        let record = self.client.wait(&self.id, timeout).await?;
        record
            .result_as::<T::Output>()?
            .ok_or_else(|| Error::TaskFailed { id: self.id.to_string(), error: "completed without a result".into() })
    }
}

impl<T> std::fmt::Debug for TaskHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskHandle")
            .field("id", &self.id)
            .field("state", &self.state)
            .field("queue", &self.queue)
            .finish()
    }
}

/// How many tasks [`Client::enqueue_messages`] sends at once.
pub const BATCH_ROUND: usize = 1000;

/// A just-created record and its unique lock, until the publish answers. Dropped while armed
/// (the enqueue future was cancelled), it leaves both to lapse: the record was never confirmed,
/// so it blocks no retry.
struct RecordGuard<'a> {
    backend: Option<Arc<dyn ResultBackend>>,
    id: &'a TaskId,
    lock: Option<String>,
}

impl RecordGuard<'_> {
    fn disarm(&mut self) -> (Arc<dyn ResultBackend>, Option<String>) {
        (self.backend.take().expect("armed until disarmed"), self.lock.take())
    }
}

impl Drop for RecordGuard<'_> {
    fn drop(&mut self) {
        if self.backend.take().is_some() {
            // Cancelled: the unconfirmed record lapses by itself (and never blocks a retry with
            // the same id); the unique lock lapses with its TTL.
            tracing::debug!(task.id = %self.id, "enqueue cancelled before the broker answered");
        }
    }
}

/// Confirms the record of a task the broker holds. A failure is logged, not returned: the task
/// is queued all the same, and its record is confirmed when a worker runs it (or lapses first,
/// and is then written again by that worker).
async fn confirm(backend: &Arc<dyn ResultBackend>, id: &TaskId) {
    let mut pause = std::time::Duration::from_millis(50);
    for _ in 0..4 {
        match backend.confirm(id).await {
            Ok(()) => return,
            Err(e) if e.is_transient() => {
                tracing::debug!(task.id = %id, error = %e, "confirming the record failed; trying again");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(e) => {
                tracing::warn!(task.id = %id, error = %e, "the task is queued, but its record could not be confirmed");
                return;
            }
        }
    }
    tracing::warn!(task.id = %id, "the task is queued, but its record could not be confirmed; it lapses, and the worker writes it again");
}

/// Removes the record of a task that was not published, and releases its unique lock.
async fn forget(backend: Arc<dyn ResultBackend>, id: TaskId, lock: Option<String>) {
    let _ = backend.delete(&id).await;
    if let Some(name) = lock {
        let _ = backend.unlock(&name, id.as_str()).await;
    }
}

/// The backend lock name of a unique key.
pub(crate) fn unique_lock_name(key: &str) -> String {
    format!("unique:{key}")
}
