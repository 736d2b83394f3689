//! The Redis result backend of [Conveyor](https://crates.io/crates/conveyor).
//!
//! Task records are hashes with a TTL once the task finished; locks are `SET NX PX` keys
//! released only by their holder; counters and group results are single keys. Every change is
//! one transaction (`MULTI`) or one Lua script (`lua/*.lua`), so concurrent workers cannot
//! interleave.
//!
//! URL: `redis://[user:pass@]host[:port][/db][?prefix=NAME]` (the same URL as the broker's).

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use conveyor_core::{
    time, Attempt, Error, LockResult, Result, ResultBackend, StateUpdate, TaskId, TaskMessage, TaskRecord, TaskState,
    ATTEMPTS_KEPT, UNCONFIRMED_TTL,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use serde_json::value::RawValue;

macro_rules! script {
    ($name:ident, $file:literal) => {
        static $name: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!($file)));
    };
}

script!(CREATE, "../lua/create.lua");
script!(TRY_LOCK, "../lua/try_lock.lua");
script!(UNLOCK, "../lua/unlock.lua");
script!(INCR, "../lua/incr.lua");
script!(GROUP_ADD, "../lua/group_add.lua");
script!(UPDATE, "../lua/update.lua");
script!(CONFIRM, "../lua/confirm.lua");

/// The Redis result backend. Cheap to clone.
#[derive(Clone)]
pub struct RedisBackend {
    conn: ConnectionManager,
    prefix: String,
    /// The URL, its password redacted.
    location: String,
    /// Whether completed tasks are indexed per queue (`?list_completed=true`).
    list_completed: bool,
}

/// A redis client for `url`, with `tls`'s CA and client certificate when it has them (the
/// broker crate's `config::client`, which this crate may not depend on).
fn tls_client(url: &str, tls: &conveyor_core::tls::TlsFiles) -> redis::RedisResult<redis::Client> {
    #[cfg(feature = "tls")]
    {
        let _ = rustls::crypto::ring::default_provider().install_default();
        if tls.ca.is_some() || tls.cert.is_some() {
            let client_tls = match (&tls.cert, &tls.key) {
                (Some(cert), Some(key)) => {
                    Some(redis::ClientTlsConfig { client_cert: cert.clone(), client_key: key.clone() })
                }
                _ => None,
            };
            let certs = redis::TlsCertificates { client_tls, root_cert: tls.ca.clone() };
            return redis::Client::build_with_tls(url, certs);
        }
    }
    let _ = tls;
    redis::Client::open(url)
}

fn err(e: redis::RedisError) -> Error {
    Error::backend_failure(failure_kind(&e), e)
}

/// The kind of a Redis failure: the redis crate's own view of whether retrying helps (a
/// server that is loading its data, TRYAGAIN or a failover is only unavailable).
pub(crate) fn failure_kind(e: &redis::RedisError) -> conveyor_core::FailureKind {
    conveyor_core::FailureKind::from_signals(
        e.is_timeout(),
        e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal(),
        e.kind() == redis::ErrorKind::Parse,
        matches!(e.retry_method(), redis::RetryMethod::NoRetry),
    )
}

/// A cheap random number (for sampling), from the standard library's per-process random hash
/// keys and a counter.
fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    static KEYS: std::sync::LazyLock<RandomState> = std::sync::LazyLock::new(RandomState::new);
    KEYS.hash_one(N.fetch_add(1, Ordering::Relaxed)) as u32
}

fn ms(d: Duration) -> u64 {
    d.as_millis().clamp(1, u128::from(u64::MAX / 4)) as u64
}

