//! The [`Worker`]: receives tasks from a broker and runs their handlers.
//!
//! ```no_run
//! # use conveyor_core::{Worker, QueuePriority};
//! # async fn demo(broker: std::sync::Arc<dyn conveyor_core::Broker>, backend: std::sync::Arc<dyn conveyor_core::ResultBackend>) -> conveyor_core::Result<()> {
//! let worker = Worker::builder(broker, backend)
//!     // .register(send_email)            // tasks defined with #[conveyor::task]
//!     .concurrency(20)
//!     .queue("critical", 6)
//!     .queue("default", 3)
//!     .queue("low", 1)
//!     .build()?;
//! worker.run().await // until SIGINT or SIGTERM, then a graceful shutdown
//! # }
//! ```

mod exec;
mod inflight;
mod ops;
mod queues;
mod run;
mod shared;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use inflight::RunningTask;
pub use queues::QueuePriority;
pub use run::shutdown_signal;

use crate::backend::{ResultBackend, DEFAULT_RETENTION};
use crate::broker::Broker;
use crate::data::DataMap;
use crate::error::{Error, Result};
use crate::handler::{Handler, Task, TaskHandler};
use crate::middleware::{self, CatchPanic, Layer};
use crate::retry::{ExponentialBackoff, RetryPolicy};

/// What a worker does with a task whose name no handler is registered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownTask {
    /// Archive it with the reason (default): it shows in the archive, and can be retried from
    /// there once a worker knows it.
    #[default]
    Archive,
    /// Put it back to run again after this delay, without using an attempt (for rolling
    /// deployments where some workers know the task and others not yet).
    Requeue(Duration),
}

/// Worker settings. Build with [`Worker::builder`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerConfig {
    /// Most handlers running at once.
    pub concurrency: usize,
    /// Tasks received ahead of free handler slots, so that the next handler need not wait for
    /// a broker round trip (leased like running ones; handed back at shutdown).
    pub prefetch: usize,
    /// Queues and their weights.
    pub queues: Vec<(String, u32)>,
    /// Weighted or strict queue priority.
    pub priority: QueuePriority,
    /// How long a received task is leased to this worker; renewed every third of it.
    pub lease: Duration,
    /// How long a graceful shutdown waits for running handlers before handing their tasks back.
    pub shutdown_timeout: Duration,
    /// How long each receive call waits for a task.
    pub receive_wait: Duration,
    /// Most tasks taken per receive call.
    pub batch: usize,
    /// Retention of finished tasks that do not set their own.
    pub retention: Duration,
    /// What to do with tasks no handler is registered for.
    pub unknown_task: UnknownTask,
    /// The largest task body this worker decodes (default 256 KiB, the client's default):
    /// a larger one is archived unparsed, with the reason `payload too large`.
    pub max_payload: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 10,
            prefetch: 2,
            queues: Vec::new(),
            priority: QueuePriority::Weighted,
            lease: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(25),
            receive_wait: Duration::from_secs(5),
            max_payload: crate::client::DEFAULT_MAX_PAYLOAD,
            batch: 64,
            retention: DEFAULT_RETENTION,
            unknown_task: UnknownTask::Archive,
        }
    }
}

/// Builds a [`Worker`].
pub struct WorkerBuilder {
    broker: Arc<dyn Broker>,
    backend: Arc<dyn ResultBackend>,
    handlers: HashMap<String, (Arc<dyn Handler>, &'static str)>,
    layers: Vec<Arc<dyn Layer>>,
    retry: Arc<dyn RetryPolicy>,
    config: WorkerConfig,
    scheduler: Option<crate::scheduler::Scheduler>,
    data: DataMap,
    /// The data each registered typed task takes: (task, type, type name).
    needs: Vec<(&'static str, std::any::TypeId, &'static str)>,
}

impl WorkerBuilder {
    /// Registers a typed task (defined with `#[conveyor::task]`).
    pub fn register<T: Task>(mut self, _task: T) -> Self {
        self.handlers.insert(T::NAME.to_owned(), (Arc::new(TaskHandler::<T>::new()), T::defaults().queue));
        self.needs.extend(T::required_data().into_iter().map(|(id, name)| (T::NAME, id, name)));
        self
    }

    /// Registers `value` for handlers: a database pool, an HTTP client, a mailer. A task
    /// function takes it as a [`Data<T>`](crate::Data) parameter after its arguments; any
    /// handler finds it with [`TaskContext::data`](crate::TaskContext::data) or
    /// `req.data.get::<T>()`. One value per type (a second replaces the first): wrap two of one
    /// type in types of their own.
    ///
    /// ```
    /// # use conveyor_core::{Data, Task, Worker, TaskError};
    /// # async fn demo(broker: std::sync::Arc<dyn conveyor_core::Broker>, backend: std::sync::Arc<dyn conveyor_core::ResultBackend>) -> conveyor_core::Result<()> {
    /// #[derive(Clone)]
    /// struct Db { url: String }
    ///
    /// let worker = Worker::builder(broker, backend)
    ///     .data(Db { url: "postgres://…".into() })
    ///     .queue("default", 1)
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn data<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.data = self.data.with(value);
        self
    }

