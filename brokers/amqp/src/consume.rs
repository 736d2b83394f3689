//! The background tasks: consumers moving deliveries into the buffer, and the lease sweeper.

use std::sync::Weak;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::BasicRejectOptions;
use lapin::Channel;
use tokio::time::Instant;

use crate::{Incoming, Inner, Lease};

/// Moves a consumer's deliveries into the buffer until it ends.
pub(crate) async fn consume(inner: Weak<Inner>, queue: String, gen: u64, mut consumer: lapin::Consumer, _ch: Channel) {
    while let Some(item) = consumer.next().await {
        let Some(inner) = inner.upgrade() else { return };
        match item {
            Ok(delivery) => {
                let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(n) = st.owed.get_mut(&queue) {
                    *n = n.saturating_sub(1);
                }
                st.buffers.entry(queue.clone()).or_default().push_back(Incoming { delivery, gen, pushed: true });
                drop(st);
                inner.notify.notify_waiters();
            }
            Err(e) => {
                tracing::warn!(queue = %queue, error = %e, "RabbitMQ consumer ended");
                break;
            }
        }
    }
    if let Some(inner) = inner.upgrade() {
        let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.consumers.get(&queue) == Some(&gen) {
            st.consumers.remove(&queue);
            // Its unacked deliveries went back to the queue with its channel: drop our copies.
            if let Some(b) = st.buffers.get_mut(&queue) {
                b.retain(|i| !i.pushed);
            }
        }
        drop(st);
        inner.notify.notify_waiters();
    }
}

/// Returns deliveries whose lease expired to their queue (RabbitMQ counts it in
/// `x-delivery-count`).
pub(crate) async fn sweep_leases(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Some(inner) = inner.upgrade() else { return };
        let now = Instant::now();
        let expired: Vec<Lease> = {
            let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
            let ids: Vec<u64> = st.leases.iter().filter(|(_, l)| l.until <= now).map(|(id, _)| *id).collect();
            ids.into_iter().filter_map(|id| st.leases.remove(&id)).collect()
        };
        {
            let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
            for l in expired.iter().filter(|l| l.pushed) {
                *st.owed.entry(l.queue.clone()).or_default() += 1;
            }
        }
        for l in expired {
            tracing::warn!(queue = %l.queue, "lease expired: returning the task to its queue");
            // reject, not nack: newer RabbitMQ versions count only rejects in x-delivery-count.
            let _ = l.acker.reject(BasicRejectOptions { requeue: true }).await;
        }
    }
}
