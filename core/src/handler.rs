//! What runs a task: the [`Task`] trait (implemented by `#[task]`), the type-erased
//! [`Handler`] that middleware wraps, and the [`TaskError`] a handler fails with.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use crate::data::DataMap;
use crate::error::BoxError;
use crate::task::{TaskId, TaskMessage};

/// A boxed, `Send`, `'static` future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a handler returns: the result as JSON, or why the attempt failed.
pub type TaskResult = Result<Box<RawValue>, TaskError>;

/// Why a task attempt failed, and what the worker should do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An ordinary failure: retried with the worker's retry policy while retries remain.
    Failed,
    /// Do not retry: archive now.
    SkipRetry,
    /// Retry after exactly this delay (still bounded by `max_retry`).
    RetryAfter(Duration),
    /// The handler panicked (retried like `Failed`).
    Panicked,
    /// The attempt ran past its timeout (retried like `Failed`).
    TimedOut,
    /// The task's deadline has passed: archived, never retried.
    DeadlineExceeded,
    /// The arguments did not decode into the handler's type: archived, never retried.
    BadArgs,
    /// No handler is registered for the task's name.
    UnknownTask,
    /// The handler stopped early because the worker is shutting down: the task is handed back
    /// without using an attempt.
    Interrupted,
}

/// The error of a failed task attempt.
///
/// Any `std::error::Error` converts into it with `?` (an ordinary, retried failure). To steer
/// the worker, return [`TaskError::skip_retry`] or [`TaskError::retry_after`].
///
/// ```
/// use conveyor_core::TaskError;
/// use std::time::Duration;
///
/// fn charge(card_ok: bool, rate_limited: bool) -> Result<(), TaskError> {
///     if !card_ok {
///         return Err(TaskError::skip_retry("card declined"));
///     }
///     if rate_limited {
///         return Err(TaskError::retry_after(Duration::from_secs(30), "rate limited"));
///     }
///     let _n: u32 = "42".parse()?; // any std error converts
///     Ok(())
/// }
/// assert!(charge(false, false).is_err());
/// ```
pub struct TaskError {
    kind: ErrorKind,
    message: String,
    source: Option<BoxError>,
}

impl TaskError {
    /// An ordinary failure from a boxed error, kept as the source: what a task function that
    /// returns `Result<_, Box<dyn Error + Send + Sync>>` fails with.
    pub fn from_boxed(e: BoxError) -> Self {
        TaskError { kind: ErrorKind::Failed, message: e.to_string(), source: Some(e) }
    }

    /// An ordinary failure with `message`.
    pub fn msg(message: impl fmt::Display) -> Self {
        TaskError { kind: ErrorKind::Failed, message: message.to_string(), source: None }
    }

    /// A failure that must not be retried: the task is archived with this message.
    pub fn skip_retry(message: impl fmt::Display) -> Self {
        TaskError { kind: ErrorKind::SkipRetry, ..Self::msg(message) }
    }

    /// A failure to retry after `delay` (instead of the retry policy's delay).
    pub fn retry_after(delay: Duration, message: impl fmt::Display) -> Self {
        TaskError { kind: ErrorKind::RetryAfter(delay), ..Self::msg(message) }
    }

    /// The handler stopped early because the worker is shutting down (see
    /// [`TaskContext::shutdown`]): the task is handed back, ready at once, without using an
    /// attempt.
    pub fn interrupted() -> Self {
        TaskError { kind: ErrorKind::Interrupted, ..Self::msg("interrupted by worker shutdown") }
    }

    /// An error of the given kind.
    pub fn with_kind(kind: ErrorKind, message: impl fmt::Display) -> Self {
        TaskError { kind, ..Self::msg(message) }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message (recorded as the task's last error).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The underlying error, when it came from a `std::error::Error`.
    pub fn source(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }

    /// True if the worker may retry after this error (retries permitting).
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self.kind,
            ErrorKind::SkipRetry | ErrorKind::DeadlineExceeded | ErrorKind::BadArgs | ErrorKind::UnknownTask
        )
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskError").field("kind", &self.kind).field("message", &self.message).finish()
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for TaskError {
    fn from(e: E) -> Self {
        TaskError { kind: ErrorKind::Failed, message: e.to_string(), source: Some(Box::new(e)) }
    }
}

/// Tells running handlers that the worker is shutting down. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<CancellationToken>);

impl Shutdown {
    /// A signal that fires when `token` is cancelled.
    pub fn new(token: CancellationToken) -> Self {
        Shutdown(Arc::new(token))
    }

    /// True once the worker has begun shutting down.
    pub fn is_shutting_down(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Resolves when the worker begins shutting down.
    pub async fn wait(&self) {
        self.0.cancelled().await
    }
}

/// What a handler knows about the task it runs.
#[derive(Debug, Clone)]
pub struct TaskContext {
    task: Arc<TaskMessage>,
    shutdown: Shutdown,
    data: DataMap,
}

impl TaskContext {
    /// The context of `task`; `shutdown` fires when the worker starts shutting down.
    pub fn new(task: Arc<TaskMessage>, shutdown: Shutdown) -> Self {
        TaskContext { task, shutdown, data: DataMap::default() }
    }

    /// The context of one attempt as the worker runs it: with the worker's data.
    pub fn of(req: Request) -> Self {
        TaskContext { task: req.task, shutdown: req.shutdown, data: req.data }
    }

    /// The value of type `T` registered on the worker with
    /// [`WorkerBuilder::data`](crate::WorkerBuilder::data), if any. (A task function can
    /// also take it as a [`Data<T>`](crate::Data) parameter.)
    pub fn data<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.data.get::<T>()
    }

    /// Every value registered on the worker.
    pub fn data_map(&self) -> &DataMap {
        &self.data
    }

    /// Task id.
    pub fn id(&self) -> &TaskId {
        &self.task.id
    }
    /// Task name.
    pub fn name(&self) -> &str {
        &self.task.name
    }
    /// Queue.
    pub fn queue(&self) -> &str {
        &self.task.queue
    }
    /// Failed attempts before this one (0 on the first run).
    pub fn retried(&self) -> u32 {
        self.task.retried
    }
    /// Retries allowed.
    pub fn max_retry(&self) -> u32 {
        self.task.max_retry
    }
    /// The task's deadline, if any.
    pub fn deadline(&self) -> Option<SystemTime> {
        self.task.deadline
    }
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.task.headers.get(name).map(String::as_str)
    }
    /// The whole envelope.
    pub fn message(&self) -> &TaskMessage {
        &self.task
    }
    /// Fires when the worker begins a graceful shutdown: long handlers may checkpoint and
    /// return early (the task is handed back if it has not finished by the shutdown timeout).
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }
}

