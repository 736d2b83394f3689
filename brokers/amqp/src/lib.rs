//! The RabbitMQ (AMQP 0.9.1) broker of [Conveyor](https://crates.io/crates/conveyor), on lapin.
//!
//! - **Durable and confirmed**: each Conveyor queue is a durable *quorum* queue; messages are
//!   persistent, and `publish` returns only after RabbitMQ's publisher confirm (a nack, or an
//!   unroutable message, is an error).
//! - **Late acks**: a task is acked only after its handler finished (or it was retried,
//!   archived or handed back). A worker that dies leaves it unacked; RabbitMQ delivers it
//!   again, and the quorum queue's `x-delivery-count` counts the lost lease as an attempt, so a
//!   task that kills its worker cannot loop forever.
//! - **Leases** are also enforced by this client: a delivery neither settled nor extended within
//!   its lease is returned to the queue (a receiver that disappears inside a live process loses
//!   its tasks as it would by dying). A late ack of such a delivery is refused locally
//!   (`LeaseLost`), never sent (an unknown delivery tag would close the channel).
//! - **Delays without plugins**: a delayed task waits in delay buckets — quorum queues with a
//!   message TTL of 100 ms × 4^k that dead-letter `at-least-once` into the main queue (RabbitMQ
//!   ≥ 3.10) — hopping from the longest
//!   bucket not longer than the remaining delay, with its due time in a header; a task that
//!   arrives before it is due hops again. Never early; late by at most one bucket's rounding
//!   (under 100 ms for short delays, a quarter of the delay at most in general, usually much
//!   less). A hop is a new, confirmed publish: nothing waits in a worker.
//! - **Copies**: a retry, hop or hand-back publishes a copy marked `x-conveyor-copy`, then
//!   acks the original; a copy whose attempt another delivery settled is not run again.
//! - **Archive**: a quorum queue per Conveyor queue, with the reason in the `x-conveyor-reason` header.
//! - **Prefetch** (`basic.qos`) per queue consumer: the worker's free slots at first receive, or
//!   `?prefetch=N`.
//! - **Reconnects**: a lost connection is re-opened on the next call; consumers are subscribed
//!   again; publishing during the outage returns an error.
//! - Per-task priority is not supported (quorum queues); pause/resume is per process; the
//!   `active` count is this process's unsettled deliveries.
//! - Long tasks: RabbitMQ closes a channel whose delivery stays unacked longer than its
//!   `consumer_timeout` (30 min by default; `scripts/rabbitmq` sets 1 h); the tasks are then
//!   delivered again with a lost lease counted. Raise it for tasks that run longer.
//!
//! URL: `amqp://user:pass@host:port/vhost?prefix=NAME&prefetch=N` (vhost `/` is `%2f`).

mod admin;
mod config;
mod consume;
mod failure;
mod headers;
mod inspect;
mod link;
mod receive;
mod topology;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use conveyor_core::{
    time, Broker, Delivery, Error, FailureKind, Payload, QueueAdmin, QueueStats, RawPublish, Receipt, ReceiveRequest,
    Result, TaskMessage,
};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions, BasicRejectOptions,
};
use lapin::types::FieldTable;
use lapin::{Acker, BasicProperties, Channel, Confirmation, Connection};
use tokio::sync::Notify;
use tokio::time::Instant;

pub use config::AmqpConfig;
use topology::Names;

use failure::err;

fn now_ms() -> i64 {
    time::to_millis(SystemTime::now()) as i64
}

/// The RabbitMQ broker. Cheap to clone.
#[derive(Clone)]
pub struct AmqpBroker {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: AmqpConfig,
    link: tokio::sync::Mutex<Option<Link>>,
    /// When the last reconnect failed, and why: callers that waited for it get its answer
    /// rather than each trying again for up to 10 s in turn.
    failed: Mutex<Option<(Instant, FailureKind, String)>>,
    /// A call on the connection went unanswered (see [`AmqpBroker::bounded`]): the next call
    /// opens a new one.
    stale: std::sync::atomic::AtomicBool,
    state: Mutex<State>,
    notify: Notify,
}

/// One connection and its publishing channel (in confirm mode).
struct Link {
    conn: Connection,
    publish: Channel,
    /// For `basic.get` (pulls that keep queue priorities exact).
    get: Channel,
    /// For declarations: one that fails closes this channel only, never the publishing or
    /// consuming ones (which would return every task in flight to its queue).
    declare: Channel,
    gen: u64,
    declared: HashSet<String>,
}

