//! A broker kept in one directory: the out-of-tree broker of docs/writing-a-broker.md, written
//! by following that guide alone, and run through the whole conformance suite
//! (`tests/conformance/file_broker.rs`).
//!
//! Every queue's tasks, leases and archive live in one JSON file, `state.json`, rewritten
//! (written to a temporary file, synced, renamed over) on every call under a lock: an
//! in-process mutex and an OS file lock, so that processes on one machine can share the
//! directory. Times are wall-clock milliseconds, which every process reads alike. Each call
//! reads and writes the whole file: a broker for a handful of tasks a second, and a short
//! example of the contract, not a fast one.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conveyor::broker::{async_trait, Broker, Delivery, Payload, RawPublish, Receipt, ReceiveRequest};
use conveyor::{ArchivedTask, Error, FailureKind, QueueAdmin, QueueStats, Result, TaskMessage, MAX_PRIORITY};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// Archived tasks kept per queue; the oldest go beyond it.
const ARCHIVE_LIMIT: usize = 10_000;
/// How often a waiting receiver looks again (for other processes' publishes).
const POLL: Duration = Duration::from_millis(50);

/// The broker. Cheap to clone.
#[derive(Clone)]
pub struct FileBroker {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    /// Calls of this process, one at a time (the file lock orders the processes).
    mutex: Mutex<()>,
    /// Wakes this process's waiting receivers when something becomes ready.
    notify: Notify,
}

/// The whole broker, as stored.
#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
struct State {
    next: u64,
    queues: BTreeMap<String, Queue>,
}

#[derive(Default, Serialize, Deserialize)]
struct Queue {
    paused: bool,
    /// Tasks ready or delayed.
    waiting: Vec<Msg>,
    /// Tasks handed out, by lease id, with the end of their lease.
    leased: BTreeMap<u64, (Msg, u64)>,
    /// Newest first: the body, the reason, when.
    archive: Vec<(Body, String, u64)>,
}

#[derive(Clone, Serialize, Deserialize)]
struct Msg {
    seq: u64,
    due_ms: u64,
    priority: u8,
    /// Handed back: read before the others of its priority.
    first: bool,
    body: Body,
    lost: u32,
    redelivered: bool,
}

/// A message body: tasks are JSON text, kept as such; other bytes (published raw) as numbers.
#[derive(Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum Body {
    Text(String),
    Bytes(Vec<u8>),
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        String::from_utf8(bytes).map_or_else(|e| Body::Bytes(e.into_bytes()), Body::Text)
    }
}

impl From<Body> for Vec<u8> {
    fn from(body: Body) -> Self {
        match body {
            Body::Text(s) => s.into_bytes(),
            Body::Bytes(b) => b,
        }
    }
}

/// What a delivery's receipt holds.
struct FileReceipt {
    queue: String,
    lease: u64,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX / 4)) as u64
}

fn io_err(e: impl Into<conveyor::broker::BoxError>) -> Error {
    Error::broker_failure(FailureKind::Unavailable, e)
}

impl State {
    fn queue(&mut self, name: &str) -> &mut Queue {
        self.queues.entry(name.to_owned()).or_default()
    }

    fn push(&mut self, queue: &str, body: Vec<u8>, priority: u8, due_ms: u64) {
        self.next += 1;
        let msg =
            Msg { seq: self.next, due_ms, priority, first: false, body: body.into(), lost: 0, redelivered: false };
        self.queue(queue).waiting.push(msg);
    }

    /// Tasks whose lease ran out go back to wait, one lost lease counted.
    fn expire_leases(&mut self, now: u64) {
        for q in self.queues.values_mut() {
            let expired: Vec<u64> =
                q.leased.iter().filter(|(_, (_, until))| *until <= now).map(|(id, _)| *id).collect();
            for id in expired {
                let (mut msg, _) = q.leased.remove(&id).expect("listed");
                msg.lost += 1;
                msg.redelivered = true;
                q.waiting.push(msg);
            }
        }
    }

    /// The delivery's task, if the caller still holds its lease.
    fn take_leased(&mut self, r: &FileReceipt) -> Result<Msg> {
        let q = self.queues.get_mut(&r.queue).ok_or(Error::LeaseLost)?;
        q.leased.remove(&r.lease).map(|(m, _)| m).ok_or(Error::LeaseLost)
    }
}

impl Queue {
    /// The next ready task: highest priority, hand-backs first, then in publishing order.
    fn pop_ready(&mut self, now: u64) -> Option<Msg> {
        let best = self
            .waiting
            .iter()
            .enumerate()
            .filter(|(_, m)| m.due_ms <= now)
            .min_by_key(|(_, m)| (std::cmp::Reverse(m.priority), !m.first, m.seq))
            .map(|(i, _)| i)?;
        Some(self.waiting.swap_remove(best))
    }

