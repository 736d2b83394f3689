//! The Redis broker of [Conveyor](https://crates.io/crates/conveyor).
//!
//! - **Atomic**: every state change is one Lua script (`lua/*.lua`, one file per operation),
//!   on the server's clock, or one atomic command (a plain `XREADGROUP`, see `claim.rs`); all
//!   keys of a queue share the hash tag `{prefix:queue}`.
//! - **Streams**: ready tasks are entries of a Redis stream per priority, read through a
//!   consumer group. A claim (`XREADGROUP`) leases the tasks it reads: they stay in the group's
//!   pending list, owned by the consumer `l<lease_ms>`, whose idle time there is the lease; the
//!   worker's heartbeat resets it (`XCLAIM … JUSTID`). An ack is `XACK`; acked entries are cut
//!   from the stream's head (`XTRIM MINID`).
//! - **At least once**: at most every 200 ms a claim looks for entries idle longer than their
//!   lease (their worker died) and queues them again as new entries, counting the lost lease,
//!   so a task can never stay claimed with no lease. A delivery is named by its stream entry, so
//!   a worker that lost its lease cannot settle a task that has since been redelivered
//!   (`LeaseLost`).
//! - **Delays** (`eta`, retry back-off) wait in the `delayed` sorted set and move to their
//!   stream when due, inside the claim script: never held in a worker, never early.
//! - **Wake-up** without polling: publishing pushes a token on the queue's signal list; an idle
//!   receiver waits on it with `BLPOP` on its own connection, timed to the next due delay, with
//!   the claim pipelined behind it, so Redis claims the moment the wait ends: pickup costs no
//!   extra round trip. When the queue's tasks all sit in one stream, that claim is a plain
//!   `XREADGROUP` alone (no script on the way, unless the wait ends for a due task).
//! - Per-task priority (0–9) within a queue; pause/resume; an archive capped per queue.
//!
//! URL: `redis://[user:pass@]host[:port][/db][?prefix=NAME&archive_limit=N]`.

mod acker;
mod claim;
mod config;
mod entries;
mod inspect;
mod keys;
mod scripts;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use conveyor_core::{
    ArchivedTask, Broker, Delivery, Error, Payload, QueueAdmin, QueueStats, RawPublish, Receipt, ReceiveRequest,
    Result, TaskId, TaskMessage,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

pub use config::RedisConfig;
use keys::QueueKeys;

/// The Redis broker. Cheap to clone (clones share connections).
#[derive(Clone)]
pub struct RedisBroker {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: RedisConfig,
    client: redis::Client,
    /// A few multiplexed connections, used in turn: one connection's driver task would
    /// otherwise carry every request of the process.
    conns: Vec<ConnectionManager>,
    next: std::sync::atomic::AtomicUsize,
    /// Connections for blocking waits, one per waiting receiver.
    idle_blocking: Mutex<Vec<claim::BlockingConn>>,
    keys: Mutex<HashMap<String, Arc<QueueKeys>>>,
    /// Queues this process added to the registry (see `inspect.rs`).
    registered: Mutex<std::collections::HashSet<String>>,
    acks: tokio::sync::mpsc::UnboundedSender<acker::AckRequest>,
}

/// Consumer group `g` in an `XINFO GROUPS` reply: its `pending` count, its `lag` (unknown to
/// Redis after some deletions) and its `last-delivered-id`.
fn group_counts(v: &redis::Value) -> (u64, Option<u64>, Option<String>) {
    let redis::Value::Array(groups) = v else { return (0, None, None) };
    for g in groups {
        let redis::Value::Array(fields) = g else { continue };
        let field = |name: &str| {
            fields
                .chunks(2)
                .find(|kv| redis::from_redis_value_ref::<String>(&kv[0]).is_ok_and(|k| k == name))
                .and_then(|kv| kv.get(1))
        };
        if field("name").and_then(|v| redis::from_redis_value_ref::<String>(v).ok()).as_deref() != Some("g") {
            continue;
        }
        let count = |name: &str| field(name).and_then(|v| redis::from_redis_value_ref::<u64>(v).ok());
        let last = field("last-delivered-id").and_then(|v| redis::from_redis_value_ref::<String>(v).ok());
        return (count("pending").unwrap_or(0), count("lag"), last);
    }
    (0, None, None)
}

/// How many entries of stream `KEYS[1]` are at or before `ARGV[1]` (the group's last delivered
/// entry): the delivered ones still in the stream, acked or not. Few (acked entries are cut
/// from the stream's head as they go), and counted inside Redis.
static COUNT_DELIVERED: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new("return #redis.call('XRANGE', KEYS[1], '-', ARGV[1])"));

