//! Claiming tasks, and waiting for them: the claim script (or its upkeep and a plain read), and
//! the blocking wait on the queues' signal lists with the claim pipelined behind it.
//!
//! A read from inside a script costs Redis about three times what the same `XREADGROUP` costs
//! as a plain command: every entry is converted to Lua and back. So while all of a queue's
//! tasks sit in one stream (the usual case: one priority, nothing handed back), the script
//! only does its upkeep (due tasks, lost leases, the pause flag) and a plain `XREADGROUP`
//! pipelined right behind it reads, in the same round trip. The script's answer says whether
//! that still holds for the next claim. A receiver woken from its wait reads with the plain
//! `XREADGROUP` alone (see [`RedisBroker::wait_then_claim`]); its next claim runs the whole
//! script.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{Broker, CancellationToken, Delivery, Error, Result};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult, Value};

use crate::entries::Deliveries;
use crate::keys::QueueKeys;
use crate::{err, ms, scripts, RedisBroker, MAX_CLAIM};

/// What became of the claim script in a claim's pipeline.
enum Script {
    /// Not sent: a plain read alone.
    Skipped,
    /// Redis had lost it; it is loaded again, and nothing was claimed by it.
    Reloaded,
    Answered(Result<Claimed>),
}

/// What the claim script answers: the tasks it read (flat, see
/// [`Deliveries::add_script_answer`]), when the next delayed task is due (empty if none), the
/// server's time in ms, the queue's streams in reading order, and 1 if the queue is paused.
type Claimed = (Vec<Value>, String, String, Vec<String>, i64);

/// Claimed deliveries, and in how many ms something in the queue falls due.
pub(crate) type ClaimResult = (Vec<Delivery>, Option<u64>);

/// How long a claim waits for its reply before it gives up on it (and hands back whatever
/// the claim took, should its reply still come).
const CLAIM_LIMIT: Duration = Duration::from_secs(10);

/// A connection for blocking waits (no response timeout), with its Redis client id.
pub(crate) struct BlockingConn {
    conn: MultiplexedConnection,
    id: i64,
}

/// How a claim reads.
enum Plan {
    /// The script reads: streams in priority order, hand-backs first.
    Script,
    /// The queue's tasks all sit in the stream with this suffix: the script does its upkeep
    /// only (if it runs at all, see [`Plan::runs_script`]), and a plain `XREADGROUP`
    /// pipelined behind it reads.
    Plain(String),
}

impl Plan {
    fn of(k: &QueueKeys) -> Plan {
        k.plain_read().map_or(Plan::Script, Plan::Plain)
    }

    /// Whether a claim with this plan runs the script: a plain read after a wake-up skips
    /// it unless `upkeep` (something falls due), see [`RedisBroker::wait_then_claim`].
    fn runs_script(&self, upkeep: bool) -> bool {
        upkeep || matches!(self, Plan::Script)
    }

    /// How many replies the claim's commands get.
    fn replies(&self, upkeep: bool) -> usize {
        usize::from(self.runs_script(upkeep)) + if matches!(self, Plan::Plain(_)) { 2 } else { 0 }
    }

    /// Adds the claim's commands to `pipe` (`nowake`: the caller needs no due time; `upkeep`:
    /// see [`Plan::runs_script`]).
    fn add(&self, pipe: &mut redis::Pipeline, k: &QueueKeys, max: usize, lease: Duration, nowake: bool, upkeep: bool) {
        let max = max.min(MAX_CLAIM);
        if self.runs_script(upkeep) {
            let keys = [&k.streams, &k.delayed, &k.ids, &k.signal, &k.paused, &k.recovery];
            let script = pipe.cmd("EVALSHA").arg(scripts::CLAIM.get_hash()).arg(keys.len()).arg(&keys[..]);
            script.arg(max).arg(ms(lease)).arg(&k.base).arg(if nowake { "nowake" } else { "wake" });
            if matches!(self, Plan::Plain(_)) {
                script.arg(max);
            }
        }
        if let Plan::Plain(suffix) = self {
            pipe.cmd("XREADGROUP").arg("GROUP").arg("g").arg(format!("l{}", ms(lease)));
            pipe.arg("COUNT").arg(max).arg("STREAMS").arg(k.stream(suffix)).arg(">");
            pipe.cmd("EXISTS").arg(&k.paused);
        }
    }
}

