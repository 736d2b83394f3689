//! The inspector's view of the RabbitMQ broker: queues from a registry, and the archive (list,
//! find, run again, delete). RabbitMQ cannot read a queue without taking its messages, and a
//! message taken and put back counts as a delivery (a lost lease to the worker), so listing
//! and acting on waiting tasks is `Unsupported` (docs/operations.md has the capability table).
//!
//! The registry is the classic queue `PREFIX:queues` (a name no Conveyor queue can have),
//! holding one message per queue name a process declared (at most the newest 10,000); it is
//! read without acking, on a channel closed after, which puts the messages back.
//!
//! An archived task is taken with `basic.get` on a channel of the operator's own: until that
//! channel acks or closes, RabbitMQ gives the message to no one else, so a second operator does
//! not find it. It runs again as a new message in its queue, and only then is it acked.

use async_trait::async_trait;
use conveyor_core::inspect::{
    archived_infos, check_action, rerun_envelope, run_all_archived, unsupported, BrokerInspect, Moved, Page, Rerun,
    TaskInfo,
};
use conveyor_core::{Broker, Error, FailureKind, Payload, QueueAdmin, Result, TaskId, TaskState};
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::Channel;

use crate::failure::{self, err};
use crate::{headers, AmqpBroker};

/// The most names the registry keeps (the oldest are dropped).
const REGISTRY_LIMIT: i64 = 10_000;

/// How many archived messages one scan reads at most.
const SCAN: usize = 10_000;

impl AmqpBroker {
    fn registry(&self) -> String {
        format!("{}:queues", self.inner.cfg.prefix)
    }

    /// A channel of the caller's own on the current connection.
    async fn own_channel(&self) -> Result<Channel> {
        self.link().await?;
        let link = self.inner.link.lock().await;
        let l = link.as_ref().ok_or_else(|| failure::fail(FailureKind::Connection, "not connected to RabbitMQ"))?;
        self.bounded("a new channel", async { l.conn.create_channel().await.map_err(err) }).await
    }

    async fn declare_registry(&self, ch: &Channel) -> Result<()> {
        let mut args = FieldTable::default();
        args.insert(ShortString::from("x-max-length"), AMQPValue::LongLongInt(REGISTRY_LIMIT));
        let opts = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
        let declare = ch.queue_declare(self.registry().as_str().into(), opts, args);
        self.bounded("the registry's declaration", async { declare.await.map(drop).map_err(err) }).await
    }

    /// Adds `queue` to the registry, once per process.
    pub(crate) async fn register(&self, queue: &str) {
        if self.state().registered.contains(queue) {
            return;
        }
        let added = async {
            let ch = self.declaring_channel().await?;
            self.declare_registry(&ch).await?;
            let (publish, _) = self.link().await?;
            self.publish_to(&publish, &self.registry(), queue.as_bytes(), headers::props(&[], &[])).await
        };
        match added.await {
            Ok(()) => {
                self.state().registered.insert(queue.to_owned());
            }
            // Tried again on the next declaration; the queue works without it.
            Err(e) => tracing::debug!(error = %e, "could not add a queue to the registry"),
        }
    }

    /// Takes the archived message of task `id` on a channel of its own (see the module docs).
    async fn hold_archived(
        &self,
        queue: &str,
        id: &TaskId,
    ) -> Result<Option<(Channel, lapin::message::Delivery, Payload)>> {
        self.declare(queue).await?;
        let ch = self.own_channel().await?;
        let archive = self.names(queue).archive;
        for _ in 0..SCAN {
            let get = ch.basic_get(archive.as_str().into(), BasicGetOptions::default());
            let Some(m) = self.bounded("a basic.get", async { get.await.map_err(err) }).await? else { break };
            let payload = Payload::decode(m.delivery.data.clone());
            if matches!(&payload, Payload::Task(t) if t.id == *id) {
                return Ok(Some((ch, m.delivery, payload)));
            }
        }
        let _ = ch.close(200, "not found".into()).await;
        Ok(None)
    }

    /// Acks a held message, and closes its channel (the others it read go back).
    async fn settle_held(&self, ch: Channel, d: lapin::message::Delivery) -> Result<()> {
        let acked = self.bounded("an ack", async { d.acker.ack(BasicAckOptions::default()).await.map_err(err) }).await;
        let _ = ch.close(200, "done".into()).await;
        acked.map(drop)
    }
}

