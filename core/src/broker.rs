//! The [`Broker`] trait: where tasks wait until a worker runs them.
//!
//! A broker moves tasks; it does not record results (that is the
//! [`ResultBackend`](crate::ResultBackend)'s job). The required trait is small; what not every
//! broker can do lives in capability traits ([`QueueAdmin`], [`RawPublish`]) reached through
//! accessor methods that return `None` by default.
//!
//! Every method's doc says what the Redis, RabbitMQ and SQS brokers do for it.
//!
//! ## Guarantees every broker gives
//! - `publish` returns only once the broker holds the task durably (Redis reply, AMQP publisher
//!   confirm, SQS 200).
//! - Delivery is at least once: a received task stays owned by the receiver under a lease until
//!   it is acked, retried, archived or released. If the lease expires (the worker died), the
//!   broker delivers it again and counts the lost lease in [`Delivery::lost_leases`]; the
//!   worker counts each as a failed attempt, so a task that kills its worker cannot loop forever.
//! - Delayed tasks (`eta`, retry delays) wait inside the broker, never in a worker's memory, and
//!   are never delivered before they are due.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::task::TaskMessage;

/// An opaque handle a broker attaches to a delivery to recognise it later (a Redis lease token,
/// an AMQP delivery tag, an SQS receipt handle). Cheap to clone.
#[derive(Clone)]
pub struct Receipt(Arc<dyn Any + Send + Sync>);

impl Receipt {
    /// Wraps a broker's own handle type.
    pub fn new<T: Any + Send + Sync>(handle: T) -> Self {
        Receipt(Arc::new(handle))
    }

    /// The broker's handle, if it is of type `T`.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }
}

impl fmt::Debug for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Receipt(..)")
    }
}

/// The body of a delivery: a decoded task, or the raw bytes that did not decode.
#[derive(Debug, Clone)]
pub enum Payload {
    /// A task that decoded.
    Task(Arc<TaskMessage>),
    /// Bytes that are not a task; the worker archives them with `error` as the reason.
    Undecodable {
        /// The raw bytes (possibly truncated by the broker for very large bodies).
        raw: Vec<u8>,
        /// Why decoding failed.
        error: String,
    },
}

impl Payload {
    /// Decodes a message body no larger than `limit` bytes: a larger one is not parsed at all
    /// (a foreign producer's 100 MB entry must cost the worker nothing but its archiving), and
    /// becomes `Undecodable` with its first KiB and a reason starting `payload too large`.
    pub fn decode_within(mut bytes: Vec<u8>, limit: usize) -> Self {
        if bytes.len() <= limit {
            return Self::decode(bytes);
        }
        let size = bytes.len();
        bytes.truncate(1024);
        bytes.shrink_to_fit();
        Self::too_large(bytes, size, limit)
    }

    /// A body of `size` bytes, over `limit`, of which `head` is kept: archived unparsed with
    /// the reason `payload too large`.
    pub fn too_large(head: Vec<u8>, size: usize, limit: usize) -> Self {
        let error = format!(
            "payload too large: {size} bytes, over the worker's limit of {limit} bytes (WorkerBuilder::max_payload)"
        );
        Payload::Undecodable { raw: head, error }
    }

    /// Decodes a message body: a task, or the bytes with why they are not one.
    pub fn decode(bytes: Vec<u8>) -> Self {
        match TaskMessage::decode(&bytes) {
            Ok(t) => Payload::Task(Arc::new(t)),
            Err(e) => Payload::Undecodable { error: e.to_string(), raw: bytes },
        }
    }
}

