//! Queue administration and raw publishing.

use std::time::SystemTime;

use async_trait::async_trait;
use conveyor_core::{time, ArchivedTask, Payload, QueueAdmin, RawPublish, Result};
use lapin::options::BasicGetOptions;

use crate::{err, headers, AmqpBroker};

#[async_trait]
impl QueueAdmin for AmqpBroker {
    async fn pause(&self, queue: &str) -> Result<()> {
        self.state().paused.insert(queue.to_owned());
        Ok(())
    }

    async fn resume(&self, queue: &str) -> Result<()> {
        self.state().paused.remove(queue);
        self.inner.notify.notify_waiters();
        Ok(())
    }

    async fn archived(&self, queue: &str, offset: usize, limit: usize) -> Result<Vec<ArchivedTask>> {
        // Read without acking on a channel of its own, then close it: RabbitMQ puts them back.
        self.declare(queue).await?;
        let ch = {
            let link = self.inner.link.lock().await;
            let l = link.as_ref().ok_or_else(|| {
                crate::failure::fail(conveyor_core::FailureKind::Connection, "not connected to RabbitMQ")
            })?;
            self.bounded("a new channel", async { l.conn.create_channel().await.map_err(err) }).await?
        };
        let n = self.names(queue);
        let mut all = Vec::new();
        while all.len() < offset + limit {
            let get = ch.basic_get(n.archive.as_str().into(), BasicGetOptions::default());
            match self.bounded("a basic.get", async { get.await.map_err(err) }).await? {
                Some(m) => all.push(m.delivery),
                None => break,
            }
        }
        let _ =
            self.bounded("a channel close", async { ch.close(200, "listing done".into()).await.map_err(err) }).await;
        Ok(all
            .into_iter()
            .rev()
            .skip(offset)
            .take(limit)
            .map(|d| {
                let payload = Payload::decode(d.data.clone());
                let at = headers::int(&d.properties, headers::ARCHIVED_AT)
                    .map_or(SystemTime::UNIX_EPOCH, |ms| time::from_millis(ms.max(0) as u64));
                ArchivedTask::new(payload, headers::string(&d.properties, headers::REASON).unwrap_or_default(), at)
            })
            .collect())
    }
}

#[async_trait]
impl RawPublish for AmqpBroker {
    async fn publish_raw(&self, queue: &str, bytes: Vec<u8>) -> Result<()> {
        self.enqueue_bytes(queue, &bytes, None, false).await
    }
}