#[derive(Default)]
struct State {
    /// Generation of the current connection; deliveries of older ones are void.
    gen: u64,
    /// Received, not yet handed out.
    buffers: HashMap<String, VecDeque<Incoming>>,
    /// Queues with a live consumer, and the generation it belongs to.
    consumers: HashMap<String, u64>,
    /// Handed out and not settled.
    leases: HashMap<u64, Lease>,
    next_lease: u64,
    /// Per queue: settled consumer deliveries whose freed prefetch slot RabbitMQ has not yet
    /// refilled (a push may be on its way).
    owed: HashMap<String, u32>,
    paused: HashSet<String>,
    /// Queues this process added to the registry (see `inspect.rs`).
    registered: HashSet<String>,
}

struct Incoming {
    delivery: lapin::message::Delivery,
    gen: u64,
    /// Pushed to a consumer (as opposed to pulled with `basic.get`).
    pushed: bool,
}

struct Lease {
    acker: Acker,
    pushed: bool,
    queue: String,
    data: Arc<Vec<u8>>,
    until: Instant,
}

struct AmqpReceipt {
    lease: u64,
}

impl AmqpBroker {
    /// Connects to the server an `amqp://` URL names.
    pub async fn connect(url: &str) -> Result<Self> {
        let b = AmqpBroker {
            inner: Arc::new(Inner {
                cfg: AmqpConfig::from_url(url)?,
                link: tokio::sync::Mutex::new(None),
                failed: Mutex::default(),
                stale: Default::default(),
                state: Mutex::default(),
                notify: Notify::new(),
            }),
        };
        b.link().await?;
        tokio::spawn(consume::sweep_leases(Arc::downgrade(&b.inner)));
        Ok(b)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `host:port` of the server, for errors.
    fn target(&self) -> String {
        conveyor_core::url_target(&self.inner.cfg.url)
    }

    fn names(&self, queue: &str) -> Names {
        Names::new(&self.inner.cfg.prefix, queue)
    }

    /// Publishes and waits for the broker's confirm.
    async fn publish_to(&self, ch: &Channel, routing: &str, body: &[u8], props: BasicProperties) -> Result<()> {
        let opts = BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() };
        let confirmed = async {
            let confirm = ch.basic_publish("".into(), routing.into(), opts, body, props).await.map_err(err)?;
            confirm.await.map_err(err)
        };
        match self.bounded("a publish", confirmed).await? {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Ack(Some(_)) => Err(failure::unroutable(routing)),
            Confirmation::Nack(_) => Err(failure::nacked()),
        }
    }

    /// Publishes `body` to `queue`, through the delay buckets if `due_ms` is in the future.
    /// A `copy` (a retry, delay hop or hand-back: published before the original is acked) is
    /// marked as such, see [`Delivery::copy`].
    async fn enqueue_bytes(&self, queue: &str, body: &[u8], due_ms: Option<i64>, copy: bool) -> Result<()> {
        let ch = self.declare(queue).await?;
        let n = self.names(queue);
        let mut ints = Vec::with_capacity(2);
        if copy {
            ints.push((headers::COPY, 1));
        }
        match due_ms.filter(|d| *d > now_ms()) {
            Some(due) => {
                ints.push((headers::DUE, due));
                let bucket = topology::bucket_for(Duration::from_millis((due - now_ms()).max(0) as u64));
                self.publish_to(&ch, &n.bucket(bucket), body, headers::props(&ints, &[])).await
            }
            None => self.publish_to(&ch, &n.main, body, headers::props(&ints, &[])).await,
        }
    }