/// A task handed to a receiver, owned by it under a lease until acked, retried, archived or
/// released.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The broker's handle for this delivery.
    pub receipt: Receipt,
    /// The queue it came from.
    pub queue: Arc<str>,
    /// The task (or the bytes that are not one).
    pub payload: Payload,
    /// True if the broker delivered this task before (after a lost lease or a hand-back).
    pub redelivered: bool,
    /// How many times a receiver's lease on this task expired since it was last published
    /// (its worker died). The worker counts each as a failed attempt, so brokers that cannot
    /// rewrite a message on redelivery (RabbitMQ, SQS) report it here instead, from a delivery
    /// count (`x-delivery-count`, `ApproximateReceiveCount`) where they have one.
    pub lost_leases: u32,
    /// True if this is the first delivery of a copy the broker published before it settled the
    /// original (a retry, a delay hop, a hand-back: brokers that cannot do both in one atomic
    /// step, as RabbitMQ and SQS cannot). A crash between the two leaves both, and the original
    /// runs again; so the worker looks up such a copy's record first and acks it unrun if its
    /// attempt was settled meanwhile (completed, retried or archived) or a later one started.
    pub copy: bool,
}

impl Delivery {
    /// The task, if the payload decoded.
    pub fn task(&self) -> Option<&Arc<TaskMessage>> {
        match &self.payload {
            Payload::Task(t) => Some(t),
            Payload::Undecodable { .. } => None,
        }
    }
}

/// What [`Broker::receive`] is asked for.
#[derive(Debug, Clone)]
pub struct ReceiveRequest<'a> {
    /// Queues to take from, in order of preference: the broker takes from the first queue that
    /// has a ready task, then the next. The worker reorders them per call to implement weighted
    /// or strict priorities.
    pub queues: &'a [&'a str],
    /// Most tasks to return.
    pub max: usize,
    /// How long to wait for a first task before returning an empty batch.
    pub wait: Duration,
    /// How long the receiver owns each task before the broker may deliver it again.
    pub lease: Duration,
    /// The largest body to decode: a larger one is delivered as
    /// [`Payload::decode_within`] makes it, unparsed, for the worker to archive.
    pub max_payload: usize,
    /// Cancelled when the receiver is shutting down: stop waiting and return promptly with
    /// what has been claimed so far (possibly nothing). The worker never drops a `receive`
    /// future mid-call, so a broker need not make its claim step cancel-safe; it hands back
    /// whatever a receive returns after this fired.
    pub stop: &'a CancellationToken,
}

/// Counts for one queue. Brokers that cannot count something exactly report an estimate and
/// say so in their docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueStats {
    /// Queue name.
    pub queue: String,
    /// Tasks ready to run.
    pub pending: u64,
    /// Tasks waiting for their `eta` or retry delay.
    pub scheduled: u64,
    /// Tasks received and not yet acked, retried, archived or released.
    pub active: u64,
    /// Tasks in the archive (dead letters).
    pub archived: u64,
    /// Of `scheduled`, the tasks waiting to be retried after a failed attempt (0 where the
    /// broker cannot tell them apart).
    pub retry: u64,
    /// Whether the queue is paused.
    pub paused: bool,
    /// How long the oldest pending task has waited, where the broker can tell.
    pub latency: Option<Duration>,
    /// Completed tasks whose records the result backend keeps (within their retention);
    /// filled in by the [`Inspector`](crate::inspect::Inspector), `None` where the backend
    /// keeps no index of them.
    pub completed: Option<u64>,
}

/// An archived (dead-lettered) task, with why it was archived.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ArchivedTask {
    /// The task, or the raw bytes that did not decode.
    pub payload: Payload,
    /// The reason given when it was archived.
    pub reason: String,
    /// When it was archived.
    pub archived_at: SystemTime,
}

impl ArchivedTask {
    /// An archive entry.
    pub fn new(payload: Payload, reason: String, archived_at: SystemTime) -> Self {
        ArchivedTask { payload, reason, archived_at }
    }
}

