//! # Conveyor: a distributed task queue for Rust
//!
//! Move slow work (emails, reports, ETL, video) off the request path. Define typed tasks with
//! `#[conveyor::task]`, enqueue them with options, and run workers — on the in-memory broker
//! with nothing to install, or on Redis, RabbitMQ or SQS by changing one URL.
//!
//! ```
//! use std::time::Duration;
//! use conveyor::{Client, TaskError, Worker};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Add { a: i64, b: i64 }
//!
//! #[conveyor::task(queue = "math", max_retry = 3, timeout = "10s")]
//! async fn add(args: Add) -> Result<i64, TaskError> {
//!     Ok(args.a + args.b)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> conveyor::Result<()> {
//! let broker = conveyor::broker("memory://doc").await?;   // or redis://, amqp://, sqs://
//! let backend = conveyor::backend("memory://doc").await?;
//!
//! let client = Client::new(broker.clone(), backend.clone());
//! let handle = client.task(add, Add { a: 2, b: 3 }).process_in(Duration::from_millis(10)).await?;
//!
//! let stop = conveyor::CancellationToken::new();
//! let worker = Worker::builder(broker, backend).register(add).concurrency(4).build()?;
//! let running = tokio::spawn(worker.run_until(stop.clone()));
//!
//! assert_eq!(handle.get(Duration::from_secs(5)).await?, 5);
//! stop.cancel();
//! running.await.unwrap()?;
//! # Ok(()) }
//! ```
//!
//! ## Features
//! - `macros` (default): the `#[task]` attribute.
//! - `redis`: the Redis broker and result backend (`redis://host:port/?prefix=app`).
//! - `amqp`: the RabbitMQ broker (`amqp://user:pass@host:port/vhost?prefix=app`).
//! - `sqs`: the AWS SQS broker (`sqs://?region=us-east-1`, credentials from the AWS chain).
//! - `tz`: IANA time zone names for periodic entries (embeds the tz database); UTC and fixed
//!   offsets work without it.
//!
//! The in-memory broker and backend are always available (`memory://`).
//!
//! ## Writing a broker or a backend
//! Applications need only what this page lists at its root. A new broker or result backend
//! implements the [`Broker`] or [`ResultBackend`] trait with the parts in [`mod@broker`] and
//! [`mod@backend`].
//!
//! ## Versions
//! Only this crate, `conveyor`, follows semantic versioning: depend on it alone. The crates it
//! is made of (`conveyor-core`, the brokers, the backends, the macros) are pinned to the exact
//! version by it, as sqlx does with its drivers, and may change between any two releases.
//! Conveyor builds with Rust 1.89 or later; the `sqs` feature needs 1.94.1 (as the AWS SDK
//! does). `scripts/test` checks both, and that every feature builds on its own.
//!
//! ## Beyond single tasks
//! - [`workflow`]: chains, groups and chords as data ([`chain`], [`group`], [`chord`]).
//! - [`scheduler`]: periodic tasks on cron schedules, enqueued once per tick however many
//!   schedulers run.
//! - [`middleware`]: layers around every handler (logging, panics, metrics, your own).
//!
//! ## Choosing the broker at run time
//! [`broker()`] and [`backend()`] build from a URL; [`broker_from_env`] and [`backend_from_env`]
//! read `CONVEYOR_BROKER` and `CONVEYOR_BACKEND` (unset, an error; the backend defaults to the
//! broker's own Redis); [`broker_from_env_or`] and [`backend_from_env_or`] name the default
//! (`memory://`) where falling back to this process is what you want. An unknown scheme, or
//! one whose feature is not compiled in, is an error naming the problem, never a panic.

#![cfg_attr(docsrs, feature(doc_cfg))]

// What an application uses, by area. (Hand-picked: the inner crates' plumbing stays out.)
pub use conveyor_core::{async_trait, CancellationToken};
pub use conveyor_core::{middleware, scheduler, workflow};
// Enqueueing and results.
pub use conveyor_core::{
    Attempt, Client, TaskBuilder, TaskHandle, TaskRecord, BATCH_ROUND, DEFAULT_MAX_PAYLOAD, DEFAULT_RETENTION,
};
// Tasks and their options.
pub use conveyor_core::{
    TaskDefaults, TaskId, TaskMessage, TaskState, UniqueRelease, DEFAULT_MAX_RETRY, DEFAULT_QUEUE, MAX_PRIORITY,
};
// Handlers: what they take, return and see.
pub use conveyor_core::{
    BoxFuture, Data, DataMap, ErrorKind, FromContext, Handler, Request, Shutdown, Task, TaskContext, TaskError,
    TaskResult,
};
// Workers and retries.
pub use conveyor_core::{
    shutdown_signal, ExponentialBackoff, QueuePriority, RetryPolicy, UnknownTask, Worker, WorkerBuilder, WorkerConfig,
};
// Workflows and periodic tasks.
pub use conveyor_core::{chain, chord, group, Canvas, Failure, Signature, TaskExt, WorkflowHandle, PARENT_HEADER};
pub use conveyor_core::{EntryProvider, MissedTicks, PeriodicEntry, Scheduler};
// Errors, and a URL safe to print (its password replaced by `***`).
pub use conveyor_core::{redact_url, Error, FailureKind, Result};
// The broker and backend an application holds, and what it can ask of them today.
pub use conveyor_core::{ArchivedTask, Broker, Payload, QueueAdmin, QueueStats, ResultBackend};
// Operations: see and fix what is stuck (queues, tasks by state, run now, archive, delete).
pub use conveyor_core::inspect;
pub use conveyor_core::inspect::Inspector;