impl RedisBroker {
    /// Claims up to `max` tasks of one queue.
    pub(crate) async fn claim(
        &self,
        queue: &str,
        max: usize,
        lease: Duration,
        max_payload: usize,
    ) -> Result<ClaimResult> {
        let k = self.keys(queue);
        for _ in 0..2 {
            let plan = Plan::of(&k);
            let mut pipe = redis::pipe();
            plan.add(&mut pipe, &k, max, lease, false, true);
            pipe.ignore_errors();
            // On a connection with no response timeout, timed here: a reply that comes too
            // late for this call is still taken, and what it claimed handed back.
            let bc = self.blocking_conn().await?;
            let mut conn = bc.conn.clone();
            let mut call = Box::pin(async move { pipe.query_async::<Vec<RedisResult<Value>>>(&mut conn).await });
            let answers = match tokio::time::timeout(CLAIM_LIMIT, &mut call).await {
                // A connection that failed is not reused.
                Ok(r) => {
                    let answers = r.map_err(err)?;
                    self.inner.idle_blocking.lock().unwrap_or_else(|e| e.into_inner()).push(bc);
                    answers
                }
                Err(_) => {
                    self.hand_back_late(queue, k, (plan, true), call, lease);
                    let why = "no reply to a claim in time (Redis stalled?)";
                    return Err(Error::broker_failure(conveyor_core::FailureKind::Timeout, why));
                }
            };
            let (got, again) = self.take_answers(queue, &k, (&plan, true), answers, max_payload).await?;
            if !again {
                return Ok(got);
            }
        }
        Ok((Vec::new(), None))
    }