    fn next_due(&self) -> Option<u64> {
        self.waiting.iter().map(|m| m.due_ms).min()
    }
}

impl FileBroker {
    /// The broker kept in `dir` (created if missing).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io_err)?;
        Ok(FileBroker { inner: Arc::new(Inner { dir, mutex: Mutex::new(()), notify: Notify::new() }) })
    }

    /// Runs `f` on the state, under the locks, and stores what it changed; off the async
    /// threads (file IO blocks).
    async fn with_state<R: Send + 'static>(&self, f: impl FnOnce(&mut State, u64) -> R + Send + 'static) -> Result<R> {
        let inner = self.inner.clone();
        let call = tokio::task::spawn_blocking(move || -> Result<R> {
            let _this_process = inner.mutex.lock().unwrap_or_else(|e| e.into_inner());
            let lock = File::options().create(true).truncate(false).write(true).open(inner.dir.join("lock"));
            let lock = lock.map_err(io_err)?;
            lock.lock().map_err(io_err)?;
            let path = inner.dir.join("state.json");
            let before = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => b"{}".to_vec(),
                Err(e) => return Err(io_err(e)),
            };
            let mut state: State = serde_json::from_slice(&before).map_err(io_err)?;
            let now = now_ms();
            state.expire_leases(now);
            let out = f(&mut state, now);
            let after = serde_json::to_vec(&state).map_err(io_err)?;
            // Written only if it changed (a receive that found nothing, stats), and durably:
            // synced, then renamed over the old file, so a crash leaves one or the other.
            if after != before {
                let tmp = inner.dir.join("state.json.tmp");
                let mut file = File::create(&tmp).map_err(io_err)?;
                file.write_all(&after).map_err(io_err)?;
                file.sync_data().map_err(io_err)?;
                std::fs::rename(&tmp, &path).map_err(io_err)?;
            }
            Ok(out)
        });
        call.await.map_err(io_err)?
    }

    fn receipt<'a>(&self, d: &'a Delivery) -> Result<&'a FileReceipt> {
        d.receipt.get::<FileReceipt>().ok_or_else(|| Error::broker("receipt was not issued by a file broker"))
    }

    /// Settles a delivery the caller still holds: `f` gets its queue and task.
    async fn settle(&self, d: &Delivery, f: impl FnOnce(&mut State, Msg, u64) + Send + 'static) -> Result<()> {
        let r = self.receipt(d)?;
        let r = FileReceipt { queue: r.queue.clone(), lease: r.lease };
        self.with_state(move |st, now| st.take_leased(&r).map(|m| f(st, m, now))).await??;
        self.inner.notify.notify_waiters();
        Ok(())
    }
}

#[async_trait]
impl Broker for FileBroker {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn describe(&self) -> String {
        format!("file ({})", self.inner.dir.display())
    }

