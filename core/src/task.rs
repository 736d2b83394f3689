//! The task envelope: what travels through every broker, and its versioned JSON wire form.
//!
//! # Wire form (version 1)
//!
//! A task is one JSON object. Unknown fields are ignored, so newer producers can add fields
//! without breaking older workers; a `v` greater than [`WIRE_VERSION`] is rejected with
//! [`Error::UnsupportedVersion`]. Times are Unix-epoch milliseconds, durations milliseconds.
//! Optional fields are omitted when unset.
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `v` | int | wire version, `1` |
//! | `id` | string | task id (a UUID v4 unless the producer chose one) |
//! | `name` | string | the task name handlers are registered under |
//! | `args` | any JSON | the handler's arguments |
//! | `queue` | string | queue name |
//! | `retried` | int | failed attempts so far (0 on the first run) |
//! | `max_retry` | int | retries allowed after the first attempt |
//! | `timeout_ms` | int? | per-attempt timeout |
//! | `deadline` | int? | absolute time after which the task must not run |
//! | `eta` | int? | earliest time to run (delayed tasks) |
//! | `unique_key` | string? | the unique-task key, if any |
//! | `unique_ttl_ms` | int? | how long the unique lock lasts at most |
//! | `unique_release` | string? | when the lock is released: `success` (default), `completion`, `expiry` |
//! | `priority` | int? | 0 (default) to 9, higher first, where the broker supports it |
//! | `retention_ms` | int? | how long the result is kept after completion |
//! | `headers` | object? | string → string metadata (tracing ids, tenant, ...) |
//! | `created_at` | int | when the task was first enqueued |
//! | `last_error` | string? | the error of the last failed attempt |
//! | `workflow` | any JSON? | reserved for chains, groups, chords and callbacks |
//!
//! ```
//! use conveyor_core::TaskMessage;
//! let json = br#"{"v":1,"id":"t1","name":"email:welcome","args":{"user":7},"queue":"default",
//!                "max_retry":3,"created_at":1700000000000,"some_future_field":true}"#;
//! let task = TaskMessage::decode(json).unwrap();
//! assert_eq!(task.name, "email:welcome");
//! assert_eq!(task.args.get(), r#"{"user":7}"#);
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{Error, Result};

/// The wire format version this build writes and the highest it reads.
pub const WIRE_VERSION: u32 = 1;

/// Retries allowed after the first attempt when neither the task nor the caller says.
pub const DEFAULT_MAX_RETRY: u32 = 25;

/// The queue a task goes to when neither the task nor the caller names one.
pub const DEFAULT_QUEUE: &str = "default";

/// The highest task priority (the lowest, and the default, is 0).
pub const MAX_PRIORITY: u8 = 9;

/// The most retries a task may ask for: with the default backoff (capped at an hour), more
/// than a year of retrying. A larger number is a mistake, not a policy.
pub const MAX_RETRY_LIMIT: u32 = 10_000;

/// The longest queue name, before an optional `.fifo` (SQS allows 80 characters for a whole
/// queue name, of which the namespace prefix and the archive suffix take some).
pub const MAX_QUEUE_NAME: usize = 64;