    /// Subscribes a consumer for each queue that has none on the current connection.
    async fn ensure_consumers(&self, queues: &[&str], prefetch: usize) -> Result<()> {
        for q in queues {
            let gen = self.state().gen;
            if self.state().consumers.get(*q) == Some(&gen) {
                continue;
            }
            self.declare(q).await?;
            // The declaration may have reconnected: subscribe on the connection it left.
            let gen = self.state().gen;
            if self.state().consumers.get(*q) == Some(&gen) {
                continue;
            }
            let conn_ch = {
                let link = self.inner.link.lock().await;
                match link.as_ref() {
                    Some(l) if l.gen == gen => {
                        self.bounded("a new channel", async { l.conn.create_channel().await.map_err(err) }).await?
                    }
                    _ => {
                        return Err(failure::fail(FailureKind::Connection, "the RabbitMQ connection changed; retrying"))
                    }
                }
            };
            let qos = self.inner.cfg.prefetch.unwrap_or(prefetch.clamp(1, 1000) as u16);
            let subscribe = async {
                conn_ch.basic_qos(qos, BasicQosOptions::default()).await?;
                conn_ch
                    .basic_consume(
                        self.names(q).main.as_str().into(),
                        format!("conveyor-{}", conveyor_core::TaskId::random()).as_str().into(),
                        BasicConsumeOptions::default(),
                        FieldTable::default(),
                    )
                    .await
            };
            let consumer = self.bounded("a subscription", async { subscribe.await.map_err(err) }).await?;
            self.state().consumers.insert((*q).to_owned(), gen);
            tokio::spawn(consume::consume(Arc::downgrade(&self.inner), (*q).to_owned(), gen, consumer, conn_ch));
        }
        Ok(())
    }

    /// Turns a received message into a delivery, or forwards it (a delay hop) and returns None.
    async fn admit(&self, queue: &str, inc: Incoming, lease: Duration, max_payload: usize) -> Result<Option<Delivery>> {
        let d = inc.delivery;
        if inc.gen != self.state().gen {
            return Ok(None); // its connection is gone; RabbitMQ has returned it to the queue
        }
        if let Some(due) = headers::int(&d.properties, headers::DUE).filter(|due| *due > now_ms()) {
            // Not due yet: wait in the next bucket (a confirmed publish), then ack this copy.
            if let Err(e) = self.enqueue_bytes(queue, &d.data, Some(due), true).await {
                let requeue = async { d.acker.reject(BasicRejectOptions { requeue: true }).await.map_err(err) };
                let _ = self.bounded("a reject", requeue).await;
                return Err(e);
            }
            self.bounded("an ack", async { d.acker.ack(BasicAckOptions::default()).await.map_err(err) }).await?;
            return Ok(None);
        }
        let lost =
            headers::int(&d.properties, headers::DELIVERY_COUNT).unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32;
        let copy = headers::int(&d.properties, headers::COPY).is_some() && lost == 0 && !d.redelivered;
        let payload = Payload::decode_within(d.data.clone(), max_payload);
        let mut st = self.state();
        if inc.gen != st.gen {
            return Ok(None); // its connection is gone; RabbitMQ has returned it to the queue
        }
        st.next_lease += 1;
        let id = st.next_lease;
        st.leases.insert(
            id,
            Lease {
                acker: d.acker,
                pushed: inc.pushed,
                queue: queue.to_owned(),
                data: Arc::new(d.data),
                until: Instant::now() + lease,
            },
        );
        Ok(Some(Delivery {
            receipt: Receipt::new(AmqpReceipt { lease: id }),
            queue: Arc::from(queue),
            payload,
            redelivered: lost > 0 || d.redelivered,
            lost_leases: lost,
            copy,
        }))
    }