    async fn publish(&self, task: &TaskMessage) -> Result<()> {
        let body = task.encode()?;
        let due = task.eta.map_or(0, |eta| eta.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64));
        let (queue, priority) = (task.queue.clone(), task.priority.min(MAX_PRIORITY));
        self.with_state(move |st, _| st.push(&queue, body, priority, due)).await?;
        self.inner.notify.notify_waiters();
        Ok(())
    }

    async fn receive(&self, req: &ReceiveRequest<'_>) -> Result<Vec<Delivery>> {
        let deadline = tokio::time::Instant::now() + req.wait;
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (queues, max, lease) =
                (req.queues.iter().map(|q| q.to_string()).collect::<Vec<_>>(), req.max, req.lease);
            let (taken, next_due) = self
                .with_state(move |st, now| {
                    let mut taken = Vec::new();
                    let mut next_due: Option<u64> = None;
                    for name in &queues {
                        let Some(q) = st.queues.get_mut(name) else { continue };
                        while !q.paused && taken.len() < max {
                            let Some(msg) = q.pop_ready(now) else { break };
                            st.next += 1;
                            taken.push((name.clone(), st.next, msg.clone()));
                            q.leased.insert(st.next, (msg, now + ms(lease)));
                        }
                        if let Some(d) = q.next_due() {
                            next_due = Some(next_due.map_or(d, |n| n.min(d)));
                        }
                    }
                    (taken, next_due)
                })
                .await?;
            if !taken.is_empty() || tokio::time::Instant::now() >= deadline || req.stop.is_cancelled() {
                let out = taken.into_iter().map(|(queue, lease, msg)| Delivery {
                    queue: Arc::from(queue.as_str()),
                    receipt: Receipt::new(FileReceipt { queue, lease }),
                    payload: Payload::decode_within(msg.body.into(), req.max_payload),
                    redelivered: msg.redelivered,
                    lost_leases: msg.lost,
                    // Retries and hand-backs replace their original in one write: never two.
                    copy: false,
                });
                return Ok(out.collect());
            }
            let due_in = next_due.map_or(POLL, |d| Duration::from_millis(d.saturating_sub(now_ms())));
            let wake = deadline.min(tokio::time::Instant::now() + due_in.clamp(Duration::from_millis(1), POLL));
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(wake) => {}
                _ = req.stop.cancelled() => {}
            }
        }
    }

    async fn ack(&self, d: &Delivery) -> Result<()> {
        self.settle(d, |_, _, _| {}).await
    }

    async fn retry(&self, d: &Delivery, task: &TaskMessage, delay: Duration) -> Result<()> {
        let (body, priority, queue) = (task.encode()?, task.priority.min(MAX_PRIORITY), task.queue.clone());
        self.settle(d, move |st, _, now| st.push(&queue, body, priority, now + ms(delay))).await
    }

    async fn archive(&self, d: &Delivery, reason: &str) -> Result<()> {
        let (queue, reason) = (self.receipt(d)?.queue.clone(), reason.to_owned());
        self.settle(d, move |st, msg, now| {
            let archive = &mut st.queue(&queue).archive;
            archive.insert(0, (msg.body, reason, now));
            archive.truncate(ARCHIVE_LIMIT);
        })
        .await
    }

    async fn release(&self, d: &Delivery) -> Result<()> {
        let queue = self.receipt(d)?.queue.clone();
        self.settle(d, move |st, mut msg, now| {
            (msg.first, msg.redelivered, msg.due_ms) = (true, true, now);
            st.queue(&queue).waiting.push(msg);
        })
        .await
    }

    async fn extend_leases(&self, receipts: &[Receipt], lease: Duration) -> Result<Vec<usize>> {
        let mut held = Vec::with_capacity(receipts.len());
        for r in receipts {
            let r = r.get::<FileReceipt>().ok_or_else(|| Error::broker("receipt was not issued by a file broker"))?;
            held.push((r.queue.clone(), r.lease));
        }
        self.with_state(move |st, now| {
            let mut lost = Vec::new();
            for (i, (queue, id)) in held.iter().enumerate() {
                match st.queues.get_mut(queue).and_then(|q| q.leased.get_mut(id)) {
                    Some((_, until)) => *until = now + ms(lease),
                    None => lost.push(i),
                }
            }
            lost
        })
        .await
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats> {
        let name = queue.to_owned();
        self.with_state(move |st, now| {
            let mut s = QueueStats::default();
            s.queue = name.clone();
            if let Some(q) = st.queues.get(&name) {
                s.pending = q.waiting.iter().filter(|m| m.due_ms <= now).count() as u64;
                s.scheduled = q.waiting.len() as u64 - s.pending;
                s.active = q.leased.len() as u64;
                s.archived = q.archive.len() as u64;
                s.paused = q.paused;
            }
            s
        })
        .await
    }

    fn admin(&self) -> Option<&dyn QueueAdmin> {
        Some(self)
    }

    fn raw(&self) -> Option<&dyn RawPublish> {
        Some(self)
    }
}

#[async_trait]
impl QueueAdmin for FileBroker {
    async fn pause(&self, queue: &str) -> Result<()> {
        let queue = queue.to_owned();
        self.with_state(move |st, _| st.queue(&queue).paused = true).await
    }

    async fn resume(&self, queue: &str) -> Result<()> {
        let queue = queue.to_owned();
        self.with_state(move |st, _| st.queue(&queue).paused = false).await?;
        self.inner.notify.notify_waiters();
        Ok(())
    }

    async fn archived(&self, queue: &str, offset: usize, limit: usize) -> Result<Vec<ArchivedTask>> {
        let queue = queue.to_owned();
        let rows = self
            .with_state(move |st, _| {
                let rows = st.queues.get(&queue).map(|q| q.archive.iter().skip(offset).take(limit).cloned().collect());
                rows.unwrap_or_else(Vec::new)
            })
            .await?;
        let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        let task =
            |(body, reason, ms): (Body, String, u64)| ArchivedTask::new(Payload::decode(body.into()), reason, at(ms));
        Ok(rows.into_iter().map(task).collect())
    }
}

#[async_trait]
impl RawPublish for FileBroker {
    async fn publish_raw(&self, queue: &str, bytes: Vec<u8>) -> Result<()> {
        let queue = queue.to_owned();
        self.with_state(move |st, _| st.push(&queue, bytes, 0, 0)).await?;
        self.inner.notify.notify_waiters();
        Ok(())
    }
}