/// What a Redis receipt holds. The delivery is the stream entry that carries it, `SUFFIX|ENTRY-ID`
/// in the scripts (see [`RedisReceipt::token`]); kept in two parts, so that a read builds no
/// string per task (the suffix is shared by every entry of a read).
struct RedisReceipt {
    keys: Arc<QueueKeys>,
    id: String,
    /// The stream's suffix (`s0`, `f3`, ...).
    suffix: Arc<str>,
    /// The entry id, `MS-SEQ`.
    eid: String,
}

impl RedisReceipt {
    /// The delivery as the scripts name it: `SUFFIX|ENTRY-ID`.
    fn token(&self) -> String {
        let mut t = String::with_capacity(self.suffix.len() + 1 + self.eid.len());
        t.push_str(&self.suffix);
        t.push('|');
        t.push_str(&self.eid);
        t
    }
}

fn err(e: redis::RedisError) -> Error {
    Error::broker_failure(scripts::failure_kind(&e), e)
}

/// Most tasks one claim takes (one reply carries them all: a bound on its size).
const MAX_CLAIM: usize = 1000;

/// Most receipts one lease extension carries.
const MAX_EXTEND: usize = 500;

/// The longest a receiver blocks before looking again.
const MAX_BLOCK: Duration = Duration::from_secs(1);

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX / 4)) as u64
}

/// A delay in whole ms, rounded up: a task is never due before its time.
fn delay_ms(d: Duration) -> u64 {
    ms(d + Duration::from_nanos(999_999))
}

impl RedisBroker {
    /// Connects to the server a `redis://` URL names (see [`RedisConfig::from_url`]).
    pub async fn connect(url: &str) -> Result<Self> {
        Self::with_config(RedisConfig::from_url(url)?).await
    }