/// Checks a queue name against the one rule under which no broker can mistake one queue for
/// another: 1 to [`MAX_QUEUE_NAME`] ASCII letters, digits, `-` and `_`, optionally followed by
/// `.fifo` (an SQS FIFO queue; a plain name elsewhere), and not ending in `-archive` (the name
/// of each queue's archive on SQS). RabbitMQ names its archive and delay queues with a `.`,
/// and SQS maps other characters to `_`, so a name outside the rule could share a queue with
/// another one, or with an archive. Enqueueing and building a worker check it:
/// [`Error::InvalidQueueName`] names the rule a name breaks.
///
/// ```
/// use conveyor_core::task::check_queue_name;
/// assert!(check_queue_name("emails").is_ok());
/// assert!(check_queue_name("orders.fifo").is_ok());
/// assert!(check_queue_name("a.b").is_err()); // would be `a_b` on SQS
/// assert!(check_queue_name("emails-archive").is_err()); // the archive of `emails` on SQS
/// ```
pub fn check_queue_name(name: &str) -> Result<()> {
    let bad = |reason: &'static str| Err(Error::InvalidQueueName { name: name.to_owned(), reason });
    let base = name.strip_suffix(".fifo").unwrap_or(name);
    if base.is_empty() {
        return bad("a queue name must not be empty");
    }
    if base.len() > MAX_QUEUE_NAME {
        return bad("a queue name has at most 64 characters (and an optional `.fifo`)");
    }
    if !base.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return bad("a queue name has only ASCII letters, digits, `-` and `_` (and an optional final `.fifo`)");
    }
    if base.ends_with("-archive") {
        return bad("names ending in `-archive` are reserved for queues' archives");
    }
    Ok(())
}

/// A task's id: a UUID v4 by default, or any non-empty string the producer chooses
/// (a business key makes enqueueing idempotent: a second enqueue is a [`Error::DuplicateTask`]).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(String);

impl TaskId {
    /// A new random (UUID v4) id.
    pub fn random() -> Self {
        TaskId(uuid::Uuid::new_v4().to_string())
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl From<String> for TaskId {
    fn from(s: String) -> Self {
        TaskId(s)
    }
}

impl From<&str> for TaskId {
    fn from(s: &str) -> Self {
        TaskId(s.to_owned())
    }
}

impl AsRef<str> for TaskId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The lifecycle state of a task, as recorded in the result backend.
///
/// ```text
///            enqueue (no delay)            receive
///  Pending <───────────────────── ... ──────────────> Active ──success──> Completed
///     ^                                                 │  │
///     │ due          enqueue (delay)                     │  └──failure, no retries left,──> Archived
///  Scheduled <────────────────────                      │     skip-retry, bad input
///                                                        └──failure, retries left──> Retry ──due──> Pending
/// ```
///
/// `Completed` and `Archived` are terminal. A task handed back at shutdown goes from `Active`
/// back to `Pending` without using an attempt. A worker that dies leaves the task `Active`
/// until its lease expires and the broker redelivers it (which counts as a failed attempt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Waiting in its queue to be picked up.
    Pending,
    /// Enqueued with a delay; becomes pending when due.
    Scheduled,
    /// A worker is running it.
    Active,
    /// Failed and waiting for its next attempt.
    Retry,
    /// Failed for good (retries used up, skip-retry, bad input); kept in the archive.
    Archived,
    /// Ran successfully; its result is kept for the retention period.
    Completed,
}

impl TaskState {
    /// True for `Completed` and `Archived`.
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskState::Completed | TaskState::Archived)
    }

    /// The lowercase name (`"pending"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Scheduled => "scheduled",
            TaskState::Active => "active",
            TaskState::Retry => "retry",
            TaskState::Archived => "archived",
            TaskState::Completed => "completed",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TaskState {
    type Err = Error;

    /// A state by its lowercase name; [`Error::InvalidOption`] names the valid ones.
    fn from_str(s: &str) -> Result<Self> {
        use TaskState::*;
        [Pending, Scheduled, Active, Retry, Archived, Completed].into_iter().find(|t| t.as_str() == s).ok_or_else(
            || Error::InvalidOption {
                option: "state",
                reason: format!(
                    "unknown task state `{s}`: expected pending, scheduled, active, retry, archived or completed"
                ),
            },
        )
    }
}

/// When a unique task's lock is released (see `TaskBuilder::unique`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum UniqueRelease {
    /// When the task completes successfully (default): a task that ends archived keeps the
    /// lock until its TTL, so a failing job is not immediately enqueued again.
    #[default]
    #[serde(rename = "success")]
    OnSuccess,
    /// When the task completes or is archived.
    #[serde(rename = "completion")]
    OnCompletion,
    /// Only when the TTL expires (at most one such task per window).
    #[serde(rename = "expiry")]
    OnExpiry,
}