/// A message broker: holds tasks until workers run them.
///
/// Implementations are used as `Arc<dyn Broker>`. See the [module docs](self) for the
/// guarantees every implementation gives.
#[async_trait]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a Conveyor broker",
    note = "implement `conveyor::Broker` for it (see the memory broker for a complete example)"
)]
pub trait Broker: Send + Sync + 'static {
    /// A short name for logs and metrics: `"memory"`, `"redis"`, `"amqp"`, `"sqs"`.
    fn kind(&self) -> &'static str;

    /// Where this broker keeps its tasks, for the worker's start line and operators: server,
    /// namespace, with any password redacted. The default is [`kind`](Self::kind).
    fn describe(&self) -> String {
        self.kind().to_owned()
    }

    /// Stores `task` in its queue (or, when `task.eta` is in the future, until it is due) and
    /// returns once the broker holds it.
    ///
    /// - Redis: one Lua script (`XADD` to the priority's stream, or `ZADD` to the scheduled set).
    /// - RabbitMQ: persistent publish; awaits the publisher confirm (a nack is an error). A
    ///   delay goes to a TTL bucket queue that dead-letters into the target queue.
    /// - SQS: `SendMessage` with `DelaySeconds` (≤ 15 min); longer delays hop.
    async fn publish(&self, task: &TaskMessage) -> Result<()>;

    /// Publishes several tasks and says, task by task, which the broker now holds (a batch can
    /// fail part-way). The default publishes them one by one.
    ///
    /// - Redis: one pipeline. RabbitMQ: confirms awaited together. SQS: `SendMessageBatch` (10).
    async fn publish_many(&self, tasks: &[TaskMessage]) -> Vec<Result<()>> {
        let mut out = Vec::with_capacity(tasks.len());
        for t in tasks {
            out.push(self.publish(t).await);
        }
        out
    }

    /// Takes up to `req.max` ready tasks, trying `req.queues` in order, waiting up to
    /// `req.wait` for the first one. Each task is leased to the caller for `req.lease`.
    /// Paused queues are skipped.
    ///
    /// - Redis: `XREADGROUP` leases them (the group's pending list, where their idle time is the
    ///   lease), behind a Lua script that does the claim's upkeep (or reads itself, for a queue
    ///   with several streams); blocking wake-up via a notification list.
    /// - RabbitMQ: consumers with prefetch; the lease is the unacked state (no deadline).
    /// - SQS: `ReceiveMessage` (long poll, up to 10) with `VisibilityTimeout = lease`.
    async fn receive(&self, req: &ReceiveRequest<'_>) -> Result<Vec<Delivery>>;

    /// The task ran to completion: forget it.
    ///
    /// This and the other settling calls (`retry`, `archive`, `release`) return
    /// [`Error::LeaseLost`](crate::Error::LeaseLost) when the broker no longer holds the delivery for the caller.
    ///
    /// - Redis: script, `XACK`, then the stream's head is trimmed. RabbitMQ: `basic.ack`. SQS:
    ///   `DeleteMessage`.
    async fn ack(&self, delivery: &Delivery) -> Result<()>;

    /// The attempt failed: store `task` (the updated envelope: `retried`, `last_error`) to run
    /// again after `delay`, and drop `delivery`, as one step where the broker allows.
    ///
    /// - Redis: script acks the entry and `ZADD`s the task to the scheduled set.
    /// - RabbitMQ: publish to a delay bucket (confirmed), then ack the original.
    /// - SQS: send the new envelope with a delay, then delete the original.
    async fn retry(&self, delivery: &Delivery, task: &TaskMessage, delay: Duration) -> Result<()>;

    /// Moves the delivery to the queue's archive (dead letters) with `reason`.
    ///
    /// - Redis: script acks the entry and moves the task to the archive sorted set with the reason.
    /// - RabbitMQ: publish to the queue's archive queue with an `x-conveyor-reason` header, ack.
    /// - SQS: send to the archive queue with a `reason` attribute, delete the original.
    async fn archive(&self, delivery: &Delivery, reason: &str) -> Result<()>;

    /// Hands an unfinished delivery back, ready again at once, without using an attempt
    /// (graceful shutdown).
    ///
    /// - Redis: script acks the entry and re-adds the task to its priority's hand-back stream,
    ///   read first.
    /// - RabbitMQ: `basic.nack` with requeue. SQS: `ChangeMessageVisibility` to 0.
    async fn release(&self, delivery: &Delivery) -> Result<()>;

    /// Extends the leases of running deliveries to `lease` from now (the worker's heartbeat),
    /// and returns the positions in `receipts` of the deliveries whose lease is **lost**: the
    /// broker may have delivered the task to another receiver, so the caller must stop running
    /// it and write nothing for it (its outcome belongs to the new delivery). A lease that ran
    /// out but whose task nobody took meanwhile may be extended again, and is not lost.
    ///
    /// An `Err` means the broker could not be asked (it says nothing about the leases).
    ///
    /// - Redis: `XCLAIM … JUSTID` (resets the idle time); an entry no longer pending (its lost
    ///   lease was re-queued as a new entry) is lost.
    /// - RabbitMQ: the lease is kept by this client (unacked messages stay owned while the
    ///   channel lives); one already returned to the queue, or of a closed connection, is lost.
    /// - SQS: `ChangeMessageVisibilityBatch`; a message whose visibility timeout ran out before
    ///   the extension (it may be received again at any moment), or whose receipt handle SQS
    ///   refuses, is lost.
    async fn extend_leases(&self, receipts: &[Receipt], lease: Duration) -> Result<Vec<usize>>;

    /// Counts for one queue.
    ///
    /// - Redis: `XINFO GROUPS` (pending, lag)/`ZCARD`. RabbitMQ: passive declare (pending only, others estimated).
    /// - SQS: `GetQueueAttributes` (approximate).
    async fn stats(&self, queue: &str) -> Result<QueueStats>;

    /// Pause/resume and archive inspection, if this broker offers them.
    fn admin(&self) -> Option<&dyn QueueAdmin> {
        None
    }

    /// Publishing raw bytes (operations tools and tests), if this broker offers it.
    fn raw(&self) -> Option<&dyn RawPublish> {
        None
    }

    /// Listing queues and tasks and acting on them (see [`crate::inspect`]), if this broker
    /// offers it.
    fn inspect(&self) -> Option<&dyn crate::inspect::BrokerInspect> {
        None
    }
}