    /// Connects with explicit settings.
    pub async fn with_config(cfg: RedisConfig) -> Result<Self> {
        let client = config::client(&cfg.url, &cfg.tls).map_err(|e| Error::invalid_url(&cfg.url, e.to_string()))?;
        let target = conveyor_core::url_target(&cfg.url);
        let mcfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(2));
        let mut conns = Vec::with_capacity(cfg.connections);
        for _ in 0..cfg.connections.max(1) {
            let conn = client
                .get_connection_manager_with_config(mcfg.clone())
                .await
                .map_err(|e| Error::broker(conveyor_core::first_contact_failure("Redis", &target, &e.to_string())))?;
            conns.push(conn);
        }
        // A server that needs a password answers the first command, not the connect; something
        // else than Redis on the port fails to parse. Both are told at once, here.
        let pong = redis::cmd("PING").query_async::<()>(&mut conns[0].clone()).await;
        pong.map_err(|e| Error::broker(conveyor_core::first_contact_failure("Redis", &target, &e.to_string())))?;
        // Loud, as BullMQ and Sidekiq are: an evicting policy can delete queued tasks. (A
        // managed Redis may refuse CONFIG: then nothing can be said.)
        let mut policy = redis::cmd("CONFIG");
        policy.arg("GET").arg("maxmemory-policy");
        if let Ok(kv) = policy.query_async::<Vec<String>>(&mut conns[0].clone()).await {
            if let Some(w) = kv.get(1).and_then(|p| config::eviction_warning(p)) {
                tracing::warn!(server = %target, "{w}");
            }
        }
        let conn = conns[0].clone();
        let acks = acker::start(conn.clone());
        let next = Default::default();
        let inner = Inner {
            cfg,
            client,
            conns,
            next,
            idle_blocking: Mutex::default(),
            keys: Mutex::default(),
            registered: Mutex::default(),
            acks,
        };
        Ok(RedisBroker { inner: Arc::new(inner) })
    }

    /// The settings in use.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.cfg
    }

    fn keys(&self, queue: &str) -> Arc<QueueKeys> {
        let mut map = self.inner.keys.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(queue.to_owned()).or_insert_with(|| Arc::new(QueueKeys::new(&self.inner.cfg.prefix, queue))).clone()
    }

    fn conn(&self) -> ConnectionManager {
        let i = self.inner.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.conns[i % self.inner.conns.len()].clone()
    }

    fn receipt<'a>(&self, d: &'a Delivery) -> Result<&'a RedisReceipt> {
        d.receipt.get::<RedisReceipt>().ok_or_else(|| Error::broker("receipt was not issued by a Redis broker"))
    }

    async fn publish_bytes(&self, queue: &str, id: &str, payload: &[u8], priority: u8, delay: Duration) -> Result<()> {
        let inv = self.publish_invocation(queue, id, payload, priority, delay);
        match inv.invoke_async::<i64>(&mut self.conn()).await.map_err(err)? {
            0 => Err(Error::DuplicateTask { id: id.to_owned() }),
            _ => Ok(()),
        }
    }

    fn publish_invocation<'a>(
        &self,
        queue: &str,
        id: &str,
        payload: &[u8],
        priority: u8,
        delay: Duration,
    ) -> redis::ScriptInvocation<'a> {
        let k = self.keys(queue);
        let mut inv = scripts::PUBLISH.prepare_invoke();
        inv.key(&k.streams).key(&k.delayed).key(&k.ids).key(&k.signal).key(&k.archived);
        inv.arg(&k.base).arg(id).arg(payload).arg(priority).arg(delay_ms(delay));
        inv
    }

    async fn settle(&self, result: redis::RedisResult<i64>) -> Result<()> {
        match result.map_err(err)? {
            0 => Err(Error::LeaseLost),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl Broker for RedisBroker {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn describe(&self) -> String {
        let cfg = &self.inner.cfg;
        format!("{} (prefix `{}`)", conveyor_core::redact_url(&cfg.url), cfg.prefix)
    }

    async fn publish(&self, task: &TaskMessage) -> Result<()> {
        let delay = task.eta.map(conveyor_core::time::until).unwrap_or_default();
        self.register(&[&task.queue]).await;
        self.publish_bytes(&task.queue, task.id.as_str(), &task.encode()?, task.priority, delay).await
    }

    async fn publish_many(&self, tasks: &[TaskMessage]) -> Vec<Result<()>> {
        let mut queues: Vec<&str> = tasks.iter().map(|t| t.queue.as_str()).collect();
        queues.dedup();
        self.register(&queues).await;
        // One pipeline of scripts; each answer says whether that task is stored.
        let mut pipe = redis::pipe();
        let mut out: Vec<Result<()>> = Vec::with_capacity(tasks.len());
        for t in tasks {
            match t.encode() {
                Ok(bytes) => {
                    let delay = t.eta.map(conveyor_core::time::until).unwrap_or_default();
                    pipe.invoke_script(&self.publish_invocation(&t.queue, t.id.as_str(), &bytes, t.priority, delay));
                    out.push(Ok(()));
                }
                Err(e) => out.push(Err(e)),
            }
        }
        if out.iter().all(Result::is_err) {
            return out;
        }
        // A pipeline sends EVALSHA only: the script must be loaded first. Each task gets its
        // own answer: one failing (a queue key of another type) does not fail the others.
        pipe.ignore_errors();
        let mut conn = self.conn();
        let answers: redis::RedisResult<Vec<redis::RedisResult<i64>>> =
            match scripts::PUBLISH.prepare_invoke().load_async(&mut conn).await {
                Ok(_) => pipe.query_async(&mut conn).await,
                Err(e) => Err(e),
            };
        match answers {
            Ok(answers) => {
                let mut answers = answers.into_iter();
                for (r, t) in out.iter_mut().zip(tasks) {
                    if r.is_err() {
                        continue;
                    }
                    *r = match answers.next() {
                        Some(Ok(0)) => Err(Error::DuplicateTask { id: t.id.to_string() }),
                        Some(Ok(_)) => Ok(()),
                        Some(Err(e)) => Err(err(e)),
                        None => Err(Error::broker("Redis answered for fewer tasks than sent")),
                    };
                }
                out
            }
            Err(e) => {
                let msg = e.to_string();
                out.into_iter().map(|r| r.and_then(|_| Err(Error::broker(msg.clone())))).collect()
            }
        }
    }

    async fn receive(&self, req: &ReceiveRequest<'_>) -> Result<Vec<Delivery>> {
        // Every claim below asks for at least one task: `XREADGROUP COUNT 0` reads a whole stream.
        if req.max == 0 {
            return Ok(Vec::new());
        }
        self.register(req.queues).await;
        let deadline = tokio::time::Instant::now() + req.wait;
        loop {
            let mut out = Vec::new();
            let mut wake: Option<u64> = None;
            for q in req.queues {
                if out.len() >= req.max {
                    break;
                }
                let (got, w) = match self.claim(q, req.max - out.len(), req.lease, req.max_payload).await {
                    Ok(c) => c,
                    // Tasks already claimed from earlier queues are kept, not left to expire.
                    Err(e) if !out.is_empty() => {
                        tracing::warn!(queue = %q, error = %e, "claim failed");
                        break;
                    }
                    Err(e) => return Err(e),
                };
                out.extend(got);
                wake = match (wake, w) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            let now = tokio::time::Instant::now();
            if !out.is_empty() || req.stop.is_cancelled() || now >= deadline {
                return Ok(out);
            }
            // Woken by a publish signal, or when something falls due; at the latest after
            // MAX_BLOCK, in case another receiver took the signal meant to re-time this wait.
            let mut wait = (deadline - now).min(MAX_BLOCK);
            // Whether the wait ends when something falls due: then the claim behind it must
            // move it to its stream (run the claim script).
            let mut upkeep = false;
            if let Some(w) = wake {
                let due = Duration::from_millis(w.max(1));
                upkeep = due <= wait;
                wait = wait.min(due);
            }
            let Some(first) = req.queues.first() else {
                tokio::time::sleep(wait).await;
                continue;
            };
            let claim = (*first, req.max, req.lease, req.max_payload);
            let (got, _) = self.wait_then_claim(req.queues, wait, claim, upkeep, req.stop).await?;
            if !got.is_empty() || req.stop.is_cancelled() {
                return Ok(got);
            }
        }
    }

    async fn ack(&self, d: &Delivery) -> Result<()> {
        self.receipt(d)?;
        let (done, answer) = tokio::sync::oneshot::channel();
        let req = acker::AckRequest { receipt: d.receipt.clone(), done };
        self.inner.acks.send(req).map_err(|_| Error::broker("the ack flusher has stopped"))?;
        match answer.await.map_err(|_| Error::broker("the ack flusher has stopped"))?? {
            true => Ok(()),
            false => Err(Error::LeaseLost),
        }
    }

    async fn retry(&self, d: &Delivery, task: &TaskMessage, delay: Duration) -> Result<()> {
        let r = self.receipt(d)?;
        let k = &r.keys;
        let res = scripts::RETRY
            .key(&k.streams)
            .key(&k.delayed)
            .key(&k.ids)
            .key(&k.signal)
            .arg(&k.base)
            .arg(r.token())
            .arg(task.encode()?)
            .arg(delay_ms(delay))
            .arg(task.priority)
            .invoke_async(&mut self.conn())
            .await;
        self.settle(res).await
    }

    async fn archive(&self, d: &Delivery, reason: &str) -> Result<()> {
        let r = self.receipt(d)?;
        let k = &r.keys;
        let res = scripts::ARCHIVE
            .key(&k.archived)
            .key(&k.ids)
            .arg(&k.base)
            .arg(r.token())
            .arg(reason)
            .arg(self.inner.cfg.archive_limit)
            .invoke_async(&mut self.conn())
            .await;
        self.settle(res).await
    }

    async fn release(&self, d: &Delivery) -> Result<()> {
        let r = self.receipt(d)?;
        let k = &r.keys;
        let res = scripts::RELEASE
            .key(&k.streams)
            .key(&k.signal)
            .arg(&k.base)
            .arg(r.token())
            .invoke_async(&mut self.conn())
            .await;
        self.settle(res).await
    }

    async fn extend_leases(&self, receipts: &[Receipt], lease: Duration) -> Result<Vec<usize>> {
        // Per queue: the receipts with their positions in `receipts`.
        let mut by_queue: HashMap<&str, Vec<(usize, &RedisReceipt)>> = HashMap::new();
        for (i, r) in receipts.iter().enumerate() {
            let r = r.get::<RedisReceipt>().ok_or_else(|| Error::broker("receipt was not issued by a Redis broker"))?;
            by_queue.entry(&r.keys.base).or_default().push((i, r));
        }
        let mut lost = Vec::new();
        let mut first_err = None;
        for rs in by_queue.into_values() {
            let k = &rs[0].1.keys;
            for chunk in rs.chunks(MAX_EXTEND) {
                // The key is not used: it routes the call to the queue's Cluster slot.
                let mut inv = scripts::EXTEND.key(&k.streams);
                inv.arg(&k.base).arg(ms(lease));
                for (_, r) in chunk {
                    inv.arg(r.token());
                }
                // Every queue gets its extension even if another's failed; then the first error
                // is reported, as nothing can be said of the leases it could not ask about.
                match inv.invoke_async::<Vec<i64>>(&mut self.conn()).await {
                    Ok(held) => lost.extend(chunk.iter().zip(held).filter(|(_, h)| *h == 0).map(|((i, _), _)| *i)),
                    Err(e) => {
                        first_err.get_or_insert(err(e));
                    }
                }
            }
        }
        first_err.map_or(Ok(lost), Err)
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats> {
        let k = self.keys(queue);
        let mut conn = self.conn();
        let suffixes: Vec<String> = redis::cmd("SMEMBERS").arg(&k.streams).query_async(&mut conn).await.map_err(err)?;
        let mut pipe = redis::pipe();
        pipe.zcard(&k.delayed).zcard(&k.archived).exists(&k.paused).zcard(format!("{}:retrying", k.base));
        for s in &suffixes {
            // The group's `pending` (delivered, not acked) and `lag` (not delivered yet).
            pipe.cmd("XLEN").arg(k.stream(s)).cmd("XINFO").arg("GROUPS").arg(k.stream(s));
        }
        // A listed stream that is gone or lost its group counts as empty, not as an error.
        pipe.ignore_errors();
        let mut values: Vec<redis::Value> = pipe
            .query_async::<Vec<redis::RedisResult<redis::Value>>>(&mut conn)
            .await
            .map_err(err)?
            .into_iter()
            .map(|r| r.unwrap_or(redis::Value::Nil))
            .collect();
        let num = |v: &redis::Value| redis::from_redis_value_ref::<u64>(v).unwrap_or(0);
        let mut st = QueueStats::default();
        st.queue = queue.to_owned();
        st.scheduled = values.first().map(num).unwrap_or(0);
        st.archived = values.get(1).map(num).unwrap_or(0);
        st.paused = values.get(2).map(num).unwrap_or(0) > 0;
        st.retry = values.get(3).map(num).unwrap_or(0);
        for (pair, s) in values.split_off(4.min(values.len())).chunks(2).zip(&suffixes) {
            let len = num(&pair[0]);
            let (pending, lag, last) = pair.get(1).map(group_counts).unwrap_or((0, None, None));
            st.active += pending;
            // Acked entries can stay in a stream a while (see `forget` in the scripts), so its
            // length alone overcounts; the lag is exact when Redis knows it. After a deletion
            // among the entries not delivered yet (an operator's archive or delete), Redis
            // does not: then the entries delivered so far are counted, and taken off.
            st.pending += match (lag, last) {
                (Some(lag), _) => lag,
                (None, Some(last)) => {
                    let delivered: u64 =
                        COUNT_DELIVERED.key(k.stream(s)).arg(last).invoke_async(&mut conn).await.map_err(err)?;
                    len.saturating_sub(delivered)
                }
                (None, None) => len.saturating_sub(pending),
            };
        }
        if st.pending > 0 {
            st.latency = inspect::latency(self, &k).await?;
        }
        Ok(st)
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
impl QueueAdmin for RedisBroker {
    async fn pause(&self, queue: &str) -> Result<()> {
        self.register(&[queue]).await;
        let k = self.keys(queue);
        redis::cmd("SET").arg(&k.paused).arg(1).query_async::<()>(&mut self.conn()).await.map_err(err)
    }

    async fn resume(&self, queue: &str) -> Result<()> {
        let k = self.keys(queue);
        redis::pipe()
            .del(&k.paused)
            .lpush(&k.signal, 1)
            .ltrim(&k.signal, 0, 0)
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(err)
    }

    async fn archived(&self, queue: &str, offset: usize, limit: usize) -> Result<Vec<ArchivedTask>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let k = self.keys(queue);
        let mut conn = self.conn();
        let ids: Vec<String> = redis::cmd("ZREVRANGE")
            .arg(&k.archived)
            .arg(offset)
            .arg(offset.saturating_add(limit - 1))
            .query_async(&mut conn)
            .await
            .map_err(err)?;
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HMGET").arg(k.task(id)).arg("msg").arg("reason").arg("archived_at");
        }
        let rows: Vec<(Option<Vec<u8>>, Option<String>, Option<String>)> =
            pipe.query_async(&mut conn).await.map_err(err)?;
        Ok(rows
            .into_iter()
            .map(|(msg, reason, at)| {
                let raw = msg.unwrap_or_default();
                let payload = Payload::decode(raw);
                let at =
                    at.and_then(|a| a.parse().ok()).map_or(SystemTime::UNIX_EPOCH, conveyor_core::time::from_millis);
                ArchivedTask::new(payload, reason.unwrap_or_default(), at)
            })
            .collect())
    }
}

#[async_trait]
impl RawPublish for RedisBroker {
    async fn publish_raw(&self, queue: &str, bytes: Vec<u8>) -> Result<()> {
        self.register(&[queue]).await;
        self.publish_bytes(queue, TaskId::random().as_str(), &bytes, 0, Duration::ZERO).await
    }
}
