//! Core of the [Conveyor](https://crates.io/crates/conveyor) task queue: the task model, the
//! [`Broker`] and [`ResultBackend`] traits, the [`Client`], the [`Worker`], retries and
//! middleware.
//!
//! Applications use the `conveyor` facade crate, which re-exports everything here together with
//! the brokers and backends enabled by Cargo features. Broker and backend crates depend on this
//! crate only.

pub mod backend;
pub mod broker;
pub mod client;
mod error;
pub mod handler;
pub mod middleware;
pub mod retry;
pub mod scheduler;
pub mod task;
pub mod time;
pub mod worker;
pub mod workflow;

pub use backend::{LockResult, ResultBackend, StateUpdate, TaskRecord, DEFAULT_RETENTION, UNCONFIRMED_TTL};
pub use broker::{
    ArchivedTask, Broker, Delivery, Payload, QueueAdmin, QueueStats, RawPublish, Receipt, ReceiveRequest,
};
pub use client::{Client, TaskBuilder, TaskHandle, DEFAULT_MAX_PAYLOAD};
pub use error::{BoxError, Error, Result};
pub use handler::{
    BoxFuture, ErrorKind, Handler, Request, Shutdown, Task, TaskContext, TaskDefaults, TaskError, TaskHandler,
    TaskResult,
};
pub use retry::{ExponentialBackoff, RetryPolicy};
pub use scheduler::{EntryProvider, MissedTicks, PeriodicEntry, Scheduler};
pub use task::{
    TaskId, TaskMessage, TaskState, UniqueRelease, DEFAULT_MAX_RETRY, DEFAULT_QUEUE, MAX_PRIORITY, WIRE_VERSION,
};
pub use worker::{shutdown_signal, QueuePriority, UnknownTask, Worker, WorkerBuilder, WorkerConfig};
pub use workflow::{chain, chord, group, Canvas, Failure, Signature, TaskExt, WorkflowHandle};

/// Re-exported for handlers and the macro.
pub use async_trait::async_trait;
pub use tokio_util::sync::CancellationToken;

/// Parses a broker or backend URL, mapping errors to [`Error::InvalidUrl`].
pub fn parse_url(url: &str) -> Result<url::Url> {
    url::Url::parse(url).map_err(|e| Error::InvalidUrl { url: url.to_owned(), reason: e.to_string() })
}

/// Checks a key/queue namespace given as `?prefix=`: 1 to 64 ASCII letters, digits, `-`, `_`,
/// `.` and `:` (no braces, which would break Redis Cluster hash tags; no spaces). Every broker
/// and backend applies this rule, so one URL works for a broker and its backend alike; the
/// error is the reason, for the caller's `InvalidUrl`.
pub fn check_prefix(prefix: &str) -> std::result::Result<(), String> {
    let ok = (1..=64).contains(&prefix.len())
        && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(format!("prefix `{prefix}` must be 1 to 64 ASCII letters, digits, `-`, `_`, `.` or `:`"))
    }
}

/// Replaces a URL's query with `pairs` (removing it when empty): what a driver gets after
/// Conveyor's own parameters were taken out.
pub fn replace_query(url: &mut url::Url, pairs: &[(String, String)]) {
    if pairs.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
}

/// Items the `#[task]` macro expands to. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use serde;
    pub use std::boxed::Box;
    pub use std::time::Duration;
}