#[async_trait]
impl BrokerInspect for AmqpBroker {
    async fn queues(&self) -> Result<Vec<String>> {
        let ch = self.own_channel().await?;
        self.declare_registry(&ch).await?;
        let mut names = std::collections::BTreeSet::new();
        for _ in 0..REGISTRY_LIMIT {
            let get = ch.basic_get(self.registry().as_str().into(), BasicGetOptions::default());
            match self.bounded("a basic.get", async { get.await.map_err(err) }).await? {
                Some(m) => {
                    names.insert(String::from_utf8_lossy(&m.delivery.data).into_owned());
                }
                None => break,
            }
        }
        let _ = ch.close(200, "registry read".into()).await;
        Ok(names.into_iter().collect())
    }

    async fn list(&self, queue: &str, state: TaskState, page: Page) -> Result<Vec<TaskInfo>> {
        match state {
            TaskState::Archived => Ok(archived_infos(queue, self.archived(queue, page.offset, page.limit).await?)),
            _ => Err(unsupported(
                "the RabbitMQ broker",
                "list pending, scheduled or active tasks (a read counts as a delivery)",
            )),
        }
    }

    async fn find(&self, queue: &str, id: &TaskId) -> Result<Option<TaskInfo>> {
        let all = self.archived(queue, 0, SCAN).await?;
        Ok(archived_infos(queue, all).into_iter().find(|t| t.id == *id))
    }

    async fn run_now(&self, queue: &str, id: &TaskId, rerun: Rerun) -> Result<()> {
        let Some((ch, d, payload)) = self.hold_archived(queue, id).await? else {
            return Err(Error::NotFound { id: id.to_string() });
        };
        let Payload::Task(t) = payload else { unreachable!("held only when its task id matched") };
        // Published (confirmed) first: if this process dies before the ack, the archived copy
        // goes back to the archive, and the task runs once from its queue.
        if let Err(e) = self.publish(&rerun_envelope(t.as_ref().clone(), rerun)).await {
            let _ = ch.close(200, "publish failed".into()).await;
            return Err(e);
        }
        self.settle_held(ch, d).await
    }

    async fn archive_now(&self, _queue: &str, _id: &TaskId, _reason: &str) -> Result<()> {
        Err(unsupported("the RabbitMQ broker", "archive a waiting task (only the worker that receives it can)"))
    }

    async fn delete(&self, queue: &str, id: &TaskId) -> Result<()> {
        match self.hold_archived(queue, id).await? {
            Some((ch, d, _)) => self.settle_held(ch, d).await,
            None => Err(Error::NotFound { id: id.to_string() }),
        }
    }

    async fn run_all(&self, queue: &str, state: TaskState) -> Result<u64> {
        check_action(&TaskId::from("*"), state, "run")?;
        match state {
            TaskState::Archived => run_all_archived(self, queue).await,
            _ => Err(unsupported("the RabbitMQ broker", "run scheduled or retry tasks now")),
        }
    }

    async fn archive_all(&self, _queue: &str, _state: TaskState, _reason: &str) -> Result<Moved> {
        Err(unsupported("the RabbitMQ broker", "archive waiting tasks"))
    }

    async fn delete_all(&self, queue: &str, state: TaskState) -> Result<Moved> {
        check_action(&TaskId::from("*"), state, "delete")?;
        if state != TaskState::Archived {
            // A purge would leave their records saying they wait, blocking their ids.
            return Err(unsupported("the RabbitMQ broker", "delete waiting tasks"));
        }
        // Each archived message taken and acked, so that its task's record can go too.
        self.declare(queue).await?;
        let ch = self.own_channel().await?;
        let archive = self.names(queue).archive;
        let mut ids = Vec::new();
        loop {
            let get = ch.basic_get(archive.as_str().into(), BasicGetOptions::default());
            let Some(m) = self.bounded("a basic.get", async { get.await.map_err(err) }).await? else { break };
            if let Payload::Task(t) = Payload::decode(m.delivery.data.clone()) {
                ids.push(t.id.clone());
            }
            let acker = &m.delivery.acker;
            self.bounded("an ack", async { acker.ack(BasicAckOptions::default()).await.map_err(err) }).await?;
        }
        let _ = ch.close(200, "archive emptied".into()).await;
        Ok(Moved::ids(ids))
    }
}