/// One task attempt as it passes through middleware to the handler.
#[derive(Debug, Clone)]
pub struct Request {
    /// The task.
    pub task: Arc<TaskMessage>,
    /// Fires when the worker begins shutting down.
    pub shutdown: Shutdown,
    /// The values registered on the worker ([`WorkerBuilder::data`](crate::WorkerBuilder::data)):
    /// `req.data.get::<T>()`.
    pub data: DataMap,
}

impl Request {
    /// A request for `task` outside a worker (in a middleware's test, say): no data, no
    /// shutdown.
    pub fn new(task: Arc<TaskMessage>) -> Self {
        Request { task, shutdown: Shutdown::default(), data: DataMap::default() }
    }
}

/// A type-erased task handler: what middleware wraps (like a tower `Service`).
pub trait Handler: Send + Sync + 'static {
    /// Runs one attempt.
    fn call(&self, req: Request) -> BoxFuture<TaskResult>;
}

impl<F, Fut> Handler for F
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = TaskResult> + Send + 'static,
{
    fn call(&self, req: Request) -> BoxFuture<TaskResult> {
        Box::pin((self)(req))
    }
}

/// Options a task definition gives its tasks unless the caller overrides them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskDefaults {
    /// Queue (default `"default"`).
    pub queue: &'static str,
    /// Retries allowed (default [`DEFAULT_MAX_RETRY`](crate::task::DEFAULT_MAX_RETRY)).
    pub max_retry: u32,
    /// Per-attempt timeout (default none).
    pub timeout: Option<Duration>,
}

impl TaskDefaults {
    /// The defaults: queue `"default"`, 25 retries, no timeout.
    pub const fn new() -> Self {
        TaskDefaults { queue: crate::task::DEFAULT_QUEUE, max_retry: crate::task::DEFAULT_MAX_RETRY, timeout: None }
    }
    /// Sets the queue.
    pub const fn queue(mut self, queue: &'static str) -> Self {
        self.queue = queue;
        self
    }
    /// Sets the retries allowed.
    pub const fn max_retry(mut self, n: u32) -> Self {
        self.max_retry = n;
        self
    }
    /// Sets the per-attempt timeout.
    pub const fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }
}

impl Default for TaskDefaults {
    fn default() -> Self {
        Self::new()
    }
}

/// A typed task definition. `#[conveyor::task]` implements it on a unit struct named after the
/// function, so `send_email` is both the task type and the value passed to
/// [`Client::enqueue`](crate::Client::enqueue) and [`WorkerBuilder::register`](crate::WorkerBuilder::register).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a Conveyor task",
    label = "expected a task defined with `#[conveyor::task]`",
    note = "put `#[conveyor::task]` on an `async fn(args: T) -> Result<R, E>`"
)]
pub trait Task: Send + Sync + 'static {
    /// The name tasks are sent and registered under.
    const NAME: &'static str;
    /// The arguments.
    type Args: Serialize + DeserializeOwned + Send + 'static;
    /// The result (to read it back typed with [`TaskHandle::get`](crate::TaskHandle::get), it
    /// must also be `Deserialize`).
    type Output: Serialize + Send + 'static;

    /// Defaults for queue, retries and timeout.
    fn defaults() -> TaskDefaults {
        TaskDefaults::new()
    }

    /// The [`Data`](crate::Data) types the task takes, with their names: the worker refuses to
    /// build without a value for each.
    fn required_data() -> Vec<(std::any::TypeId, &'static str)> {
        Vec::new()
    }

    /// Runs the task.
    fn run(args: Self::Args, ctx: TaskContext) -> BoxFuture<Result<Self::Output, TaskError>>;
}

/// The [`Handler`] of a typed [`Task`]: decodes the arguments, runs it, encodes the result.
pub struct TaskHandler<T>(PhantomData<fn() -> T>);

impl<T> TaskHandler<T> {
    /// The handler of `T`.
    pub fn new() -> Self {
        TaskHandler(PhantomData)
    }
}

impl<T> Default for TaskHandler<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Task> Handler for TaskHandler<T> {
    fn call(&self, req: Request) -> BoxFuture<TaskResult> {
        let args = serde_json::from_str::<T::Args>(req.task.args.get());
        let ctx = TaskContext::of(req);
        Box::pin(async move {
            let args = args.map_err(|e| {
                TaskError::with_kind(ErrorKind::BadArgs, format!("arguments do not decode for `{}`: {e}", T::NAME))
            })?;
            let out = T::run(args, ctx).await?;
            serde_json::value::to_raw_value(&out)
                .map_err(|e| TaskError::skip_retry(format!("result of `{}` does not encode: {e}", T::NAME)))
        })
    }
}