impl UniqueRelease {
    fn is_default(&self) -> bool {
        *self == UniqueRelease::OnSuccess
    }
}

/// The default unique key of a task: name, queue and a hash of the arguments.
pub fn unique_key_of(name: &str, queue: &str, args: &RawValue) -> String {
    // FNV-1a, 64 bits: stable across processes and versions (unlike std's hasher).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in args.get().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{name}:{queue}:{h:016x}")
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero_u8(n: &u8) -> bool {
    *n == 0
}

fn wire_version() -> u32 {
    WIRE_VERSION
}

fn default_max_retry() -> u32 {
    DEFAULT_MAX_RETRY
}

fn empty_args() -> Box<RawValue> {
    RawValue::from_string("null".to_owned()).expect("`null` is valid JSON")
}

/// The task envelope. See the [module docs](self) for its wire form.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskMessage {
    /// Wire version.
    #[serde(default = "wire_version")]
    pub v: u32,
    /// Task id.
    pub id: TaskId,
    /// Task name.
    pub name: String,
    /// Handler arguments, as raw JSON.
    #[serde(default = "empty_args")]
    pub args: Box<RawValue>,
    /// Queue name.
    pub queue: String,
    /// Failed attempts so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retried: u32,
    /// Retries allowed after the first attempt.
    #[serde(default = "default_max_retry")]
    pub max_retry: u32,
    /// Per-attempt timeout.
    #[serde(
        default,
        rename = "timeout_ms",
        with = "crate::time::opt_duration_ms",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// The task must not start after this time.
    #[serde(default, with = "crate::time::opt_millis", skip_serializing_if = "Option::is_none")]
    pub deadline: Option<SystemTime>,
    /// Earliest time the task may run.
    #[serde(default, with = "crate::time::opt_millis", skip_serializing_if = "Option::is_none")]
    pub eta: Option<SystemTime>,
    /// Unique-task key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_key: Option<String>,
    /// How long the unique lock lasts at most.
    #[serde(
        default,
        rename = "unique_ttl_ms",
        with = "crate::time::opt_duration_ms",
        skip_serializing_if = "Option::is_none"
    )]
    pub unique_ttl: Option<Duration>,
    /// When the unique lock is released.
    #[serde(default, skip_serializing_if = "UniqueRelease::is_default")]
    pub unique_release: UniqueRelease,
    /// Priority, 0 (default) to [`MAX_PRIORITY`].
    #[serde(default, skip_serializing_if = "is_zero_u8")]
    pub priority: u8,
    /// How long to keep the result after completion.
    #[serde(
        default,
        rename = "retention_ms",
        with = "crate::time::opt_duration_ms",
        skip_serializing_if = "Option::is_none"
    )]
    pub retention: Option<Duration>,
    /// String metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// When the task was first enqueued.
    #[serde(with = "crate::time::millis")]
    pub created_at: SystemTime,
    /// Error of the last failed attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Reserved for workflows (chain, group, chord, callbacks); opaque to brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<Box<RawValue>>,
}

impl TaskMessage {
    /// A new task with a random id, on the default queue, with default options.
    pub fn new(name: impl Into<String>, args: Box<RawValue>) -> Self {
        TaskMessage {
            v: WIRE_VERSION,
            id: TaskId::random(),
            name: name.into(),
            args,
            queue: DEFAULT_QUEUE.to_owned(),
            retried: 0,
            max_retry: DEFAULT_MAX_RETRY,
            timeout: None,
            deadline: None,
            eta: None,
            unique_key: None,
            unique_ttl: None,
            unique_release: UniqueRelease::OnSuccess,
            priority: 0,
            retention: None,
            headers: BTreeMap::new(),
            created_at: SystemTime::now(),
            last_error: None,
            workflow: None,
        }
    }

