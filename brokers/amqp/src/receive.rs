//! Receiving: from the local buffers the consumers fill, else one pull per queue, in the order
//! asked, waiting for a push up to the request's wait.

use std::collections::VecDeque;

use conveyor_core::{Delivery, ReceiveRequest, Result};
use tokio::time::Instant;

use crate::AmqpBroker;

impl AmqpBroker {
    /// Receives from the queues not paused.
    pub(crate) async fn receive_unpaused(&self, req: &ReceiveRequest<'_>) -> Result<Vec<Delivery>> {
        let deadline = Instant::now() + req.wait;
        loop {
            if req.stop.is_cancelled() {
                self.hand_back_buffered(req.queues).await;
                return Ok(Vec::new());
            }
            let active: Vec<&str> = {
                let st = self.state();
                req.queues.iter().copied().filter(|q| !st.paused.contains(*q)).collect()
            };
            self.ensure_consumers(&active, req.max).await?;
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Queues in the order asked: from the local buffer, else one pull from RabbitMQ (so
            // that a lower queue is used only when the higher ones have nothing ready).
            let mut out = Vec::new();
            for q in &active {
                while out.len() < req.max {
                    let buffered = self.state().buffers.get_mut(*q).and_then(VecDeque::pop_front);
                    let inc = match buffered {
                        Some(i) => i,
                        // Hand out what we have rather than wait on a round trip for more.
                        None if !out.is_empty() => return Ok(out),
                        None => match self.pull(q).await? {
                            Some(i) => i,
                            // Nothing ready: but a message pushed after our last ack may have
                            // reached the consumer during that round trip.
                            None => match self.awaited_push(q).await {
                                Some(i) => i,
                                None => break,
                            },
                        },
                    };
                    match self.admit(q, inc, req.lease, req.max_payload).await {
                        Ok(Some(d)) => out.push(d),
                        Ok(None) => {}
                        // Deliveries already leased are handed out, not left to expire.
                        Err(e) if !out.is_empty() => {
                            tracing::warn!(queue = %q, error = %e, "receive failed part-way");
                            return Ok(out);
                        }
                        Err(e) => return Err(e),
                    }
                }
                if out.len() >= req.max {
                    break;
                }
            }
            if !out.is_empty() || Instant::now() >= deadline {
                return Ok(out);
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = req.stop.cancelled() => {}
            }
        }
    }
}
