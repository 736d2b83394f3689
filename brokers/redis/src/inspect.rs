//! The inspector's view of the Redis broker: lists read with plain commands (pages, never a
//! whole queue at once), actions as one script each (`task_action.lua`, `bulk_action.lua`).
//! Queues are found in the registry set `PREFIX:queues`, which each process adds a queue to
//! once, the first time it publishes to, receives from or pauses it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use conveyor_core::inspect::{check_action, rerun_envelope, BrokerInspect, Moved, Page, Rerun, TaskInfo};
use conveyor_core::{time, Error, Payload, Result, TaskId, TaskState};
use redis::Value;

use crate::keys::QueueKeys;
use crate::{err, scripts, RedisBroker};

/// How many entries one read of a stream takes while looking for a task.
const SCAN: usize = 1000;

/// A stream entry: its id, task id, payload.
type Entry = (String, String, Vec<u8>);

impl RedisBroker {
    /// The registry of queue names.
    fn registry(&self) -> String {
        format!("{}:queues", self.inner.cfg.prefix)
    }

    /// Adds `queues` to the registry, once per process.
    pub(crate) async fn register(&self, queues: &[&str]) {
        let new: Vec<&str> = {
            let seen = self.inner.registered.lock().unwrap_or_else(|e| e.into_inner());
            queues.iter().copied().filter(|q| !seen.contains(*q)).collect()
        };
        if new.is_empty() {
            return;
        }
        let added: redis::RedisResult<i64> =
            redis::cmd("SADD").arg(self.registry()).arg(&new).query_async(&mut self.conn()).await;
        match added {
            Ok(_) => {
                let mut seen = self.inner.registered.lock().unwrap_or_else(|e| e.into_inner());
                seen.extend(new.iter().map(|q| (*q).to_owned()));
            }
            // Tried again on the next call; the queue works without it.
            Err(e) => tracing::debug!(error = %e, "could not add queues to the registry"),
        }
    }

    /// The queue's streams in reading order (priority 9 first, handed-back first in each).
    async fn streams(&self, k: &QueueKeys) -> Result<Vec<String>> {
        let mut s: Vec<String> =
            redis::cmd("SMEMBERS").arg(&k.streams).query_async(&mut self.conn()).await.map_err(err)?;
        s.retain(|x| x.len() == 2 && matches!(x.as_bytes()[0], b's' | b'f') && x.as_bytes()[1].is_ascii_digit());
        s.sort_by_key(|x| (std::cmp::Reverse(x.as_bytes()[1]), x.as_bytes()[0] != b'f'));
        Ok(s)
    }

    /// The last entry id consumer group `g` of a stream delivered (`0-0` if none).
    async fn last_delivered(&self, skey: &str) -> Result<String> {
        let v: redis::RedisResult<Value> =
            redis::cmd("XINFO").arg("GROUPS").arg(skey).query_async(&mut self.conn()).await;
        let Ok(Value::Array(groups)) = v else { return Ok("0-0".to_owned()) };
        for g in groups {
            let fields: Vec<(String, Value)> = match g {
                Value::Array(f) => f.chunks(2).filter_map(|c| Some((text(&c[0])?, c.get(1)?.clone()))).collect(),
                Value::Map(m) => m.into_iter().filter_map(|(k, v)| Some((text(&k)?, v))).collect(),
                _ => continue,
            };
            if fields.iter().any(|(k, v)| k == "name" && text(v).as_deref() == Some("g")) {
                return Ok(fields
                    .into_iter()
                    .find(|(k, _)| k == "last-delivered-id")
                    .and_then(|(_, v)| text(&v))
                    .unwrap_or_else(|| "0-0".to_owned()));
            }
        }
        Ok("0-0".to_owned())
    }