impl RedisBackend {
    /// Connects to the server a `redis://` URL names; `?prefix=NAME` sets the key namespace
    /// (default `conveyor`); `?list_completed=true` keeps an index of each queue's completed
    /// tasks, so that operators can count and list them (see
    /// [`ResultBackend::completed`]; off by default: it costs Redis a sorted-set insert per
    /// task).
    pub async fn connect(url: &str) -> Result<Self> {
        let mut parsed = conveyor_core::parse_url(url)?;
        let mut prefix = "conveyor".to_owned();
        let mut list_completed = None;
        let mut tls = conveyor_core::tls::TlsFiles::default();
        let mut tls_error = None;
        let rest: Vec<(String, String)> = parsed
            .query_pairs()
            .filter_map(|(k, v)| match &*k {
                "prefix" => {
                    prefix = v.into_owned();
                    None
                }
                "list_completed" => {
                    list_completed = Some(v.into_owned());
                    None
                }
                // The broker's settings, when both share one URL.
                "archive_limit" | "connections" => None,
                other => match tls.take(url, other, &v) {
                    Ok(true) => None,
                    Ok(false) => Some((k.into_owned(), v.into_owned())),
                    Err(e) => {
                        tls_error = Some(e);
                        None
                    }
                },
            })
            .collect();
        let bad = |reason: String| Error::invalid_url(url, reason);
        conveyor_core::check_prefix(&prefix).map_err(bad)?;
        let list_completed = match list_completed.as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(v) => return Err(bad(format!("list_completed `{v}` must be true or false"))),
        };
        if let Some(e) = tls_error {
            return Err(e);
        }
        tls.check(url, parsed.scheme() == "rediss", cfg!(feature = "tls"), "redis-tls")?;
        if let Some((k, _)) = rest.iter().find(|(k, _)| k != "protocol") {
            let known = format!(
                "prefix, list_completed, archive_limit, connections, protocol, {}",
                conveyor_core::tls::TLS_PARAMS
            );
            return Err(bad(format!("unknown parameter `{k}` (known: {known})")));
        }
        conveyor_core::replace_query(&mut parsed, &rest);
        if tls.insecure_skip_verify {
            parsed.set_fragment(Some("insecure"));
        }
        let client = tls_client(parsed.as_str(), &tls).map_err(|e| Error::invalid_url(url, e.to_string()))?;
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(2));
        let target = conveyor_core::url_target(url);
        let mut conn = client
            .get_connection_manager_with_config(cfg)
            .await
            .map_err(|e| Error::backend(conveyor_core::first_contact_failure("Redis", &target, &e.to_string())))?;
        // A server that needs a password answers the first command, not the connect; something
        // else than Redis on the port fails to parse. Both are told at once, here.
        redis::cmd("PING")
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| Error::backend(conveyor_core::first_contact_failure("Redis", &target, &e.to_string())))?;
        let location = conveyor_core::redact_url(parsed.as_str());
        Ok(RedisBackend { conn, prefix, location, list_completed })
    }

    fn record_key(&self, id: &TaskId) -> String {
        format!("{}:task:{id}", self.prefix)
    }

    fn check_list_completed(&self, operation: &'static str) -> Result<()> {
        match self.list_completed {
            true => Ok(()),
            false => {
                Err(Error::Unsupported { broker: "the Redis result backend without `?list_completed=true`", operation })
            }
        }
    }

    /// The index of `queue`'s completed tasks whose records are kept.
    fn done_key(&self, queue: &str) -> String {
        format!("{}:done:{queue}", self.prefix)
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }
}

/// An attempt as one short field value: `started_ms|duration_ms|outcome|worker|error`. Short,
/// so that a record whose values all stay under Redis's `hash-max-listpack-value` (64 bytes)
/// keeps its compact encoding: as JSON, the attempt alone made a completed record take three
/// times the memory (798 bytes against 264).
fn encode_attempt(a: &Attempt) -> String {
    let started = time::to_millis(a.started_at);
    let took = a.duration().as_millis();
    let worker = a.worker.as_deref().unwrap_or("");
    format!("{started}|{took}|{}|{worker}|{}", a.outcome.as_str(), a.error.as_deref().unwrap_or(""))
}

/// The attempt `number` that [`encode_attempt`] wrote, if it parses.
fn decode_attempt(number: u32, v: &str) -> Option<Attempt> {
    let mut it = v.splitn(5, '|');
    let started = time::from_millis(it.next()?.parse().ok()?);
    let took = Duration::from_millis(it.next()?.parse().ok()?);
    let outcome: TaskState = it.next()?.parse().ok()?;
    let worker = Some(it.next()?).filter(|w| !w.is_empty()).map(str::to_owned);
    let error = it.next().filter(|e| !e.is_empty()).map(str::to_owned);
    let mut a = Attempt::ended(number, started, outcome, error);
    a.ended_at = started + took;
    a.worker = worker;
    Some(a)
}

