//! Claiming tasks, and waiting for them: the claim script, and the blocking wait on the queues'
//! signal lists with a claim pipelined behind it.

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{CancellationToken, Delivery, Payload, Receipt, Result};
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;

use crate::keys::QueueKeys;
use crate::{err, ms, scripts, RedisBroker, RedisReceipt, MAX_CLAIM};

/// What the claim script answers: per stream read, its suffix, a count and that many entry ids
/// and payloads (flat); when the next delayed task is due (empty if none); the server's time.
type Claimed = (Vec<redis::Value>, String, String);

/// Claimed deliveries, and in how many ms something in the queue falls due.
pub(crate) type ClaimResult = (Vec<Delivery>, Option<u64>);

/// A connection for blocking waits (no response timeout), with its Redis client id.
pub(crate) struct BlockingConn {
    conn: MultiplexedConnection,
    id: i64,
}

impl RedisBroker {
    /// Claims up to `max` tasks of one queue.
    pub(crate) async fn claim(&self, queue: &str, max: usize, lease: Duration) -> Result<ClaimResult> {
        let k = self.keys(queue);
        let mut inv = scripts::CLAIM.prepare_invoke();
        for key in claim_keys(&k) {
            inv.key(key);
        }
        inv.arg(max.min(MAX_CLAIM)).arg(ms(lease)).arg(&k.base);
        let claimed: Claimed = inv.invoke_async(&mut self.conn()).await.map_err(err)?;
        Ok(deliveries(queue, k, claimed))
    }

    /// Waits up to `wait` for a publish signal on any of `queues`, then claims up to `max`
    /// tasks of `first`, in one round trip: the claim is pipelined behind the `BLPOP`, so Redis
    /// runs it the moment the wait ends (a signal, or the time is up). This saves the round
    /// trip (and the two wake-ups) that a claim sent after the signal would cost.
    ///
    /// The wait runs on a connection of its own with no response timeout (blocking commands
    /// would trip one). On `stop`, the wait is cut short with `CLIENT UNBLOCK` and whatever the
    /// claim took is returned, for the caller to hand back: never left leased to nobody.
    pub(crate) async fn wait_then_claim(
        &self,
        queues: &[&str],
        wait: Duration,
        (first, max, lease): (&str, usize, Duration),
        stop: &CancellationToken,
    ) -> Result<ClaimResult> {
        let bc = self.blocking_conn().await?;
        let mut pipe = redis::pipe();
        let blpop = pipe.cmd("BLPOP");
        for q in queues {
            blpop.arg(&self.keys(q).signal);
        }
        blpop.arg(wait.as_secs_f64().max(0.01));
        let k = self.keys(first);
        pipe.add_command(claim_eval(&k, max, lease));
        // The client-side limit guards against a silently dead connection.
        let limit = wait + Duration::from_secs(2);
        // A clone shares the connection; `bc` goes back to the pool only once the call ended.
        let mut conn = bc.conn.clone();
        let call = pipe.query_async::<(redis::Value, Claimed)>(&mut conn);
        tokio::pin!(call);
        let answer = tokio::select! {
            r = tokio::time::timeout(limit, &mut call) => r,
            _ = stop.cancelled() => {
                // Ends the BLPOP now; without the right to, it ends within `wait` anyway.
                let unblock = redis::cmd("CLIENT").arg("UNBLOCK").arg(bc.id).query_async::<i64>(&mut self.conn()).await;
                if let Err(e) = unblock {
                    tracing::debug!(error = %e, "CLIENT UNBLOCK failed; waiting for the blocking call to end");
                }
                tokio::time::timeout(limit, &mut call).await
            }
        };
        match answer {
            Ok(Ok((_, claimed))) => {
                self.inner.idle_blocking.lock().unwrap_or_else(|e| e.into_inner()).push(bc);
                Ok(deliveries(first, k, claimed))
            }
            // Redis lost its scripts (a restart): load the claim script again; the caller claims
            // on its own meanwhile.
            Ok(Err(e)) if e.code() == Some("NOSCRIPT") => {
                let mut conn = bc.conn.clone();
                scripts::CLAIM.prepare_invoke().load_async(&mut conn).await.map_err(err)?;
                self.inner.idle_blocking.lock().unwrap_or_else(|e| e.into_inner()).push(bc);
                Ok((Vec::new(), None))
            }
            Ok(Err(e)) => Err(err(e)),
            // The connection is dropped. If Redis did run the claim, its tasks come back when
            // their lease expires, as after a worker crash.
            Err(_) => Ok((Vec::new(), None)),
        }
    }