    /// A new task whose arguments are serialized from `args`.
    pub fn with_args<A: Serialize + ?Sized>(name: impl Into<String>, args: &A) -> Result<Self> {
        let raw =
            serde_json::value::to_raw_value(args).map_err(|source| Error::Encode { what: "task arguments", source })?;
        Ok(Self::new(name, raw))
    }

    /// Encodes the wire form.
    pub fn encode(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|source| Error::Encode { what: "task", source })
    }

    /// The length of the wire form in bytes, without allocating it.
    pub fn encoded_len(&self) -> usize {
        struct Counter(usize);
        impl std::io::Write for Counter {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0 += buf.len();
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut c = Counter(0);
        // Serializing plain data into a counter cannot fail.
        let _ = serde_json::to_writer(&mut c, self);
        c.0
    }

    /// Decodes the wire form, rejecting unknown (newer) versions.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let msg: TaskMessage =
            serde_json::from_slice(bytes).map_err(|source| Error::Decode { what: "task payload", source })?;
        if msg.v > WIRE_VERSION {
            return Err(Error::UnsupportedVersion { found: msg.v, max: WIRE_VERSION });
        }
        if msg.name.is_empty() {
            return Err(Error::InvalidPayload("the task name is empty".into()));
        }
        Ok(msg)
    }

    /// Decodes the arguments into `T`.
    pub fn args_as<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(self.args.get()).map_err(|source| Error::Decode { what: "task arguments", source })
    }

    /// Checks the options a producer set: a valid queue name (see [`check_queue_name`]), a
    /// non-empty id, a priority up to [`MAX_PRIORITY`], retries up to [`MAX_RETRY_LIMIT`], a
    /// timeout, unique TTL and retention that can work. The client runs it before anything is
    /// stored, so a task that could never run right is refused at once, with a typed error.
    pub fn check_options(&self) -> Result<()> {
        check_queue_name(&self.queue)?;
        let bad = |option: &'static str, reason: String| Err(Error::InvalidOption { option, reason });
        if self.id.as_str().is_empty() {
            return bad("task_id", "a task id must not be empty".into());
        }
        if self.priority > MAX_PRIORITY {
            return bad("priority", format!("priority {} is over the maximum {MAX_PRIORITY}", self.priority));
        }
        if self.max_retry > MAX_RETRY_LIMIT {
            return bad("max_retry", format!("{} retries is over the limit of {MAX_RETRY_LIMIT}", self.max_retry));
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return bad("timeout", "a zero timeout would fail every attempt at once".into());
        }
        if self.unique_ttl.is_some_and(|t| t.is_zero()) {
            return bad("unique", "a unique lock of zero length holds nothing".into());
        }
        Ok(())
    }

    /// True when the task has used all its attempts.
    pub fn retries_exhausted(&self) -> bool {
        self.retried >= self.max_retry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_omits_unset_fields() {
        let mut t = TaskMessage::with_args("add", &(1, 2)).unwrap();
        t.timeout = Some(Duration::from_millis(1500));
        let bytes = t.encode().unwrap();
        assert_eq!(bytes.len(), t.encoded_len());
        let s = String::from_utf8(bytes.clone()).unwrap();
        assert!(s.contains(r#""timeout_ms":1500"#), "{s}");
        assert!(!s.contains("deadline"), "{s}");
        let back = TaskMessage::decode(&bytes).unwrap();
        assert_eq!(back.id, t.id);
        assert_eq!(back.args.get(), "[1,2]");
        assert_eq!(back.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(back.max_retry, DEFAULT_MAX_RETRY);
    }

    #[test]
    fn rejects_newer_versions_and_garbage() {
        let err = TaskMessage::decode(br#"{"v":2,"id":"a","name":"x","queue":"q","created_at":0}"#).unwrap_err();
        assert!(matches!(err, Error::UnsupportedVersion { found: 2, .. }), "{err}");
        let err = TaskMessage::decode(b"not json").unwrap_err();
        assert!(matches!(err, Error::Decode { .. }), "{err}");
        assert!(err.to_string().contains("task payload"));
    }
}