/// Queue administration: pause and resume, inspect the archive.
#[async_trait]
pub trait QueueAdmin: Send + Sync {
    /// Stops `receive` from taking tasks of `queue`; publishing still works.
    async fn pause(&self, queue: &str) -> Result<()>;
    /// Undoes [`QueueAdmin::pause`].
    async fn resume(&self, queue: &str) -> Result<()>;
    /// Up to `limit` archived tasks of `queue`, newest first, after the first `offset`.
    async fn archived(&self, queue: &str, offset: usize, limit: usize) -> Result<Vec<ArchivedTask>>;
}

/// Publishing raw bytes as if they were a task: used by tools and by the conformance suite to
/// check that undecodable payloads are archived, never retried forever.
#[async_trait]
pub trait RawPublish: Send + Sync {
    /// Stores `bytes` in `queue` as one message.
    async fn publish_raw(&self, queue: &str, bytes: Vec<u8>) -> Result<()>;
}

/// For brokers that keep pause flags of their own: hands back (with [`Broker::release`]) the
/// deliveries in `got` whose queue `is_paused` now (paused while they were on their way, in a
/// pull or a long poll), so that they are not run, and returns the others.
pub async fn hand_back_paused<B: Broker + ?Sized>(
    broker: &B,
    got: Vec<Delivery>,
    is_paused: impl Fn(&str) -> bool,
) -> Vec<Delivery> {
    if !got.iter().any(|d| is_paused(&d.queue)) {
        return got;
    }
    let mut keep = Vec::with_capacity(got.len());
    for d in got {
        if !is_paused(&d.queue) {
            keep.push(d);
        } else if let Err(e) = broker.release(&d).await {
            tracing::warn!(queue = %d.queue, error = %e, "could not hand back a task read as its queue paused");
        }
    }
    keep
}
