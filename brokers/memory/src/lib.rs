//! The in-memory broker of [Conveyor](https://crates.io/crates/conveyor): the embedded
//! default, for development, tests and single-process apps.
//!
//! It keeps the same promises as the network brokers within one process: tasks are leased to
//! receivers and delivered again when a lease expires; delayed tasks wait in the broker (a
//! timer heap), never in a worker, and never run early; failed tasks go to a per-queue archive
//! with their reason. Tasks do not survive the process.
//!
//! URLs: `memory://` is the process-wide default instance, `memory://NAME` a named one, so a
//! client and a worker in one process that use the same URL share queues.
//!
//! ```
//! # async fn demo() -> conveyor_core::Result<()> {
//! use conveyor_broker_memory::MemoryBroker;
//! let a = MemoryBroker::from_url("memory://app")?;
//! let b = MemoryBroker::from_url("memory://app")?;
//! assert!(a.same_as(&b));
//! # Ok(()) }
//! ```

mod inspect;
mod queue;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use conveyor_core::{
    ArchivedTask, Broker, Delivery, Error, Payload, QueueAdmin, QueueStats, RawPublish, Receipt, ReceiveRequest,
    Result, TaskMessage,
};
use tokio::sync::Notify;
use tokio::time::Instant;

use queue::{Entry, Queue};

/// Archived tasks kept per queue by default; the oldest are dropped beyond it.
pub const DEFAULT_ARCHIVE_LIMIT: usize = 10_000;

/// The in-memory broker. Cheap to clone (clones share the queues).
#[derive(Clone)]
pub struct MemoryBroker {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    notify: Notify,
    archive_limit: usize,
}

#[derive(Default)]
struct State {
    queues: HashMap<Arc<str>, Queue, foldhash::fast::RandomState>,
    seq: u64,
}

/// What the memory broker's receipts hold.
struct MemReceipt {
    queue: Arc<str>,
    seq: u64,
}

impl Default for MemoryBroker {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBroker {
    /// A new, unshared broker.
    pub fn new() -> Self {
        Self::with_archive_limit(DEFAULT_ARCHIVE_LIMIT)
    }

    /// A new broker keeping at most `limit` archived tasks per queue.
    pub fn with_archive_limit(limit: usize) -> Self {
        MemoryBroker { inner: Arc::new(Inner { state: Mutex::default(), notify: Notify::new(), archive_limit: limit }) }
    }

    /// The process-wide broker called `name` (`""` is the default instance).
    pub fn named(name: &str) -> Self {
        static REGISTRY: OnceLock<Mutex<HashMap<String, MemoryBroker>>> = OnceLock::new();
        let mut map = REGISTRY.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
        map.entry(name.to_owned()).or_default().clone()
    }

    /// The broker a `memory://[NAME]` URL names.
    pub fn from_url(url: &str) -> Result<Self> {
        Ok(Self::named(&parse_name(url)?))
    }

    /// True if both handles share the same queues.
    pub fn same_as(&self, other: &MemoryBroker) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, queue: &str, entry: Entry, delay: Duration) {
        let mut st = self.lock();
        let q = st.queue(queue);
        if delay.is_zero() {
            q.push_ready(entry, false);
        } else {
            q.schedule(due(Instant::now(), delay), entry);
        }
        drop(st);
        self.inner.notify.notify_waiters();
    }

    /// Runs `f` on the delivery's queue if the delivery still holds its lease there.
    /// `wake`: whether the change can make work available to waiting receivers.
    fn settle(&self, d: &Delivery, wake: bool, f: impl FnOnce(&mut Queue, Entry, &Inner)) -> Result<()> {
        let r = d.receipt.get::<MemReceipt>().ok_or_else(foreign_receipt)?;
        let mut st = self.lock();
        let q = st.queues.get_mut(&r.queue).ok_or(Error::LeaseLost)?;
        let entry = q.take_active(r.seq).ok_or(Error::LeaseLost)?;
        f(q, entry, &self.inner);
        drop(st);
        if wake {
            self.inner.notify.notify_waiters();
        }
        Ok(())
    }

    /// Takes up to `req.max` ready deliveries; also returns when something next changes by itself.
    fn take(&self, req: &ReceiveRequest<'_>, now: Instant) -> (Vec<Delivery>, Option<Instant>) {
        let mut guard = self.lock();
        let State { queues, seq } = &mut *guard;
        let mut out = Vec::new();
        let mut next_wake: Option<Instant> = None;
        for name in req.queues {
            let Some(q) = queues.get_mut(*name) else { continue };
            q.maintain(now);
            if !q.paused {
                while out.len() < req.max {
                    let Some(entry) = q.pop_ready() else { break };
                    *seq += 1;
                    out.push(Delivery {
                        receipt: Receipt::new(MemReceipt { queue: q.name.clone(), seq: *seq }),
                        queue: q.name.clone(),
                        payload: match &entry.raw {
                            Some((size, head)) if *size > req.max_payload => {
                                Payload::too_large(head.clone(), *size, req.max_payload)
                            }
                            _ => entry.payload.clone(),
                        },
                        redelivered: entry.redelivered,
                        lost_leases: entry.lost_leases,
                        copy: false,
                    });
                    q.activate(*seq, entry, due(now, req.lease));
                }
            }
            if let Some(t) = q.next_wake() {
                next_wake = Some(next_wake.map_or(t, |n| n.min(t)));
            }
            if out.len() >= req.max {
                break;
            }
        }
        (out, next_wake)
    }
}

/// The longest delay the broker honours (about 100 years); longer ones are clamped to it.
const MAX_DELAY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `now + delay`, clamped so that no delay can overflow the clock.
fn due(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay.min(MAX_DELAY)).unwrap_or(now)
}

