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
pub mod data;
mod error;
pub mod extract;
pub mod handler;
pub mod inspect;
pub mod middleware;
pub mod retry;
pub mod scheduler;
pub mod task;
pub mod time;
pub mod tls;
pub mod worker;
pub mod workflow;

pub use backend::{
    Attempt, LockResult, ResultBackend, StateUpdate, TaskRecord, ATTEMPTS_KEPT, DEFAULT_RETENTION, UNCONFIRMED_TTL,
};
pub use broker::{
    ArchivedTask, Broker, Delivery, Payload, QueueAdmin, QueueStats, RawPublish, Receipt, ReceiveRequest,
};
pub use client::{Client, TaskBuilder, TaskHandle, BATCH_ROUND, DEFAULT_MAX_PAYLOAD};
pub use data::DataMap;
pub use error::{BoxError, DriverError, Error, FailureKind, Result};
pub use extract::{Data, FromContext};
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
pub use workflow::{chain, chord, group, Canvas, Failure, Signature, TaskExt, WorkflowHandle, PARENT_HEADER};

/// Re-exported for handlers and the macro.
pub use async_trait::async_trait;
pub use tokio_util::sync::CancellationToken;

/// Parses a broker or backend URL, mapping errors to [`Error::InvalidUrl`].
pub fn parse_url(url: &str) -> Result<url::Url> {
    url::Url::parse(url).map_err(|e| Error::invalid_url(url, e.to_string()))
}

/// `url` with its password, and the values of query parameters that look secret (`password`,
/// `secret`, `token`), replaced by `***`: what errors, logs and `Debug` output show of a URL.
/// Works on strings that do not parse as URLs, too.
///
/// ```
/// use conveyor_core::redact_url;
/// assert_eq!(redact_url("redis://:S3cret@h:6379/0?prefix=a"), "redis://:***@h:6379/0?prefix=a");
/// assert_eq!(redact_url("amqp://app:S3cret@h/%2f"), "amqp://app:***@h/%2f");
/// assert_eq!(redact_url("x://h/?token=abc&a=1"), "x://h/?token=***&a=1");
/// assert_eq!(redact_url("amqp://u:p#s?s@h/"), "amqp://u:***@h/");
/// ```
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(start) = url.find("://").map(|i| i + 3) {
        // The userinfo ends at the last `@` (a password may hold a `/`, `?` or `#`; an `@`
        // elsewhere only makes this hide more than the password).
        if let Some(at) = url[start..].rfind('@').map(|i| start + i) {
            if let Some(colon) = url[start..at].find(':').map(|i| start + i) {
                out = format!("{}***{}", &url[..=colon], &url[at..]);
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if ["pass", "secret", "token"].iter().any(|s| k.to_ascii_lowercase().contains(s)) => {
                    format!("{k}=***")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out = format!("{head}{}", pairs.join("&"));
    }
    out
}

/// Where a URL points, for error messages: `host:port` (with the scheme's default port), or
/// the redacted URL when it names no host.
pub fn url_target(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) if u.host_str().is_some() => {
            let host = u.host_str().unwrap_or_default();
            match u.port_or_known_default().or_else(|| match u.scheme() {
                "redis" | "rediss" => Some(6379),
                "amqp" => Some(5672),
                "amqps" => Some(5671),
                _ => None,
            }) {
                Some(p) => format!("{host}:{p}"),
                None => host.to_owned(),
            }
        }
        _ => redact_url(url),
    }
}

/// Why a broker's or backend's first exchange with `server` (`"Redis"`, `"RabbitMQ"`) at
/// `target` failed, in words an operator can act on: refused credentials, something else than
/// that server on the port, or the driver's message.
pub fn first_contact_failure(server: &str, target: &str, msg: &str) -> String {
    let m = msg.to_ascii_lowercase();
    if ["noauth", "wrongpass", "access_refused", "authentication", "auth failed"].iter().any(|s| m.contains(s)) {
        format!("{server} at {target} refused the credentials (give the right user and password in the URL): {msg}")
    } else if ["parse error", "incompatible type", "invalid frame", "protocol header"].iter().any(|s| m.contains(s)) {
        format!("the server at {target} does not answer as {server} does (is this the right port?): {msg}")
    } else {
        format!("{server} at {target} failed: {msg}")
    }
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
    pub use std::vec::Vec;

    use crate::TaskError;
    use std::cell::Cell;
    use std::error::Error as StdError;

    /// A task function's error on its way into a [`TaskError`], by the first way that fits
    /// (autoref specialization: the macro calls `(&&&IntoTaskError::new(e)).to_task_error()`):
    /// a boxed error (which `From` cannot take: it would overlap the blanket impl for
    /// `std::error::Error` types), then anything `Into<TaskError>`, then anything that boxes
    /// into an error (`String`, `&str`, `anyhow::Error`).
    pub struct IntoTaskError<E>(Cell<Option<E>>);

    impl<E> IntoTaskError<E> {
        pub fn new(e: E) -> Self {
            IntoTaskError(Cell::new(Some(e)))
        }
        fn take(&self) -> E {
            self.0.take().expect("converted once")
        }
    }

    pub trait ViaBoxed {
        fn to_task_error(&self) -> TaskError;
    }
    impl ViaBoxed for &&IntoTaskError<Box<dyn StdError + Send + Sync>> {
        fn to_task_error(&self) -> TaskError {
            TaskError::from_boxed(self.take())
        }
    }
    impl ViaBoxed for &&IntoTaskError<Box<dyn StdError>> {
        fn to_task_error(&self) -> TaskError {
            TaskError::msg(self.take())
        }
    }

    pub trait ViaInto {
        fn to_task_error(&self) -> TaskError;
    }
    impl<E: Into<TaskError>> ViaInto for &IntoTaskError<E> {
        fn to_task_error(&self) -> TaskError {
            self.take().into()
        }
    }

    pub trait ViaBox {
        fn to_task_error(&self) -> TaskError;
    }
    impl<E: Into<Box<dyn StdError + Send + Sync>>> ViaBox for IntoTaskError<E> {
        fn to_task_error(&self) -> TaskError {
            TaskError::from_boxed(self.take().into())
        }
    }
}
