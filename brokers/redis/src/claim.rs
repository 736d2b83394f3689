//! Claiming tasks, and waiting for them: the claim script and the blocking wait on the queues'
//! signal lists.

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{CancellationToken, Delivery, Payload, Receipt, Result, TaskId};
use redis::AsyncConnectionConfig;

use crate::{err, ms, scripts, RedisBroker, RedisReceipt, MAX_CLAIM};

/// What the claim script answers: `{id, payload, lost, token}...`, next delayed, next lease, now.
type Claimed = (Vec<(String, Vec<u8>, String, String)>, String, String, String);

/// Claimed deliveries, and in how many ms something in the queue falls due.
type ClaimResult = (Vec<Delivery>, Option<u64>);

impl RedisBroker {
    /// Claims up to `max` tasks of one queue.
    pub(crate) async fn claim(&self, queue: &str, max: usize, lease: Duration) -> Result<ClaimResult> {
        let k = self.keys(queue);
        let mut inv = scripts::CLAIM.prepare_invoke();
        inv.key(&k.pending).key(&k.delayed).key(&k.active).key(&k.signal).key(&k.paused).key(&k.seq);
        inv.key(&k.tokens).key(&k.leases);
        // A random nonce per call keeps lease tokens unique.
        inv.arg(max.min(MAX_CLAIM)).arg(ms(lease)).arg(&k.task_prefix).arg(TaskId::random().as_str());
        let claimed: Claimed = inv.invoke_async(&mut self.conn()).await.map_err(err)?;
        Ok(deliveries(queue, claimed))
    }

    /// Waits up to `wait` for a publish signal on any of `queues`, on a connection of its own
    /// with no response timeout (blocking commands would trip one).
    pub(crate) async fn wait_signal(&self, queues: &[&str], wait: Duration, stop: &CancellationToken) -> Result<()> {
        let idle = self.inner.idle_blocking.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut conn = match idle {
            Some(c) => c,
            None => {
                let cfg = AsyncConnectionConfig::new()
                    .set_response_timeout(None)
                    .set_connection_timeout(Some(Duration::from_secs(5)));
                self.inner.client.get_multiplexed_async_connection_with_config(&cfg).await.map_err(err)?
            }
        };
        let mut cmd = redis::cmd("BLPOP");
        for q in queues {
            cmd.arg(&self.keys(q).signal);
        }
        cmd.arg(wait.as_secs_f64().max(0.01));
        // The client-side limit guards against a silently dead connection.
        let call = tokio::time::timeout(wait + Duration::from_secs(2), cmd.query_async::<redis::Value>(&mut conn));
        tokio::select! {
            r = call => match r {
                Ok(Ok(_)) => {
                    self.inner.idle_blocking.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
                    Ok(())
                }
                Ok(Err(e)) => Err(err(e)),
                Err(_) => Ok(()), // dropped: the connection is discarded
            },
            // The BLPOP is abandoned with its connection, which is not reused.
            _ = stop.cancelled() => Ok(()),
        }
    }
}

/// Turns the claim script's answer into deliveries and a wake-up time.
fn deliveries(queue: &str, (items, next_delayed, next_lease, now): Claimed) -> ClaimResult {
    let now: f64 = now.parse().unwrap_or(0.0);
    let wake = [next_delayed, next_lease]
        .iter()
        .filter_map(|s| s.parse::<f64>().ok())
        .map(|t| (t - now).max(0.0) as u64)
        .min();
    let queue: Arc<str> = Arc::from(queue);
    let deliveries = items
        .into_iter()
        .map(|(id, payload, lost, token)| {
            let lost_leases = lost.parse().unwrap_or(0);
            Delivery {
                receipt: Receipt::new(RedisReceipt { queue: queue.clone(), id, token }),
                queue: queue.clone(),
                payload: Payload::decode(payload),
                redelivered: lost_leases > 0,
                lost_leases,
            }
        })
        .collect();
    (deliveries, wake)
}