fn parse_record(id: &TaskId, mut h: HashMap<String, String>) -> Result<TaskRecord> {
    let bad = |what: &str| Error::backend(format!("task record `{id}` has a bad `{what}` field"));
    let state: TaskState = serde_json::from_value(serde_json::Value::String(h.remove("state").unwrap_or_default()))
        .map_err(|_| bad("state"))?;
    let num = |h: &HashMap<String, String>, k: &str| h.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let result = match h.remove("result") {
        Some(r) => Some(RawValue::from_string(r).map_err(|_| bad("result"))?),
        None => None,
    };
    let record = serde_json::json!({
        "id": id,
        "name": h.get("name").cloned().unwrap_or_default(),
        "queue": h.get("queue").cloned().unwrap_or_default(),
        "state": state,
        "retried": num(&h, "retried"),
        "max_retry": num(&h, "max_retry"),
        "error": h.get("error"),
        "created_at": num(&h, "created_at"),
        "updated_at": num(&h, "updated_at"),
    });
    let mut rec: TaskRecord = serde_json::from_value(record).map_err(|_| bad("record"))?;
    rec.result = result;
    // Fields `a:N`: one ended attempt each. One that does not parse is left out.
    rec.attempts = h.iter().filter_map(|(k, v)| decode_attempt(k.strip_prefix("a:")?.parse().ok()?, v)).collect();
    rec.attempts.sort_by_key(|a| a.number);
    Ok(rec)
}

#[async_trait]
impl ResultBackend for RedisBackend {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn describe(&self) -> String {
        format!("{} (prefix `{}`)", self.location, self.prefix)
    }

    async fn create(&self, r: &TaskRecord) -> Result<()> {
        let created: i64 = CREATE
            .key(self.record_key(&r.id))
            .arg(&r.name)
            .arg(&r.queue)
            .arg(r.state.as_str())
            .arg(r.retried)
            .arg(r.max_retry)
            .arg(time::to_millis(r.created_at))
            .arg(time::to_millis(r.updated_at))
            .arg(ms(UNCONFIRMED_TTL))
            .invoke_async(&mut self.conn())
            .await
            .map_err(err)?;
        if created == 0 {
            return Err(Error::DuplicateTask { id: r.id.to_string() });
        }
        Ok(())
    }

    async fn confirm(&self, id: &TaskId) -> Result<()> {
        CONFIRM.key(self.record_key(id)).invoke_async::<i64>(&mut self.conn()).await.map(drop).map_err(err)
    }

