//! Receiving: one `ReceiveMessage` call, and the receive loop over a worker's queues (short
//! polls in priority order, then a long poll), skipping paused queues.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::MessageSystemAttributeName;
use conveyor_core::{Delivery, Payload, Receipt, ReceiveRequest, Result};

use crate::{b64, err, now_ms, visibility_secs, SqsBroker, SqsReceipt, DUE, ENCODING};

impl SqsBroker {
    /// One ReceiveMessage call on `queue`.
    async fn poll(
        &self,
        queue: &str,
        (max, wait_s): (usize, i32),
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        let url = self.url(queue, false).await?;
        // SQS starts each message's visibility timeout between this send and its answer: from
        // here is the safe side.
        let asked = Instant::now();
        let out = self
            .client()
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .wait_time_seconds(wait_s)
            .visibility_timeout(visibility_secs(lease))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(err)?;
        let visible_at = asked + Duration::from_secs(visibility_secs(lease) as u64);
        let mut deliveries = Vec::new();
        for m in out.messages() {
            let (Some(body), Some(handle)) = (m.body(), m.receipt_handle()) else { continue };
            let attrs = m.message_attributes().cloned().unwrap_or_default();
            let r = SqsReceipt {
                url: url.clone(),
                handle: handle.to_owned(),
                queue: queue.to_owned(),
                body: Arc::new(body.to_owned()),
                attrs: attrs.clone(),
                visible_at: Mutex::new(visible_at),
            };
            // Not due yet: send the rest of the delay on, or (FIFO) stay invisible until due.
            if let Some(due) = attrs.get(DUE).and_then(|v| v.string_value()).and_then(|v| v.parse::<i64>().ok()) {
                if due > now_ms() {
                    // A hop that fails is logged, not returned: an early return would leave the
                    // rest of this batch received by nobody until their visibility ran out
                    // (each counted as a lost lease). This one reappears then, and hops again.
                    if let Err(e) = self.wait_until_due(queue, &url, &r, due).await {
                        tracing::warn!(queue, error = %e, "could not delay a task that is not due yet; it reappears after its lease");
                    }
                    continue;
                }
            }
            let received: u32 = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            let bytes = match attrs.get(ENCODING).and_then(|v| v.string_value()) {
                Some("base64") => b64::decode(body).unwrap_or_else(|| body.as_bytes().to_vec()),
                _ => body.as_bytes().to_vec(),
            };
            let payload = Payload::decode_within(bytes, limit);
            // On a FIFO queue a delayed message waits by being received early and hidden until
            // due (one receive per 12 hours of delay, the longest visibility): those receives
            // are not lost leases.
            let waits = match (queue.ends_with(".fifo"), due_of(&attrs), sent_of(m)) {
                (true, Some(due), Some(sent)) if due > sent => ((due - sent) as u64).div_ceil(43_200_000) as u32,
                _ => 0,
            };
            let lost = received.saturating_sub(1).saturating_sub(waits);
            deliveries.push(Delivery {
                receipt: Receipt::new(r),
                queue: Arc::from(queue),
                payload,
                redelivered: lost > 0,
                lost_leases: lost,
                // The very first receive only (a FIFO delay's early receives are not first).
                copy: received == 1 && attrs.contains_key(crate::COPY),
            });
        }
        Ok(deliveries)
    }

    /// Receives from the queues not paused.
    pub(crate) async fn receive_unpaused(&self, req: &ReceiveRequest<'_>) -> Result<Vec<Delivery>> {
        let deadline = tokio::time::Instant::now() + req.wait;
        let resumed = self.inner.resumed.notified();
        let queues: Vec<&str> = {
            let paused = self.inner.paused.lock().unwrap_or_else(|e| e.into_inner());
            req.queues.iter().copied().filter(|q| !paused.contains(*q)).collect()
        };
        if queues.is_empty() {
            // Every queue paused: wait for a resume (or the time), not spin.
            tokio::select! {
                _ = resumed => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = req.stop.cancelled() => {}
            }
            return Ok(Vec::new());
        }
        loop {
            let mut out = Vec::new();
            for q in &queues {
                if out.len() >= req.max {
                    break;
                }
                match self.poll(q, (req.max - out.len(), 0), req.lease, req.max_payload).await {
                    Ok(got) => out.extend(got),
                    Err(e) if !out.is_empty() => {
                        tracing::warn!(queue = %q, error = %e, "receive failed part-way");
                        return Ok(out);
                    }
                    Err(e) => return Err(e),
                }
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !out.is_empty() || left.is_zero() || req.stop.is_cancelled() {
                return Ok(out);
            }
            // Long poll: the whole wait on a single queue, a second at a time on several.
            let wait_s = if queues.len() == 1 { left.as_secs().clamp(1, 20) } else { 1 } as i32;
            let got = self.poll(queues[0], (req.max, wait_s), req.lease, req.max_payload).await?;
            if !got.is_empty() {
                return Ok(got);
            }
        }
    }
}

impl SqsBroker {
    /// A message received before it is due: sent on with the rest of its delay (and this copy
    /// deleted), or on a FIFO queue hidden until due.
    async fn wait_until_due(&self, queue: &str, url: &str, r: &SqsReceipt, due: i64) -> Result<()> {
        if queue.ends_with(".fifo") {
            let secs = ((due - now_ms()) as u64).div_ceil(1000).clamp(1, 43_200);
            let change = self.client().change_message_visibility().queue_url(url).receipt_handle(&r.handle);
            change.visibility_timeout(secs as i32).send().await.map_err(err)?;
        } else {
            let dedup = crate::unique_id("hop");
            self.send(queue, false, &r.body, crate::as_copy(r.attrs.clone()), Some(due), (&dedup, &dedup)).await?;
            self.delete(r).await?;
        }
        Ok(())
    }
}

/// The due time (ms) a message carries, if any.
fn due_of(attrs: &std::collections::HashMap<String, aws_sdk_sqs::types::MessageAttributeValue>) -> Option<i64> {
    attrs.get(DUE).and_then(|v| v.string_value()).and_then(|v| v.parse().ok())
}

/// When SQS first received the message (ms).
fn sent_of(m: &aws_sdk_sqs::types::Message) -> Option<i64> {
    m.attributes().and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp)).and_then(|v| v.parse().ok())
}