    /// Registers an untyped handler under `name` (its tasks default to queue `"default"`).
    pub fn register_handler(mut self, name: impl Into<String>, handler: impl Handler) -> Self {
        self.handlers.insert(name.into(), (Arc::new(handler), crate::task::DEFAULT_QUEUE));
        self
    }

    /// Adds a middleware layer; the first added is the outermost.
    pub fn layer(mut self, layer: impl Layer) -> Self {
        self.layers.push(Arc::new(layer));
        self
    }

    /// Most handlers running at once (default 10). Also sets the prefetch to a quarter of it
    /// (at least 1), unless [`prefetch`](Self::prefetch) is called after.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.config.concurrency = n;
        self.config.prefetch = (n / 4).max(1);
        self
    }

    /// The largest task body this worker decodes (default 256 KiB): raise it with the client's
    /// [`Client::max_payload`](crate::Client::max_payload). A larger delivery (from a producer
    /// that skipped the client's check) is archived unparsed, with the reason
    /// `payload too large`.
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.config.max_payload = bytes;
        self
    }

    /// Tasks received ahead of free handler slots (default: a quarter of the concurrency, at
    /// least 1; 0 receives only for free slots). Hides the broker round trip when tasks are
    /// short; keep it small when tasks are long, so that other workers get them instead.
    pub fn prefetch(mut self, n: usize) -> Self {
        self.config.prefetch = n;
        self
    }

    /// Takes tasks from `queue` with `weight` (see [`QueuePriority`]). Without any `queue` call,
    /// the worker serves the default queues of its registered tasks, each with weight 1.
    pub fn queue(mut self, queue: impl Into<String>, weight: u32) -> Self {
        self.config.queues.push((queue.into(), weight));
        self
    }

    /// Strict priority: always the highest-weight non-empty queue first.
    pub fn strict_priority(mut self, strict: bool) -> Self {
        self.config.priority = if strict { QueuePriority::Strict } else { QueuePriority::Weighted };
        self
    }

    /// The retry policy (default [`ExponentialBackoff`]).
    pub fn retry_policy(mut self, policy: impl RetryPolicy) -> Self {
        self.retry = Arc::new(policy);
        self
    }

    /// The lease on received tasks (default 30 s), renewed every third of it while the handler
    /// runs. After a crash, a task waits about this long before it is delivered again.
    pub fn lease(mut self, d: Duration) -> Self {
        self.config.lease = d;
        self
    }

    /// How long a graceful shutdown waits for running handlers (default 25 s).
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.config.shutdown_timeout = d;
        self
    }

    /// Retention of finished tasks that do not set their own (default 24 h).
    pub fn retention(mut self, d: Duration) -> Self {
        self.config.retention = d;
        self
    }

    /// What to do with tasks no handler is registered for (default: archive).
    pub fn unknown_task(mut self, policy: UnknownTask) -> Self {
        self.config.unknown_task = policy;
        self
    }

    /// Most tasks taken per receive call (default 64).
    pub fn batch(mut self, n: usize) -> Self {
        self.config.batch = n;
        self
    }

    /// Replaces all settings at once.
    pub fn config(mut self, config: WorkerConfig) -> Self {
        self.config = config;
        self
    }

    /// Runs `scheduler` inside this worker: started with it, stopped when its shutdown begins.
    /// Every worker may run one; each tick is still enqueued once (see [`crate::scheduler`]).
    pub fn scheduler(mut self, scheduler: crate::scheduler::Scheduler) -> Self {
        self.scheduler = Some(scheduler);
        self
    }

    /// Checks the settings and builds the worker.
    pub fn build(mut self) -> Result<Worker> {
        let c = &mut self.config;
        let bad = |option: &'static str, reason: String| Err(Error::InvalidOption { option, reason });
        if c.concurrency == 0 {
            return bad("concurrency", "worker concurrency must be at least 1".into());
        }
        if c.batch == 0 || c.batch > 1000 {
            return bad("batch", format!("worker batch must be 1 to 1000, not {}", c.batch));
        }
        if c.lease < Duration::from_millis(300) {
            return bad("lease", format!("worker lease {:?} is too short (minimum 300ms)", c.lease));
        }
        if c.queues.is_empty() {
            let mut qs: Vec<&str> = self.handlers.values().map(|h| h.1).collect();
            qs.sort_unstable();
            qs.dedup();
            c.queues = qs.into_iter().map(|q| (q.to_owned(), 1)).collect();
        }
        if c.queues.is_empty() {
            return Err(Error::Config("worker has no queues: register a task or add a queue".into()));
        }
        if let Some((task, _, ty)) = self.needs.iter().find(|(_, id, _)| !self.data.contains(*id)) {
            return Err(Error::Config(format!(
                "task `{task}` takes `Data<{ty}>`, but the worker has no `{ty}`: add `.data(value)` to the worker builder"
            )));
        }
        for (q, weight) in &c.queues {
            crate::task::check_queue_name(q)?;
            if *weight == 0 {
                return bad("queue", format!("queue `{q}` needs a weight of at least 1"));
            }
        }
        // CatchPanic innermost (so middleware sees a panic as an error) and outermost (so a
        // panicking middleware cannot take a task down with it); the attempt's time limit
        // inside the middleware (so that it sees a timeout as a failed attempt).
        middleware::panic::install_hook();
        let mut layers: Vec<Arc<dyn Layer>> = vec![Arc::new(CatchPanic)];
        layers.extend(self.layers.iter().cloned());
        layers.push(Arc::new(middleware::limit::AttemptLimit));
        layers.push(Arc::new(CatchPanic));
        let handlers = self.handlers.into_iter().map(|(name, (h, _))| (name, middleware::wrap(h, &layers))).collect();
        let selector = queues::QueueSelector::new(
            self.config.queues.iter().map(|(q, w)| (Arc::from(q.as_str()), *w)).collect(),
            self.config.priority,
        );
        let (broker, backend) = (self.broker, self.backend);
        let counts = self.config.queues.iter().map(|_| Default::default()).collect();
        Ok(Worker {
            scheduler: self.scheduler,
            shared: Arc::new(shared::Shared {
                broker: broker.clone(),
                backend: backend.clone(),
                handlers,
                retry: self.retry,
                config: self.config,
                selector,
                inflight: Default::default(),
                client: crate::client::Client::new(broker.clone(), backend.clone()),
                data: self.data,
                counts,
                label: format!("{}:{}", ops::host(), std::process::id()),
            }),
        })
    }
}