    /// Entries of a stream from `from` (`(ID` exclusive, `-` all), at most `count`.
    async fn entries(&self, skey: &str, from: &str, count: usize) -> Result<Vec<Entry>> {
        let v: Value = redis::cmd("XRANGE")
            .arg(skey)
            .arg(from)
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.conn())
            .await
            .map_err(err)?;
        Ok(parse_entries(v))
    }

    /// The pending tasks of a queue in reading order: `limit` after the first `offset`, read a
    /// chunk at a time (a deep page costs time in proportion to its offset, not memory).
    async fn pending(&self, k: &QueueKeys, offset: usize, limit: usize) -> Result<Vec<Entry>> {
        const CHUNK: usize = 10_000;
        let (mut out, mut skip) = (Vec::new(), offset);
        for s in self.streams(k).await? {
            if out.len() >= limit {
                break;
            }
            let skey = k.stream(&s);
            let mut from = format!("({}", self.last_delivered(&skey).await?);
            loop {
                let want = (skip + limit - out.len()).min(CHUNK);
                let batch = self.entries(&skey, &from, want).await?;
                let n = batch.len();
                if let Some(last) = batch.last() {
                    from = format!("({}", last.0);
                }
                let skipped = skip.min(n);
                skip -= skipped;
                out.extend(batch.into_iter().skip(skipped));
                if n < want || out.len() >= limit {
                    break;
                }
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    /// The active (leased) tasks of a queue, the first `n`.
    async fn active(&self, k: &QueueKeys, n: usize) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        for s in self.streams(k).await? {
            if out.len() >= n {
                break;
            }
            let skey = k.stream(&s);
            let pel: redis::RedisResult<Vec<(String, String, u64, u64)>> = redis::cmd("XPENDING")
                .arg(&skey)
                .arg("g")
                .arg("-")
                .arg("+")
                .arg(n - out.len())
                .query_async(&mut self.conn())
                .await;
            let Ok(pel) = pel else { continue };
            if pel.is_empty() {
                continue;
            }
            let mut pipe = redis::pipe();
            for (eid, ..) in &pel {
                pipe.cmd("XRANGE").arg(&skey).arg(eid).arg(eid);
            }
            let found: Vec<Value> = pipe.query_async(&mut self.conn()).await.map_err(err)?;
            out.extend(found.into_iter().flat_map(parse_entries));
        }
        Ok(out)
    }

    /// Scheduled or retry tasks (by due time), after the first `offset`, at most `limit`.
    async fn delayed(&self, k: &QueueKeys, retry: bool, page: Page) -> Result<Vec<(String, f64)>> {
        let mut conn = self.conn();
        if retry {
            let end = page.offset.saturating_add(page.limit).saturating_sub(1) as isize;
            return redis::cmd("ZRANGE")
                .arg(retrying(k))
                .arg(page.offset)
                .arg(end)
                .arg("WITHSCORES")
                .query_async(&mut conn)
                .await
                .map_err(err);
        }
        let (mut out, mut skipped, mut start) = (Vec::new(), 0usize, 0usize);
        loop {
            let batch: Vec<(String, f64)> = redis::cmd("ZRANGE")
                .arg(&k.delayed)
                .arg(start)
                .arg(start + SCAN - 1)
                .arg("WITHSCORES")
                .query_async(&mut conn)
                .await
                .map_err(err)?;
            if batch.is_empty() {
                return Ok(out);
            }
            let ids: Vec<&str> = batch.iter().map(|(id, _)| id.as_str()).collect();
            let in_retry: Vec<Option<f64>> =
                redis::cmd("ZMSCORE").arg(retrying(k)).arg(&ids).query_async(&mut conn).await.map_err(err)?;
            for (item, r) in batch.iter().zip(in_retry) {
                if r.is_some() {
                    continue;
                }
                if skipped < page.offset {
                    skipped += 1;
                } else if out.len() < page.limit {
                    out.push(item.clone());
                }
            }
            if out.len() >= page.limit || batch.len() < SCAN {
                return Ok(out);
            }
            start += SCAN;
        }
    }

    /// The stored payloads of delayed or archived tasks (`HMGET msg reason archived_at`).
    async fn stored(
        &self,
        k: &QueueKeys,
        ids: &[String],
    ) -> Result<Vec<(Option<Vec<u8>>, Option<String>, Option<String>)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("HMGET").arg(k.task(id)).arg("msg").arg("reason").arg("archived_at");
        }
        pipe.query_async(&mut self.conn()).await.map_err(err)
    }

    /// Where task `id` waits as a stream entry: its stream suffix, entry, and whether it is
    /// pending (not yet delivered) rather than active. Scans the streams a page at a time.
    async fn locate(&self, k: &QueueKeys, id: &str) -> Result<Option<(String, Entry, bool)>> {
        for s in self.streams(k).await? {
            let skey = k.stream(&s);
            let last = self.last_delivered(&skey).await?;
            let mut from = "-".to_owned();
            loop {
                let batch = self.entries(&skey, &from, SCAN).await?;
                let n = batch.len();
                if let Some(e) = batch.iter().find(|e| e.1 == id) {
                    let pending = eid_after(&e.0, &last);
                    return Ok(Some((s, e.clone(), pending)));
                }
                match batch.last() {
                    Some(e) if n == SCAN => from = format!("({}", e.0),
                    _ => break,
                }
            }
        }
        Ok(None)
    }

    /// An operator's action on one task (see `task_action.lua`).
    async fn act(&self, queue: &str, id: &TaskId, action: &'static str, reason: &str, rerun: Rerun) -> Result<()> {
        let k = self.keys(queue);
        let mut conn = self.conn();
        let (delayed, archived, live): (Option<f64>, Option<f64>, bool) = redis::pipe()
            .cmd("ZSCORE")
            .arg(&k.delayed)
            .arg(id.as_str())
            .cmd("ZSCORE")
            .arg(&k.archived)
            .arg(id.as_str())
            .cmd("HEXISTS")
            .arg(&k.ids)
            .arg(id.as_str())
            .query_async(&mut conn)
            .await
            .map_err(err)?;
        let (mut pending_ref, mut renewed, mut prio, mut archived_at) = (String::new(), Vec::new(), 0u8, String::new());
        if delayed.is_none() && archived.is_some() && action == "run" {
            let (msg, _, at) = self.stored(&k, &[id.to_string()]).await?.pop().unwrap_or_default();
            // Gone since: another operator ran or deleted it.
            let msg = msg.ok_or_else(|| Error::NotFound { id: id.to_string() })?;
            let Payload::Task(t) = Payload::decode(msg) else {
                return Err(Error::InvalidPayload(format!("archived task `{id}` did not decode: it cannot run again")));
            };
            let t = rerun_envelope(t.as_ref().clone(), rerun);
            (renewed, prio, archived_at) = (t.encode()?, t.priority, at.unwrap_or_default());
        } else if delayed.is_none() && archived.is_none() && live {
            match self.locate(&k, id.as_str()).await? {
                Some((_, _, false)) => {
                    return Err(conveyor_core::inspect::invalid_state(id, TaskState::Active, action))
                }
                Some((s, e, true)) => pending_ref = format!("{s}|{}", e.0),
                None => {}
            }
        }
        let answer: Vec<String> = operator_keys(scripts::TASK_ACTION.prepare_invoke(), &k)
            .arg(&k.base)
            .arg(id.as_str())
            .arg(action)
            .arg(pending_ref)
            .arg(reason)
            .arg(self.inner.cfg.archive_limit)
            .arg(renewed)
            .arg(prio)
            .arg(archived_at)
            .invoke_async(&mut conn)
            .await
            .map_err(err)?;
        match answer.first().map(String::as_str) {
            Some("ok") => Ok(()),
            Some("state") => {
                let state = answer.get(1).and_then(|s| parse_state(s)).unwrap_or(TaskState::Active);
                Err(conveyor_core::inspect::invalid_state(id, state, action))
            }
            _ => Err(Error::NotFound { id: id.to_string() }),
        }
    }

    /// An operator's action on every task of a state (see `bulk_action.lua`).
    async fn act_all(&self, queue: &str, state: TaskState, action: &'static str, reason: &str) -> Result<Vec<TaskId>> {
        check_action(&TaskId::from("*"), state, action)?;
        let k = self.keys(queue);
        let (mut ids, mut offset) = (Vec::new(), 0i64);
        loop {
            let answer: Vec<Value> = operator_keys(scripts::BULK_ACTION.prepare_invoke(), &k)
                .arg(&k.base)
                .arg(state.as_str())
                .arg(action)
                .arg(reason)
                .arg(self.inner.cfg.archive_limit)
                .arg(offset)
                .invoke_async(&mut self.conn())
                .await
                .map_err(err)?;
            let mut answer = answer.into_iter();
            let next: i64 = answer.nth(1).and_then(|v| redis::from_redis_value(v).ok()).unwrap_or(-1);
            ids.extend(answer.filter_map(|v| text(&v)).map(TaskId::from));
            if next < 0 {
                return Ok(ids);
            }
            offset = next;
        }
    }
}