    /// When a queue has nothing ready but owes a push (see `State::owed`), waits briefly for it,
    /// so that a lower-priority queue is not used while a higher one's message is in flight.
    async fn awaited_push(&self, queue: &str) -> Option<Incoming> {
        let deadline = Instant::now() + Duration::from_millis(20);
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.state();
                if let Some(i) = st.buffers.get_mut(queue).and_then(VecDeque::pop_front) {
                    return Some(i);
                }
                if st.owed.get(queue).copied().unwrap_or(0) == 0 {
                    return None;
                }
                if Instant::now() >= deadline {
                    // The queue was empty after all: forget the debt.
                    st.owed.remove(queue);
                    return None;
                }
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// One `basic.get` from a queue's main queue.
    async fn pull(&self, queue: &str) -> Result<Option<Incoming>> {
        let (ch, gen) = {
            let mut link = self.inner.link.lock().await;
            let l = link.as_mut().ok_or_else(|| failure::fail(FailureKind::Connection, "not connected to RabbitMQ"))?;
            if !l.get.status().connected() {
                l.get = self.bounded("a new channel", async { l.conn.create_channel().await.map_err(err) }).await?;
            }
            (l.get.clone(), l.gen)
        };
        let get = ch.basic_get(self.names(queue).main.as_str().into(), BasicGetOptions::default());
        let got = self.bounded("a basic.get", async { get.await.map_err(err) }).await?;
        Ok(got.map(|m| Incoming { delivery: m.delivery, gen, pushed: false }))
    }

    /// Removes the lease of `d`; `LeaseLost` if it expired or its connection is gone.
    fn take_lease(&self, d: &Delivery) -> Result<Lease> {
        let r = d
            .receipt
            .get::<AmqpReceipt>()
            .ok_or_else(|| failure::fail(FailureKind::Rejected, "receipt was not issued by an AMQP broker"))?;
        let mut st = self.state();
        let lease = st.leases.remove(&r.lease).ok_or(Error::LeaseLost)?;
        if lease.pushed {
            // Settling frees a prefetch slot: RabbitMQ will push the next ready message.
            *st.owed.entry(lease.queue.clone()).or_default() += 1;
        }
        Ok(lease)
    }

    /// Acks a lease's delivery.
    async fn ack_lease(&self, lease: &Lease) -> Result<()> {
        self.bounded("an ack", async { lease.acker.ack(BasicAckOptions::default()).await.map(drop).map_err(err) }).await
    }

    /// Puts back a lease taken for a settle that failed before reaching RabbitMQ.
    fn restore_lease(&self, d: &Delivery, lease: Lease) {
        if let Some(r) = d.receipt.get::<AmqpReceipt>() {
            self.state().leases.insert(r.lease, lease);
        }
    }

    /// Hands buffered, never handed-out messages back as new messages (a plain requeue would
    /// count as a lost lease).
    async fn hand_back_buffered(&self, queues: &[&str]) {
        let taken: Vec<(String, Incoming)> = {
            let mut st = self.state();
            queues
                .iter()
                .filter_map(|q| st.buffers.remove(*q).map(|b| ((*q).to_owned(), b)))
                .flat_map(|(q, b)| b.into_iter().map(move |i| (q.clone(), i)))
                .collect()
        };
        for (q, inc) in taken {
            let due = headers::int(&inc.delivery.properties, headers::DUE);
            if self.enqueue_bytes(&q, &inc.delivery.data, due, true).await.is_ok() {
                let acker = &inc.delivery.acker;
                let _ =
                    self.bounded("an ack", async { acker.ack(BasicAckOptions::default()).await.map_err(err) }).await;
            }
        }
    }
}

#[async_trait]
impl Broker for AmqpBroker {
    fn kind(&self) -> &'static str {
        "amqp"
    }

    fn describe(&self) -> String {
        let cfg = &self.inner.cfg;
        format!("{} (prefix `{}`)", conveyor_core::redact_url(&cfg.url), cfg.prefix)
    }

    async fn publish(&self, task: &TaskMessage) -> Result<()> {
        let due = task.eta.map(|e| time::to_millis(e) as i64);
        self.enqueue_bytes(&task.queue, &task.encode()?, due, false).await
    }