    async fn blocking_conn(&self) -> Result<BlockingConn> {
        if let Some(c) = self.inner.idle_blocking.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(c);
        }
        let cfg = AsyncConnectionConfig::new()
            .set_response_timeout(None)
            .set_connection_timeout(Some(Duration::from_secs(5)));
        let mut conn = self.inner.client.get_multiplexed_async_connection_with_config(&cfg).await.map_err(err)?;
        let id = redis::cmd("CLIENT").arg("ID").query_async::<i64>(&mut conn).await.map_err(err)?;
        scripts::CLAIM.prepare_invoke().load_async(&mut conn).await.map_err(err)?;
        Ok(BlockingConn { conn, id })
    }
}

/// The claim script's keys, in its order.
fn claim_keys(k: &QueueKeys) -> [&str; 6] {
    [&k.streams, &k.delayed, &k.ids, &k.signal, &k.paused, &k.recovery]
}

/// The claim script as a plain `EVALSHA` command, for a pipeline (the blocking connection
/// loaded the script when it was opened).
fn claim_eval(k: &QueueKeys, max: usize, lease: Duration) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    let keys = claim_keys(k);
    cmd.arg(scripts::CLAIM.get_hash()).arg(keys.len()).arg(&keys[..]);
    cmd.arg(max.min(MAX_CLAIM)).arg(ms(lease)).arg(&k.base);
    // The caller claims again (with the due times) when this finds nothing.
    cmd.arg("nowake");
    cmd
}

/// Turns the claim script's answer into deliveries and a wake-up time.
fn deliveries(queue: &str, keys: Arc<QueueKeys>, (items, next_delayed, now): Claimed) -> ClaimResult {
    let now: f64 = now.parse().unwrap_or(0.0);
    let wake = next_delayed.parse::<f64>().ok().map(|t| (t - now).max(0.0) as u64);
    let queue: Arc<str> = Arc::from(queue);
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut items = items.into_iter();
    while let (Some(suffix), Some(n)) = (items.next(), items.next()) {
        let suffix = text(suffix);
        let n = redis::from_redis_value::<usize>(n).unwrap_or(0);
        for _ in 0..n {
            let (Some(eid), Some(payload)) = (items.next(), items.next()) else { break };
            // `ENTRY-ID` or, once a lease was lost, `ENTRY-ID#LOST`.
            let eid = text(eid);
            let (eid, lost_leases) = match eid.split_once('#') {
                Some((e, lost)) => (e, lost.parse().unwrap_or(0)),
                None => (eid.as_str(), 0),
            };
            let payload = Payload::decode(bytes(payload));
            // The id inside the payload; an undecodable entry is only ever archived, and the
            // archive script reads its id from the entry.
            let id = match &payload {
                Payload::Task(t) => t.id.as_str().to_owned(),
                Payload::Undecodable { .. } => String::new(),
            };
            out.push(Delivery {
                receipt: Receipt::new(RedisReceipt { keys: keys.clone(), id, token: format!("{suffix}|{eid}") }),
                queue: queue.clone(),
                payload,
                // A hand-back (read from an `f` stream) was delivered before, as was a lost lease.
                redelivered: lost_leases > 0 || suffix.starts_with('f'),
                lost_leases,
            });
        }
    }
    (out, wake)
}

fn bytes(v: redis::Value) -> Vec<u8> {
    match v {
        redis::Value::BulkString(b) => b,
        redis::Value::SimpleString(s) => s.into_bytes(),
        other => redis::from_redis_value::<String>(other).unwrap_or_default().into_bytes(),
    }
}

/// Text from a reply; bytes that are not UTF-8 (a foreign entry) must not fail the whole claim.
fn text(v: redis::Value) -> String {
    String::from_utf8(bytes(v)).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}