/// For authors of a broker: the [`Broker`] trait and what a receive, a delivery and its
/// settling are made of, with helpers for URLs and errors. Applications need none of it.
pub mod broker {
    pub use conveyor_core::broker::{
        hand_back_paused, ArchivedTask, Broker, Delivery, Payload, QueueAdmin, QueueStats, RawPublish, Receipt,
        ReceiveRequest,
    };
    pub use conveyor_core::inspect::{
        archived_infos, check_action, invalid_state, rerun_envelope, run_all_archived, unsupported, BrokerInspect,
        Moved, Rerun, TaskInfo,
    };
    pub use conveyor_core::task::{check_queue_name, WIRE_VERSION};
    pub use conveyor_core::{async_trait, time};
    pub use conveyor_core::{
        check_prefix, first_contact_failure, parse_url, redact_url, replace_query, url_target, BoxError, DriverError,
        FailureKind,
    };
}

/// For authors of a result backend: the [`ResultBackend`] trait, its records and updates,
/// with helpers for URLs and errors. Applications need none of it.
pub mod backend {
    pub use conveyor_core::backend::{
        Attempt, LockResult, ResultBackend, StateUpdate, TaskRecord, ATTEMPTS_KEPT, DEFAULT_RETENTION, UNCONFIRMED_TTL,
    };
    pub use conveyor_core::{async_trait, time};
    pub use conveyor_core::{
        check_prefix, first_contact_failure, parse_url, redact_url, replace_query, url_target, BoxError, DriverError,
        FailureKind,
    };
}

#[doc(hidden)]
pub use conveyor_core::__private;

#[cfg(feature = "macros")]
#[cfg_attr(docsrs, doc(cfg(feature = "macros")))]
pub use conveyor_macros::task;

/// The in-memory broker and result backend.
pub mod memory {
    pub use conveyor_backend_memory::MemoryBackend;
    pub use conveyor_broker_memory::{MemoryBroker, DEFAULT_ARCHIVE_LIMIT};
}

/// The Redis broker and result backend (feature `redis`).
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis {
    pub use conveyor_backend_redis::RedisBackend;
    pub use conveyor_broker_redis::{RedisBroker, RedisConfig};
}

/// The RabbitMQ broker (feature `amqp`).
#[cfg(feature = "amqp")]
#[cfg_attr(docsrs, doc(cfg(feature = "amqp")))]
pub mod amqp {
    pub use conveyor_broker_amqp::{AmqpBroker, AmqpConfig};
}

/// The AWS SQS broker (feature `sqs`).
#[cfg(feature = "sqs")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqs")))]
pub mod sqs {
    pub use conveyor_broker_sqs::{SqsBroker, SqsConfig, MAX_BODY};
}

mod connect;
pub use connect::{
    backend, backend_from_env, backend_from_env_or, broker, broker_from_env, broker_from_env_or, BACKEND_ENV,
    BROKER_ENV,
};

/// The README's code blocks, compiled and run as doctests so that it never drifts.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// docs/workflows.md's code blocks, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/workflows.md")]
pub struct WorkflowsDoctests;

/// docs/unique-tasks.md's code blocks, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/unique-tasks.md")]
pub struct UniqueTasksDoctests;

/// docs/periodic-tasks.md's code blocks, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/periodic-tasks.md")]
pub struct PeriodicTasksDoctests;

/// docs/middleware.md's code blocks, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/middleware.md")]
pub struct MiddlewareDoctests;

/// docs/handler-state.md's code blocks, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/handler-state.md")]
pub struct HandlerStateDoctests;

/// docs/operations.md's code blocks, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/operations.md")]
pub struct OperationsDoctests;

/// docs/writing-a-broker.md's code blocks, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/writing-a-broker.md")]
pub struct WritingABrokerDoctests;