    async fn publish_many(&self, tasks: &[TaskMessage]) -> Vec<Result<()>> {
        // Publish everything, then await the confirms together (pipelined), task by task.
        let mut pending = Vec::with_capacity(tasks.len());
        for t in tasks {
            let sent = async {
                let ch = self.declare(&t.queue).await?;
                let n = self.names(&t.queue);
                let body = t.encode()?;
                let due = t.eta.map(|e| time::to_millis(e) as i64).filter(|d| *d > now_ms());
                let (routing, props) = match due {
                    Some(due) => {
                        let bucket = topology::bucket_for(Duration::from_millis((due - now_ms()).max(0) as u64));
                        (n.bucket(bucket), headers::props(&[(headers::DUE, due)], &[]))
                    }
                    None => (n.main.clone(), headers::props(&[], &[])),
                };
                let opts = BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() };
                let confirm = ch.basic_publish("".into(), routing.as_str().into(), opts, &body, props).await;
                confirm.map(|c| (c, routing)).map_err(err)
            }
            .await;
            pending.push(sent);
        }
        let mut out = Vec::with_capacity(tasks.len());
        let deadline = Instant::now() + link::OP_LIMIT;
        for p in pending {
            out.push(match p {
                Ok((confirm, routing)) => {
                    match self.bounded_until(deadline, "a publish", async { confirm.await.map_err(err) }).await {
                        Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => Ok(()),
                        Ok(Confirmation::Ack(Some(_))) => Err(failure::unroutable(&routing)),
                        Ok(Confirmation::Nack(_)) => Err(failure::nacked()),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            });
        }
        out
    }

    async fn receive(&self, req: &ReceiveRequest<'_>) -> Result<Vec<Delivery>> {
        let got = self.receive_unpaused(req).await?;
        Ok(conveyor_core::broker::hand_back_paused(self, got, |q| self.state().paused.contains(q)).await)
    }

    async fn ack(&self, d: &Delivery) -> Result<()> {
        let lease = self.take_lease(d)?;
        self.ack_lease(&lease).await
    }

    async fn retry(&self, d: &Delivery, task: &TaskMessage, delay: Duration) -> Result<()> {
        let lease = self.take_lease(d)?;
        let due = (!delay.is_zero()).then(|| now_ms() + delay.as_millis().min(i64::MAX as u128 / 2) as i64);
        let body = match task.encode() {
            Ok(b) => b,
            Err(e) => {
                self.restore_lease(d, lease);
                return Err(e);
            }
        };
        if let Err(e) = self.enqueue_bytes(&task.queue, &body, due, true).await {
            // Not stored: the delivery stays this worker's (its lease runs on).
            self.restore_lease(d, lease);
            return Err(e);
        }
        self.ack_lease(&lease).await
    }

    async fn archive(&self, d: &Delivery, reason: &str) -> Result<()> {
        let lease = self.take_lease(d)?;
        let ch = self.declare(&lease.queue).await?;
        let n = self.names(&lease.queue);
        let props = headers::props(&[(headers::ARCHIVED_AT, now_ms())], &[(headers::REASON, reason)]);
        if let Err(e) = self.publish_to(&ch, &n.archive, &lease.data, props).await {
            self.restore_lease(d, lease);
            return Err(e);
        }
        self.ack_lease(&lease).await
    }

    async fn release(&self, d: &Delivery) -> Result<()> {
        // A new copy, so that the hand-back is not counted as a lost lease.
        let lease = self.take_lease(d)?;
        if let Err(e) = self.enqueue_bytes(&lease.queue, &lease.data, None, true).await {
            self.restore_lease(d, lease);
            return Err(e);
        }
        self.ack_lease(&lease).await
    }

    async fn extend_leases(&self, receipts: &[Receipt], lease: Duration) -> Result<Vec<usize>> {
        let until = Instant::now() + lease;
        let mut st = self.state();
        let mut lost = Vec::new();
        for (i, r) in receipts.iter().enumerate() {
            let r = r
                .get::<AmqpReceipt>()
                .ok_or_else(|| failure::fail(FailureKind::Rejected, "receipt was not issued by an AMQP broker"))?;
            // Gone: settled, returned to the queue when its lease ran out, or of a connection
            // that closed (RabbitMQ delivers it again).
            match st.leases.get_mut(&r.lease) {
                Some(l) => l.until = until,
                None => lost.push(i),
            }
        }
        Ok(lost)
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats> {
        self.declare(queue).await?;
        let ch = self.declaring_channel().await?;
        let n = self.names(queue);
        let mut s = QueueStats::default();
        s.queue = queue.to_owned();
        let declared = async {
            let main = topology::declare_main(&ch, &n).await?;
            let archived = topology::declare_archive(&ch, &n).await?;
            Ok::<_, lapin::Error>((main, archived, topology::declare_buckets(&ch, &n).await?))
        };
        let (main, archived, scheduled) = self
            .bounded("a queue declaration", async { declared.await.map_err(|e| topology::declare_err(&n, e)) })
            .await?;
        (s.pending, s.archived, s.scheduled) = (u64::from(main), u64::from(archived), scheduled);
        let st = self.state();
        s.active = st.leases.values().filter(|l| l.queue == queue).count() as u64;
        s.pending += st.buffers.get(queue).map_or(0, |b| b.len() as u64);
        s.paused = st.paused.contains(queue);
        Ok(s)
    }

    fn admin(&self) -> Option<&dyn QueueAdmin> {
        Some(self)
    }

    fn raw(&self) -> Option<&dyn RawPublish> {
        Some(self)
    }

    fn inspect(&self) -> Option<&dyn conveyor_core::inspect::BrokerInspect> {
        Some(self)
    }
}
