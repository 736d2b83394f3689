//! The error type of every Conveyor operation.

use std::time::Duration;

/// A boxed error from a driver (Redis, lapin, the AWS SDK, ...), kept opaque so that
/// driver types never appear in Conveyor's public API.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong when enqueuing, running or inspecting tasks.
///
/// The enum is `#[non_exhaustive]`: match the variants you act on and keep a `_` arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A workflow is malformed (an empty chain or group, a task id used twice). Nothing was
    /// published.
    #[error("invalid workflow: {0}")]
    InvalidWorkflow(String),

    /// A broker or backend URL could not be parsed or has a bad parameter.
    #[error("invalid URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL as given (credentials are not redacted by Conveyor: avoid logging it).
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The URL's scheme names no broker or backend Conveyor knows.
    #[error("unknown {kind} scheme `{scheme}://` (known: {known})")]
    UnknownScheme {
        /// `"broker"` or `"backend"`.
        kind: &'static str,
        /// The scheme found in the URL.
        scheme: String,
        /// The schemes this build knows, for the message.
        known: &'static str,
    },

    /// The URL names a broker or backend whose Cargo feature was not compiled in.
    #[error("the `{scheme}://` {kind} needs the `{feature}` feature of the `conveyor` crate")]
    FeatureNotEnabled {
        /// `"broker"` or `"backend"`.
        kind: &'static str,
        /// The scheme found in the URL.
        scheme: String,
        /// The Cargo feature to enable.
        feature: &'static str,
    },

    /// A cron expression could not be parsed. Nothing was registered.
    #[error("invalid cron expression `{expr}`: {reason}")]
    InvalidSchedule {
        /// The expression as given.
        expr: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A time zone is not `UTC`, a fixed offset (`+02:00`) or an IANA name (`Europe/Paris`,
    /// with the `tz` feature).
    #[error("invalid time zone `{name}`: {reason}")]
    InvalidTimeZone {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Any other configuration problem (a bad option value, a conflicting setting).
    #[error("configuration error: {0}")]
    Config(String),

    /// A queue name that not every broker could keep apart from the others (see
    /// [`check_queue_name`](crate::task::check_queue_name)).
    #[error("invalid queue name `{name}`: {reason}")]
    InvalidQueueName {
        /// The name.
        name: String,
        /// The rule it breaks.
        reason: &'static str,
    },

    /// A task or worker option with a value that cannot work (a zero timeout or lease, more
    /// retries than a task could ever use).
    #[error("invalid value for `{option}`: {reason}")]
    InvalidOption {
        /// The option, as its builder method is called.
        option: &'static str,
        /// Why the value cannot work.
        reason: String,
    },

    /// The encoded task is larger than the client's or broker's payload limit.
    /// Nothing was published.
    #[error("task payload is {size} bytes, over the limit of {limit} bytes")]
    PayloadTooLarge {
        /// Encoded size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },

    /// A task with this id already exists (pending, running or retained). Nothing was published.
    #[error("a task with id `{id}` already exists")]
    DuplicateTask {
        /// The conflicting id.
        id: String,
    },

    /// A unique task's lock is held by another task. Nothing was published.
    #[error("duplicate of unique task `{holder}` (unique key `{key}`)")]
    DuplicateUnique {
        /// The unique key.
        key: String,
        /// The id of the task that holds the lock.
        holder: String,
    },

    /// Encoding arguments or a result to JSON failed.
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },

    /// Decoding a payload, arguments or a result from JSON failed.
    #[error("cannot decode {what}: {source}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },

    /// A payload that decodes but is not a task (an empty task name, say): what is wrong.
    #[error("invalid task payload: {0}")]
    InvalidPayload(String),

    /// The task's wire format version is newer than this build understands.
    #[error("unsupported task wire format version {found} (this build reads up to {max})")]
    UnsupportedVersion {
        /// The version the payload has.
        found: u32,
        /// The newest version this build reads.
        max: u32,
    },

    /// The broker failed (connection lost, protocol error, rejected publish, ...).
    #[error("broker error: {0}")]
    Broker(#[source] BoxError),

    /// The result backend failed.
    #[error("result backend error: {0}")]
    Backend(#[source] BoxError),

    /// No task with this id is known to the result backend (never enqueued, or its record expired).
    #[error("no task with id `{id}`")]
    NotFound {
        /// The id looked up.
        id: String,
    },

    /// The broker holds nothing for this queue (no task, archive or pause flag).
    #[error("no queue named `{queue}`")]
    UnknownQueue {
        /// The name looked up.
        queue: String,
    },

    /// An operator's action that does not apply to the task in its state (running a task that
    /// is running, deleting an active one). Nothing changed.
    #[error("cannot {action} task `{id}`: it is {state}")]
    InvalidTaskState {
        /// The task id (`*` for an action on every task of a state).
        id: String,
        /// The state it is in.
        state: crate::task::TaskState,
        /// The action refused (`run`, `archive`, `delete`).
        action: &'static str,
    },

    /// The broker (or result backend) cannot do this (see the capability table in
    /// `docs/operations.md`).
    #[error("{broker} cannot {operation}")]
    Unsupported {
        /// Who: `the amqp broker`, `this result backend`, ...
        broker: &'static str,
        /// What was asked.
        operation: &'static str,
    },

    /// Waiting for a task's result took longer than the given timeout.
    #[error("timed out after {0:?} waiting for the task")]
    Timeout(Duration),

    /// The broker no longer holds this delivery for the caller: its lease expired and the task
    /// was (or will be) delivered again. Settling it again is a no-op.
    #[error("the delivery's lease was lost (the task is delivered again)")]
    LeaseLost,

    /// The task ended archived (failed for good); its last error is attached.
    #[error("task `{id}` failed: {error}")]
    TaskFailed {
        /// The task id.
        id: String,
        /// The task's last error.
        error: String,
    },
}

impl Error {
    /// An [`Error::InvalidUrl`] for `url`, its password redacted (see
    /// [`redact_url`](crate::redact_url)): build it so, never from the raw URL.
    pub fn invalid_url(url: &str, reason: impl Into<String>) -> Self {
        Error::InvalidUrl { url: crate::redact_url(url), reason: reason.into() }
    }

    /// Wraps a driver error as a broker error.
    pub fn broker(e: impl Into<BoxError>) -> Self {
        Error::Broker(e.into())
    }

    /// A broker error of a known kind, keeping the driver's error as its source.
    pub fn broker_failure(kind: FailureKind, source: impl Into<BoxError>) -> Self {
        Error::Broker(Box::new(DriverError { kind, source: source.into() }))
    }

    /// A backend error of a known kind, keeping the driver's error as its source.
    pub fn backend_failure(kind: FailureKind, source: impl Into<BoxError>) -> Self {
        Error::Backend(Box::new(DriverError { kind, source: source.into() }))
    }

    /// The kind of a broker or backend error its driver classified; `None` for other errors,
    /// and for broker and backend errors no driver classified.
    pub fn failure_kind(&self) -> Option<FailureKind> {
        match self {
            Error::Broker(e) | Error::Backend(e) => e.downcast_ref::<DriverError>().map(|d| d.kind),
            _ => None,
        }
    }

    /// Wraps a driver error as a backend error.
    pub fn backend(e: impl Into<BoxError>) -> Self {
        Error::Backend(e.into())
    }

    /// True for [`Error::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout(_))
    }

    /// True for the two duplicate errors ([`Error::DuplicateTask`], [`Error::DuplicateUnique`]).
    pub fn is_duplicate(&self) -> bool {
        matches!(self, Error::DuplicateTask { .. } | Error::DuplicateUnique { .. })
    }

    /// True for [`Error::LeaseLost`].
    pub fn is_lease_lost(&self) -> bool {
        matches!(self, Error::LeaseLost)
    }

    /// True if a failed enqueue may have left the task with the broker: the broker failed
    /// while it was being asked (its answer may have been lost), rather than the input being
    /// refused or the result backend failing before anything was published. Retry such an
    /// enqueue with the **same task id**: the retry enqueues it, or answers
    /// [`Error::DuplicateTask`] if it is queued already. False errors mean nothing was stored.
    pub fn may_have_been_stored(&self) -> bool {
        matches!(self, Error::Broker(_) | Error::Timeout(_))
    }

    /// True when trying again can help: a broker or backend error of a transient
    /// [`FailureKind`] (connection, timeout, unavailable), or one no driver classified. A
    /// refused request or a protocol error is not retried (the worker used to retry
    /// "unexpected answer from the claim script" for 10 s, like a dropped connection).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Broker(_) | Error::Backend(_) => self.failure_kind().is_none_or(FailureKind::is_transient),
            _ => false,
        }
    }
}

/// What kind of failure a broker or backend error is: what decides whether trying again can
/// help. Drivers classify their errors into these ([`Error::failure_kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// The server could not be reached, or the connection dropped: worth trying again.
    Connection,
    /// The server did not answer in time: worth trying again.
    Timeout,
    /// The server answered that it cannot serve now (loading its data, a failover, throttling):
    /// worth trying again after a pause.
    Unavailable,
    /// The server refused the request for good (a wrong key type, a script error, bad
    /// credentials, an unroutable message): trying again cannot help.
    Rejected,
    /// The answer was not what the protocol or the request expects: trying again cannot help.
    Protocol,
}

impl FailureKind {
    /// The kind a driver's error is, from what the driver can tell of it, in this order:
    /// it timed out; the connection failed; the answer did not parse; the driver says
    /// retrying cannot help (else the server is only unavailable for now).
    pub fn from_signals(timeout: bool, connection: bool, unparsable: bool, permanent: bool) -> Self {
        match (timeout, connection, unparsable, permanent) {
            (true, ..) => FailureKind::Timeout,
            (_, true, ..) => FailureKind::Connection,
            (_, _, true, _) => FailureKind::Protocol,
            (_, _, _, true) => FailureKind::Rejected,
            _ => FailureKind::Unavailable,
        }
    }

    /// True for the kinds that trying again can mend.
    pub fn is_transient(self) -> bool {
        matches!(self, FailureKind::Connection | FailureKind::Timeout | FailureKind::Unavailable)
    }
}

/// A driver's error with its [`FailureKind`], inside [`Error::Broker`] or [`Error::Backend`].
/// Shows as the driver's error, which stays reachable as its source.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct DriverError {
    /// What kind of failure it is.
    pub kind: FailureKind,
    /// The driver's own error.
    #[source]
    pub source: BoxError,
}

/// `Result<T, conveyor::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