    async fn update(&self, task: &TaskMessage, u: StateUpdate) -> Result<()> {
        // One script: the fence (a stale run's write is dropped) and the write are one step.
        let mut inv = UPDATE.key(self.record_key(&task.id));
        inv.arg(u.state.as_str()).arg(u.attempt());
        match (u.state.is_terminal(), u.retain) {
            (true, Some(d)) if d.is_zero() => inv.arg(0),
            (true, Some(d)) => inv.arg(ms(d)),
            // A non-terminal state keeps the record's TTL: a record that still has a finished
            // run's TTL (only a redelivered duplicate of a completed task) keeps it, and at
            // worst lapses during the rerun and is written again when it ends.
            _ => inv.arg(""),
        };
        match &u.ran {
            Some(a) if a.number >= ATTEMPTS_KEPT => inv.arg(format!("a:{}", a.number - ATTEMPTS_KEPT)),
            _ => inv.arg(""),
        };
        inv.arg("name").arg(&task.name).arg("queue").arg(&task.queue).arg("max_retry").arg(task.max_retry);
        inv.arg("state").arg(u.state.as_str()).arg("retried").arg(u.retried);
        inv.arg("updated_at").arg(time::to_millis(SystemTime::now()));
        // The envelope's creation time is the record's (the client wrote the record from the
        // same envelope): writing it again keeps it, and fills in a missing record.
        inv.arg("created_at").arg(time::to_millis(task.created_at));
        if let Some(e) = &u.error {
            inv.arg("error").arg(e);
        }
        if let Some(r) = &u.result {
            inv.arg("result").arg(r.get());
        }
        if let Some(a) = &u.ran {
            inv.arg(format!("a:{}", a.number)).arg(encode_attempt(a));
        }
        let kept = match (u.state, u.retain) {
            (TaskState::Completed, Some(d)) if self.list_completed && !d.is_zero() => Some(d),
            _ => None,
        };
        let Some(kept) = kept else {
            return inv.invoke_async::<i64>(&mut self.conn()).await.map(drop).map_err(err);
        };
        // A completed task joins its queue's index (scored by when its record lapses), in the
        // same round trip as the record; one completion in 64 drops what lapsed. (Separate
        // commands, not one script: the index and the record are in different slots.)
        let (done, now) = (self.done_key(&task.queue), time::to_millis(SystemTime::now()));
        let mut pipe = redis::pipe();
        pipe.invoke_script(&inv).ignore();
        pipe.zadd(&done, task.id.as_str(), now.saturating_add(ms(kept))).ignore();
        if rand_u32().is_multiple_of(64) {
            pipe.zrembyscore(&done, "-inf", now).ignore();
        }
        match pipe.query_async::<()>(&mut self.conn()).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // The server forgot its scripts (restarted): load it, then once more.
                inv.load_async(&mut self.conn()).await.map_err(err)?;
                pipe.query_async::<()>(&mut self.conn()).await.map_err(err)
            }
            r => r.map_err(err),
        }
    }

    async fn completed(&self, queue: &str, offset: usize, limit: usize) -> Result<Vec<TaskRecord>> {
        self.check_list_completed("list completed tasks")?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let done = self.done_key(queue);
        let now = time::to_millis(SystemTime::now());
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(&done)
            .arg("+inf")
            .arg(format!("({now}"))
            .arg("BYSCORE")
            .arg("REV")
            .arg("LIMIT")
            .arg(offset)
            .arg(limit)
            .query_async(&mut self.conn())
            .await
            .map_err(err)?;
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HGETALL").arg(self.record_key(&TaskId::from(id.as_str())));
        }
        let found: Vec<HashMap<String, String>> = pipe.query_async(&mut self.conn()).await.map_err(err)?;
        let mut out = Vec::with_capacity(ids.len());
        let mut stale = Vec::new();
        for (id, h) in ids.into_iter().zip(found) {
            let id = TaskId::from(id);
            match parse_record(&id, h) {
                Ok(r) if r.state == TaskState::Completed => out.push(r),
                // Deleted, or run again since: no longer a completed task of this queue.
                _ => stale.push(id.to_string()),
            }
        }
        if !stale.is_empty() {
            let _ = redis::cmd("ZREM").arg(&done).arg(&stale).query_async::<()>(&mut self.conn()).await;
        }
        Ok(out)
    }

    async fn completed_count(&self, queue: &str) -> Result<u64> {
        self.check_list_completed("count completed tasks")?;
        let now = time::to_millis(SystemTime::now());
        redis::cmd("ZCOUNT")
            .arg(self.done_key(queue))
            .arg(format!("({now}"))
            .arg("+inf")
            .query_async(&mut self.conn())
            .await
            .map_err(err)
    }

    async fn get(&self, id: &TaskId) -> Result<Option<TaskRecord>> {
        let h: HashMap<String, String> =
            redis::cmd("HGETALL").arg(self.record_key(id)).query_async(&mut self.conn()).await.map_err(err)?;
        if h.is_empty() {
            return Ok(None);
        }
        parse_record(id, h).map(Some)
    }

    async fn delete(&self, id: &TaskId) -> Result<bool> {
        let key = self.record_key(id);
        let queue: Option<String> =
            redis::cmd("HGET").arg(&key).arg("queue").query_async(&mut self.conn()).await.map_err(err)?;
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(&key);
        if let Some(q) = &queue {
            pipe.cmd("ZREM").arg(self.done_key(q)).arg(id.as_str()).ignore();
        }
        let (n,): (i64,) = pipe.query_async(&mut self.conn()).await.map_err(err)?;
        Ok(n > 0)
    }

    async fn try_lock(&self, key: &str, holder: &str, ttl: Duration) -> Result<LockResult> {
        let r: (i64, Option<String>) = TRY_LOCK
            .key(format!("{}:lock:{key}", self.prefix))
            .arg(holder)
            .arg(ms(ttl))
            .invoke_async(&mut self.conn())
            .await
            .map_err(err)?;
        Ok(match r {
            (1, _) => LockResult::Acquired,
            (_, h) => LockResult::Held { holder: h.unwrap_or_default() },
        })
    }

    async fn unlock(&self, key: &str, holder: &str) -> Result<bool> {
        let n: i64 = UNLOCK
            .key(format!("{}:lock:{key}", self.prefix))
            .arg(holder)
            .invoke_async(&mut self.conn())
            .await
            .map_err(err)?;
        Ok(n == 1)
    }

    async fn incr(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        INCR.key(format!("{}:ctr:{key}", self.prefix))
            .arg(delta)
            .arg(ttl.map(|t| ms(t).to_string()).unwrap_or_default())
            .invoke_async(&mut self.conn())
            .await
            .map_err(err)
    }

    async fn group_add(&self, group: &str, index: u32, value: &RawValue, ttl: Duration) -> Result<u32> {
        GROUP_ADD
            .key(format!("{}:group:{group}", self.prefix))
            .arg(index)
            .arg(value.get())
            .arg(ms(ttl))
            .invoke_async(&mut self.conn())
            .await
            .map_err(err)
    }

    async fn group_members(&self, group: &str) -> Result<Vec<(u32, Box<RawValue>)>> {
        let h: HashMap<u32, String> = redis::cmd("HGETALL")
            .arg(format!("{}:group:{group}", self.prefix))
            .query_async(&mut self.conn())
            .await
            .map_err(err)?;
        let mut out = Vec::with_capacity(h.len());
        for (i, v) in h {
            out.push((i, RawValue::from_string(v).map_err(|e| Error::backend(format!("bad group entry: {e}")))?));
        }
        out.sort_by_key(|(i, _)| *i);
        Ok(out)
    }

    async fn list_push(&self, key: &str, value: &str, cap: usize, ttl: Duration) -> Result<()> {
        let key = format!("{}:list:{key}", self.prefix);
        let last = cap.clamp(1, i64::MAX as usize) as i64 - 1;
        redis::pipe()
            .atomic()
            .lpush(&key, value)
            .ignore()
            .ltrim(&key, 0, last as isize)
            .ignore()
            .pexpire(&key, ms(ttl) as i64)
            .ignore()
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(err)
    }

    async fn list_recent(&self, key: &str, limit: usize) -> Result<Vec<String>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        redis::cmd("LRANGE")
            .arg(format!("{}:list:{key}", self.prefix))
            .arg(0)
            .arg(limit.min(i64::MAX as usize) as i64 - 1)
            .query_async(&mut self.conn())
            .await
            .map_err(err)
    }

    async fn map_set(&self, map: &str, field: &str, value: &str) -> Result<()> {
        let key = format!("{}:ops:{map}", self.prefix);
        redis::cmd("HSET").arg(key).arg(field).arg(value).query_async::<()>(&mut self.conn()).await.map_err(err)
    }

    async fn map_remove(&self, map: &str, field: &str) -> Result<()> {
        let key = format!("{}:ops:{map}", self.prefix);
        redis::cmd("HDEL").arg(key).arg(field).query_async::<()>(&mut self.conn()).await.map_err(err)
    }

    async fn map_incr(&self, map: &str, field: &str, delta: i64) -> Result<i64> {
        let key = format!("{}:ops:{map}", self.prefix);
        redis::cmd("HINCRBY").arg(key).arg(field).arg(delta).query_async(&mut self.conn()).await.map_err(err)
    }

    async fn map_all(&self, map: &str) -> Result<Vec<(String, String)>> {
        let key = format!("{}:ops:{map}", self.prefix);
        redis::cmd("HGETALL").arg(key).query_async(&mut self.conn()).await.map_err(err)
    }
}