fn foreign_receipt() -> Error {
    Error::broker("receipt was not issued by this memory broker")
}

fn parse_name(url: &str) -> Result<String> {
    let bad = |reason: &str| Error::invalid_url(url, reason);
    let rest = url.strip_prefix("memory://").ok_or_else(|| bad("a memory URL starts with `memory://`"))?;
    let name = rest.strip_suffix('/').unwrap_or(rest);
    if name.contains(['/', '?', '#', '@', ':']) {
        return Err(bad("the memory broker takes only a name: `memory://` or `memory://NAME`"));
    }
    Ok(name.to_owned())
}

impl State {
    fn queue(&mut self, name: &str) -> &mut Queue {
        if !self.queues.contains_key(name) {
            let name: Arc<str> = Arc::from(name);
            self.queues.insert(name.clone(), Queue::new(name));
        }
        self.queues.get_mut(name).expect("inserted above")
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn describe(&self) -> String {
        "memory (tasks live in this process only)".to_owned()
    }

    async fn publish(&self, task: &TaskMessage) -> Result<()> {
        let delay = task.eta.map(conveyor_core::time::until).unwrap_or_default();
        self.push(&task.queue, Entry::new(Payload::Task(Arc::new(task.clone()))), delay);
        Ok(())
    }

    async fn publish_many(&self, tasks: &[TaskMessage]) -> Vec<Result<()>> {
        let mut st = self.lock();
        let now = Instant::now();
        for t in tasks {
            let entry = Entry::new(Payload::Task(Arc::new(t.clone())));
            let q = st.queue(&t.queue);
            match t.eta.map(conveyor_core::time::until).filter(|d| !d.is_zero()) {
                Some(d) => q.schedule(due(now, d), entry),
                None => q.push_ready(entry, false),
            }
        }
        drop(st);
        self.inner.notify.notify_waiters();
        tasks.iter().map(|_| Ok(())).collect()
    }

    async fn receive(&self, req: &ReceiveRequest<'_>) -> Result<Vec<Delivery>> {
        let deadline = due(Instant::now(), req.wait);
        // Fast path: tasks are ready, no waiter registration needed.
        let (out, _) = self.take(req, Instant::now());
        if !out.is_empty() {
            return Ok(out);
        }
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            // Registered before looking, so a publish in between is not missed.
            notified.as_mut().enable();
            let now = Instant::now();
            let (out, next_wake) = self.take(req, now);
            if !out.is_empty() || now >= deadline {
                return Ok(out);
            }
            let wake_at = next_wake.map_or(deadline, |t| t.min(deadline));
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(wake_at) => {}
                _ = req.stop.cancelled() => return Ok(Vec::new()),
            }
        }
    }

    async fn ack(&self, d: &Delivery) -> Result<()> {
        self.settle(d, false, |_, _, _| {})
    }

    async fn retry(&self, d: &Delivery, task: &TaskMessage, delay: Duration) -> Result<()> {
        self.settle(d, true, |q, _, _| {
            let entry = Entry::new(Payload::Task(Arc::new(task.clone())));
            if delay.is_zero() {
                q.push_ready(entry, false);
            } else {
                q.schedule(due(Instant::now(), delay), entry);
            }
        })
    }

    async fn archive(&self, d: &Delivery, reason: &str) -> Result<()> {
        self.settle(d, false, |q, entry, inner| q.archive(entry.payload, reason.to_owned(), inner.archive_limit))
    }

    async fn release(&self, d: &Delivery) -> Result<()> {
        self.settle(d, true, |q, entry, _| q.push_ready(entry, true))
    }

    async fn extend_leases(&self, receipts: &[Receipt], lease: Duration) -> Result<Vec<usize>> {
        let until = due(Instant::now(), lease);
        let mut st = self.lock();
        let mut lost = Vec::new();
        for (i, r) in receipts.iter().enumerate() {
            let r = r.get::<MemReceipt>().ok_or_else(foreign_receipt)?;
            // No longer active: settled, or back in the queue after its lease ran out (and
            // perhaps delivered again).
            if !st.queues.get_mut(&r.queue).is_some_and(|q| q.extend(r.seq, until)) {
                lost.push(i);
            }
        }
        Ok(lost)
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats> {
        let mut st = self.lock();
        let now = Instant::now();
        Ok(match st.queues.get_mut(queue) {
            Some(q) => {
                q.maintain(now);
                q.stats()
            }
            None => {
                let mut s = QueueStats::default();
                s.queue = queue.to_owned();
                s
            }
        })
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

#[async_trait]
impl QueueAdmin for MemoryBroker {
    async fn pause(&self, queue: &str) -> Result<()> {
        self.lock().queue(queue).paused = true;
        Ok(())
    }

    async fn resume(&self, queue: &str) -> Result<()> {
        self.lock().queue(queue).paused = false;
        self.inner.notify.notify_waiters();
        Ok(())
    }

    async fn archived(&self, queue: &str, offset: usize, limit: usize) -> Result<Vec<ArchivedTask>> {
        let st = self.lock();
        Ok(st.queues.get(queue).map(|q| q.archived(offset, limit)).unwrap_or_default())
    }
}

#[async_trait]
impl RawPublish for MemoryBroker {
    async fn publish_raw(&self, queue: &str, bytes: Vec<u8>) -> Result<()> {
        let head = bytes[..bytes.len().min(1024)].to_vec();
        let raw = Some((bytes.len(), head));
        self.push(queue, Entry { raw, ..Entry::new(Payload::decode(bytes)) }, Duration::ZERO);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