/// The keys both operator scripts take: streams, delayed, ids, archived, signal.
fn operator_keys<'a>(mut inv: redis::ScriptInvocation<'a>, k: &QueueKeys) -> redis::ScriptInvocation<'a> {
    inv.key(&k.streams).key(&k.delayed).key(&k.ids).key(&k.archived).key(&k.signal);
    inv
}

fn retrying(k: &QueueKeys) -> String {
    format!("{}:retrying", k.base)
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn parse_state(s: &str) -> Option<TaskState> {
    s.parse().ok()
}

/// `XRANGE` entries: `[[id, [field, value, ...]], ...]`; an entry is `{task id: payload}`.
fn parse_entries(v: Value) -> Vec<Entry> {
    let Value::Array(items) = v else { return Vec::new() };
    items
        .into_iter()
        .filter_map(|e| {
            let Value::Array(mut pair) = e else { return None };
            let fields = pair.pop()?;
            let eid = text(pair.first()?)?;
            let mut fields = match fields {
                Value::Array(f) => f.into_iter(),
                _ => return None,
            };
            let id = fields.next().as_ref().and_then(text).unwrap_or_else(|| format!("entry:{eid}"));
            let payload = match fields.next() {
                Some(Value::BulkString(b)) => b,
                _ => Vec::new(),
            };
            Some((eid, id, payload))
        })
        .collect()
}

/// Whether stream entry id `a` comes after `b`.
fn eid_after(a: &str, b: &str) -> bool {
    let parts = |x: &str| {
        let (ms, seq) = x.split_once('-').unwrap_or((x, "0"));
        (ms.parse::<u64>().unwrap_or(0), seq.parse::<u64>().unwrap_or(0))
    };
    parts(a) > parts(b)
}

fn info(queue: &str, state: TaskState, id: String, payload: Vec<u8>) -> TaskInfo {
    TaskInfo::new(TaskId::from(id), queue, state, Payload::decode(payload))
}

fn at_ms(ms: f64) -> SystemTime {
    time::from_millis(ms.max(0.0) as u64)
}

#[async_trait]
impl BrokerInspect for RedisBroker {
    async fn queues(&self) -> Result<Vec<String>> {
        let mut q: Vec<String> =
            redis::cmd("SMEMBERS").arg(self.registry()).query_async(&mut self.conn()).await.map_err(err)?;
        q.sort();
        Ok(q)
    }

    async fn list(&self, queue: &str, state: TaskState, page: Page) -> Result<Vec<TaskInfo>> {
        let k = self.keys(queue);
        let end = page.offset.saturating_add(page.limit);
        Ok(match state {
            TaskState::Pending => {
                let page = self.pending(&k, page.offset, page.limit).await?;
                page.into_iter().map(|(_, id, p)| info(queue, state, id, p)).collect()
            }
            TaskState::Active => {
                let all = self.active(&k, end).await?;
                all.into_iter().skip(page.offset).map(|(_, id, p)| info(queue, state, id, p)).collect()
            }
            TaskState::Scheduled | TaskState::Retry => {
                let due = self.delayed(&k, state == TaskState::Retry, page).await?;
                let ids: Vec<String> = due.iter().map(|(id, _)| id.clone()).collect();
                let stored = self.stored(&k, &ids).await?;
                due.into_iter()
                    .zip(stored)
                    .map(|((id, at), (msg, _, _))| {
                        let mut i = info(queue, state, id, msg.unwrap_or_default());
                        i.next_run_at = Some(at_ms(at));
                        i
                    })
                    .collect()
            }
            TaskState::Archived => {
                if page.limit == 0 {
                    return Ok(Vec::new());
                }
                let ids: Vec<String> = redis::cmd("ZREVRANGE")
                    .arg(&k.archived)
                    .arg(page.offset)
                    .arg(end - 1)
                    .query_async(&mut self.conn())
                    .await
                    .map_err(err)?;
                let stored = self.stored(&k, &ids).await?;
                ids.into_iter()
                    .zip(stored)
                    .map(|(id, (msg, reason, at))| {
                        let mut i = info(queue, state, id, msg.unwrap_or_default());
                        i.reason = reason;
                        i.archived_at = at.and_then(|a| a.parse::<f64>().ok()).map(at_ms);
                        i
                    })
                    .collect()
            }
            TaskState::Completed => Vec::new(),
        })
    }

    async fn find(&self, queue: &str, id: &TaskId) -> Result<Option<TaskInfo>> {
        let k = self.keys(queue);
        let (delayed, retry, archived, live): (Option<f64>, Option<f64>, Option<f64>, bool) = redis::pipe()
            .cmd("ZSCORE")
            .arg(&k.delayed)
            .arg(id.as_str())
            .cmd("ZSCORE")
            .arg(retrying(&k))
            .arg(id.as_str())
            .cmd("ZSCORE")
            .arg(&k.archived)
            .arg(id.as_str())
            .cmd("HEXISTS")
            .arg(&k.ids)
            .arg(id.as_str())
            .query_async(&mut self.conn())
            .await
            .map_err(err)?;
        if delayed.is_some() || archived.is_some() {
            let (msg, reason, at) = self.stored(&k, &[id.to_string()]).await?.pop().unwrap_or_default();
            let state = match (delayed, retry) {
                (Some(_), Some(_)) => TaskState::Retry,
                (Some(_), None) => TaskState::Scheduled,
                _ => TaskState::Archived,
            };
            let mut i = info(queue, state, id.to_string(), msg.unwrap_or_default());
            i.next_run_at = delayed.map(at_ms);
            if state == TaskState::Archived {
                i.reason = reason;
                i.archived_at = at.and_then(|a| a.parse::<f64>().ok()).map(at_ms);
            }
            return Ok(Some(i));
        }
        if !live {
            return Ok(None);
        }
        Ok(self.locate(&k, id.as_str()).await?.map(|(_, (_, id, p), pending)| {
            info(queue, if pending { TaskState::Pending } else { TaskState::Active }, id, p)
        }))
    }

    async fn run_now(&self, queue: &str, id: &TaskId, rerun: Rerun) -> Result<()> {
        self.act(queue, id, "run", "", rerun).await
    }

    async fn archive_now(&self, queue: &str, id: &TaskId, reason: &str) -> Result<()> {
        self.act(queue, id, "archive", reason, Rerun::default()).await
    }

    async fn delete(&self, queue: &str, id: &TaskId) -> Result<()> {
        self.act(queue, id, "delete", "", Rerun::default()).await
    }

    async fn run_all(&self, queue: &str, state: TaskState) -> Result<u64> {
        if state != TaskState::Archived {
            return Ok(self.act_all(queue, state, "run", "").await?.len() as u64);
        }
        // One by one: each envelope is renewed (see `rerun_envelope`), which a script cannot do.
        conveyor_core::inspect::run_all_archived(self, queue).await
    }

    async fn archive_all(&self, queue: &str, state: TaskState, reason: &str) -> Result<Moved> {
        Ok(Moved::ids(self.act_all(queue, state, "archive", reason).await?))
    }

    async fn delete_all(&self, queue: &str, state: TaskState) -> Result<Moved> {
        Ok(Moved::ids(self.act_all(queue, state, "delete", "").await?))
    }
}

/// The age of the oldest pending task of a queue, if any (its stream entry's age: a task
/// handed back or retried waits from then).
pub(crate) async fn latency(b: &RedisBroker, k: &Arc<QueueKeys>) -> Result<Option<Duration>> {
    let mut oldest: Option<u64> = None;
    for s in b.streams(k).await? {
        let skey = k.stream(&s);
        let last = b.last_delivered(&skey).await?;
        if let Some((eid, _, _)) = b.entries(&skey, &format!("({last}"), 1).await?.first() {
            let ms = eid.split('-').next().and_then(|m| m.parse().ok()).unwrap_or(u64::MAX);
            oldest = Some(oldest.map_or(ms, |o| o.min(ms)));
        }
    }
    Ok(oldest.map(|ms| SystemTime::now().duration_since(time::from_millis(ms)).unwrap_or_default()))
}