    /// Waits up to `wait` for a publish signal on any of `queues`, then claims up to `max`
    /// tasks of `first`, in one round trip: the claim is pipelined behind the `BLPOP`, so Redis
    /// runs it the moment the wait ends (a signal, or the time is up). This saves the round
    /// trip (and the two wake-ups) that a claim sent after the signal would cost.
    ///
    /// While the queue is read with a plain `XREADGROUP`, the claim script is left out unless
    /// `upkeep` (the wait ends when something falls due, which the script moves to its
    /// stream): a publish wakes the wait, and the task is read at once, without the script's
    /// cost on the way. The caller's next claim does the upkeep. No other receiver needs a
    /// wake-up from here for tasks this read left: every publish, hand-back and retry signals
    /// (each wakes one waiting receiver), and tasks the script queues (due, recovered) are
    /// signalled by the claim that queued them.
    ///
    /// The wait runs on a connection of its own with no response timeout (blocking commands
    /// would trip one). On `stop`, the wait is cut short with `CLIENT UNBLOCK` and whatever the
    /// claim took is returned, for the caller to hand back: never left leased to nobody.
    pub(crate) async fn wait_then_claim(
        &self,
        queues: &[&str],
        wait: Duration,
        (first, max, lease, max_payload): (&str, usize, Duration, usize),
        upkeep: bool,
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
        let plan = Plan::of(&k);
        plan.add(&mut pipe, &k, max, lease, true, upkeep);
        pipe.ignore_errors();
        // The client-side limit guards against a silently dead connection.
        let limit = wait + Duration::from_secs(2);
        // A clone shares the connection; `bc` goes back to the pool only once the call ended.
        // Owned, so that a reply too late for this call can still be taken in the background.
        let mut conn = bc.conn.clone();
        let mut call = Box::pin(async move { pipe.query_async::<Vec<RedisResult<Value>>>(&mut conn).await });
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
            Ok(Ok(mut answers)) => {
                self.inner.idle_blocking.lock().unwrap_or_else(|e| e.into_inner()).push(bc);
                let waited = if answers.is_empty() { Ok(Value::Nil) } else { answers.remove(0) };
                // Nothing read for want of the script (it was loaded again): the caller claims
                // on its own next.
                let ((got, wake), _) = self.take_answers(first, &k, (&plan, upkeep), answers, max_payload).await?;
                match waited {
                    Err(e) if got.is_empty() => Err(err(e)),
                    _ => Ok((got, wake)),
                }
            }
            Ok(Err(e)) => Err(err(e)),
            // No reply in time: the connection is not reused, and what the claim took, if it
            // ran, is handed back once its reply comes.
            Err(_) => {
                self.hand_back_late(first, k, (plan, upkeep), call, lease);
                Ok((Vec::new(), None))
            }
        }
    }

    /// A claim whose reply did not come in time (Redis stalled longer than the wait's
    /// margin: a slow script, a fork) may still run in Redis. Its reply is awaited in the
    /// background, for up to a lease, and whatever it claimed is handed back, rather than left
    /// leased to nobody: that would hold the tasks back a whole lease and cost each an
    /// attempt, as if a worker had died running it.
    fn hand_back_late<F>(&self, queue: &str, k: Arc<QueueKeys>, (plan, upkeep): (Plan, bool), call: F, lease: Duration)
    where
        F: Future<Output = RedisResult<Vec<RedisResult<Value>>>> + Send + 'static,
    {
        tracing::warn!(queue, "no reply to a claim in time; its tasks are handed back if it ran");
        let (this, queue) = (self.clone(), queue.to_owned());
        tokio::spawn(async move {
            let Ok(Ok(mut answers)) = tokio::time::timeout(lease, call).await else { return };
            // A wait's reply starts with its BLPOP's; a claim's alone does not.
            if answers.len() > plan.replies(upkeep) {
                let _blpop = answers.remove(0);
            }
            // Handed back unread: no limit applies.
            let answers = this.take_answers(&queue, &k, (&plan, upkeep), answers, usize::MAX).await;
            let Ok(((late, _), _)) = answers else { return };
            for d in &late {
                if let Err(e) = this.release(d).await {
                    tracing::warn!(queue, error = %e, "could not hand back a task claimed too late; it returns after its lease");
                }
            }
        });
    }

    /// Reads a claim's answers: the script's, and for a plain read its reply and whether the
    /// queue was paused by then. A script Redis lost (a restart, `SCRIPT FLUSH`) is loaded
    /// again; a plain read that failed (its stream was replaced, say) leaves the next claim to
    /// the script. Returns the deliveries and wake time, and whether nothing was read for one
    /// of those reasons (claim again).
    async fn take_answers(
        &self,
        queue: &str,
        k: &Arc<QueueKeys>,
        (plan, upkeep): (&Plan, bool),
        mut answers: Vec<RedisResult<Value>>,
        max_payload: usize,
    ) -> Result<(ClaimResult, bool)> {
        let mut ds = Deliveries::new(queue, k.clone(), max_payload);
        let (mut again, mut read_failed, mut paused_after) = (false, false, false);
        if let Plan::Plain(suffix) = plan {
            // Pipelined after the read: the pause flag as the read left it (the script's view
            // is from before, and a pause can come in between).
            paused_after = matches!(answers.pop(), Some(Ok(Value::Int(1))));
            match answers.pop() {
                Some(Ok(reply)) => ds.add_read_reply(suffix, reply),
                Some(Err(e)) => {
                    tracing::debug!(queue, error = %e, "plain read failed; the claim script reads next");
                    read_failed = true;
                    again = true;
                }
                None => again = true,
            }
        }
        let script = match answers.pop() {
            _ if !plan.runs_script(upkeep) => Script::Skipped,
            Some(Ok(v)) => Script::Answered(
                redis::from_redis_value::<Claimed>(v)
                    .map_err(|e| Error::broker(format!("unexpected answer from the claim script: {e}"))),
            ),
            Some(Err(e)) if e.code() == Some("NOSCRIPT") => {
                match scripts::CLAIM.prepare_invoke().load_async(&mut self.conn()).await {
                    Ok(_) => Script::Reloaded,
                    // What the plain read leased is kept (below), not left to its lease.
                    Err(e) => Script::Answered(Err(err(e))),
                }
            }
            Some(Err(e)) => Script::Answered(Err(err(e))),
            None => Script::Answered(Err(Error::broker("no answer from the claim script"))),
        };
        let mut wake = None;
        let mut paused = paused_after;
        match script {
            // The plain read alone, after a wake-up: the wake may have been for a task in another
            // stream (a hand-back, another priority) that only the script sees, so the next
            // claim runs the whole script, and its answer sets the plan again.
            Script::Skipped => k.set_plain_read(None),
            Script::Answered(Ok((items, next_delayed, now, streams, p))) => {
                ds.add_script_answer(items);
                let now: f64 = now.parse().unwrap_or(0.0);
                wake = next_delayed.parse::<f64>().ok().map(|t| (t - now).max(0.0) as u64);
                paused |= p != 0;
                let only = match streams.as_slice() {
                    [only] if !paused && !read_failed => Some(only.clone()),
                    _ => None,
                };
                // The plain read found nothing, and the queue has tasks elsewhere: claim again
                // at once, with the script, rather than wait for a signal already spent.
                if let Plan::Plain(read) = plan {
                    again |= ds.out.is_empty() && !paused && only.as_deref() != Some(read.as_str());
                }
                k.set_plain_read(only);
            }
            Script::Reloaded => {
                k.set_plain_read(None);
                again |= ds.out.is_empty();
            }
            Script::Answered(Err(e)) => {
                k.set_plain_read(None);
                if ds.out.is_empty() {
                    return Err(e);
                }
                // Keeps what the plain read leased; the next claim runs the whole script.
                tracing::warn!(queue, error = %e, "claim upkeep failed");
            }
        }
        if paused && matches!(plan, Plan::Plain(_)) && !ds.out.is_empty() {
            // Read in the moment the queue was paused: handed back, not run. One that cannot be
            // handed back runs rather than wait out its lease.
            for d in std::mem::take(&mut ds.out) {
                if let Err(e) = self.release(&d).await {
                    tracing::warn!(queue, error = %e, "could not hand back a task read as the queue paused");
                    ds.out.push(d);
                }
            }
        }
        Ok(((ds.out, wake), again))
    }

    async fn blocking_conn(&self) -> Result<BlockingConn> {
        if let Some(c) = self.inner.idle_blocking.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(c);
        }
        let cfg = AsyncConnectionConfig::new()
            .set_response_timeout(None)
            .set_connection_timeout(Some(Duration::from_secs(5)));
        // The setup's commands are timed by hand: this connection has no response timeout, and
        // a server that accepted the connection and then went silent must not hang the receiver.
        let setup = async {
            let mut conn = self.inner.client.get_multiplexed_async_connection_with_config(&cfg).await?;
            let id = redis::cmd("CLIENT").arg("ID").query_async::<i64>(&mut conn).await?;
            scripts::CLAIM.prepare_invoke().load_async(&mut conn).await?;
            Ok::<_, redis::RedisError>(BlockingConn { conn, id })
        };
        match tokio::time::timeout(Duration::from_secs(10), setup).await {
            Ok(r) => r.map_err(err),
            Err(_) => Err(Error::broker("timed out setting up a connection for blocking reads")),
        }
    }
}