/// Receives tasks and runs their handlers, at most `concurrency` at a time, until shut down.
pub struct Worker {
    shared: Arc<shared::Shared>,
    scheduler: Option<crate::scheduler::Scheduler>,
}

impl Worker {
    /// A builder for a worker on `broker` and `backend`.
    pub fn builder(broker: Arc<dyn Broker>, backend: Arc<dyn ResultBackend>) -> WorkerBuilder {
        WorkerBuilder {
            broker,
            backend,
            handlers: HashMap::new(),
            layers: Vec::new(),
            retry: Arc::new(ExponentialBackoff::default()),
            config: WorkerConfig::default(),
            scheduler: None,
            data: DataMap::default(),
            needs: Vec::new(),
        }
    }

    /// The worker's settings.
    pub fn config(&self) -> &WorkerConfig {
        &self.shared.config
    }

    /// Runs until SIGINT or SIGTERM (Ctrl-C elsewhere), then shuts down gracefully: stops
    /// receiving, waits up to the shutdown timeout for running handlers, and hands unfinished
    /// tasks back to the broker without using an attempt. A second signal skips the wait.
    pub async fn run(self) -> Result<()> {
        let stop = tokio_util::sync::CancellationToken::new();
        let hard = tokio_util::sync::CancellationToken::new();
        let (s, h) = (stop.clone(), hard.clone());
        let signals = tokio::spawn(async move {
            run::shutdown_signal().await;
            tracing::info!("shutdown signal received: finishing running tasks (signal again to stop now)");
            s.cancel();
            run::shutdown_signal().await;
            tracing::warn!("second signal: handing running tasks back now");
            h.cancel();
        });
        let out = self.run_with(stop, hard).await;
        signals.abort();
        out
    }

    /// Runs until `shutdown` is cancelled, then shuts down gracefully as [`Worker::run`] does.
    pub async fn run_until(self, shutdown: tokio_util::sync::CancellationToken) -> Result<()> {
        self.run_with(shutdown, tokio_util::sync::CancellationToken::new()).await
    }

    async fn run_with(
        self,
        stop: tokio_util::sync::CancellationToken,
        hard: tokio_util::sync::CancellationToken,
    ) -> Result<()> {
        let scheduler = self.scheduler.map(|s| tokio::spawn(s.run_until(stop.clone())));
        let out = run::run(self.shared, stop, hard).await;
        if let Some(s) = scheduler {
            let _ = s.await;
        }
        out
    }
}
