//! The inspector's view of the SQS broker: queues from `ListQueues`, and the archive (list,
//! find, run again, delete). Pending and scheduled tasks cannot be read without receiving them,
//! which SQS counts as a delivery (a lost lease to the worker), so those listings and actions
//! are `Unsupported` (docs/operations.md has the capability table).
//!
//! An archived task is taken by receiving it from the archive queue with a visibility timeout,
//! which hides it from everyone else (a second operator does not find it); it runs again as a
//! new message in its queue, and only then is the archived one deleted.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::Message;
use conveyor_core::inspect::{
    archived_infos, check_action, rerun_envelope, run_all_archived, unsupported, BrokerInspect, Moved, Page, Rerun,
    TaskInfo,
};
use conveyor_core::{Broker, Error, Payload, QueueAdmin, Result, TaskId, TaskState};

use crate::{b64, err, SqsBroker, ENCODING};

/// How long an operator's scan holds the archived messages it read.
const HOLD: Duration = Duration::from_secs(30);

/// How many receives one scan of an archive makes at most (10 messages each).
const SCAN_CALLS: usize = 100;

fn body_bytes(m: &Message) -> Vec<u8> {
    let body = m.body().unwrap_or_default();
    let encoding = m.message_attributes().and_then(|a| a.get(ENCODING)).and_then(|v| v.string_value());
    match encoding {
        Some("base64") => b64::decode(body).unwrap_or_else(|| body.as_bytes().to_vec()),
        _ => body.as_bytes().to_vec(),
    }
}

impl SqsBroker {
    /// Takes the archived message of task `id` out of sight of everyone else; the others it
    /// read are made visible again at once.
    async fn hold_archived(&self, queue: &str, id: &TaskId) -> Result<Option<(String, Message, Payload)>> {
        let url = self.url(queue, true).await?;
        for _ in 0..SCAN_CALLS {
            let got = self.receive_held(&url).await?;
            if got.is_empty() {
                return Ok(None);
            }
            let mut found = None;
            for m in &got {
                let payload = Payload::decode(body_bytes(m));
                let hit = matches!(&payload, Payload::Task(t) if t.id == *id);
                if hit && found.is_none() {
                    found = Some((m.clone(), payload));
                } else if let Some(h) = m.receipt_handle() {
                    let release = self.client().change_message_visibility().queue_url(&url).receipt_handle(h);
                    let _ = release.visibility_timeout(0).send().await;
                }
            }
            if let Some((m, p)) = found {
                return Ok(Some((url, m, p)));
            }
        }
        Ok(None)
    }

    /// Up to 10 archived messages, hidden from everyone else for [`HOLD`].
    async fn receive_held(&self, url: &str) -> Result<Vec<Message>> {
        let got = self
            .client()
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(HOLD.as_secs() as i32)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(err)?;
        Ok(got.messages.unwrap_or_default())
    }

    async fn delete_held(&self, url: &str, m: &Message) -> Result<()> {
        let handle = m.receipt_handle().unwrap_or_default();
        self.client().delete_message().queue_url(url).receipt_handle(handle).send().await.map_err(err)?;
        Ok(())
    }
}

#[async_trait]
impl BrokerInspect for SqsBroker {
    async fn queues(&self) -> Result<Vec<String>> {
        let prefix = format!("{}-", self.inner.cfg.prefix);
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = self.client().list_queues().queue_name_prefix(&prefix).max_results(1000);
            if let Some(t) = &token {
                req = req.next_token(t);
            }
            let out = req.send().await.map_err(err)?;
            for url in out.queue_urls() {
                let name = url.rsplit('/').next().unwrap_or_default();
                let Some(q) = name.strip_prefix(&prefix) else { continue };
                let base = q.strip_suffix(".fifo").unwrap_or(q);
                if !base.ends_with("-archive") {
                    names.push(q.to_owned());
                }
            }
            token = out.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn list(&self, queue: &str, state: TaskState, page: Page) -> Result<Vec<TaskInfo>> {
        match state {
            TaskState::Archived => Ok(archived_infos(queue, self.archived(queue, page.offset, page.limit).await?)),
            _ => Err(unsupported(
                "the SQS broker",
                "list pending, scheduled or active tasks (a read counts as a delivery)",
            )),
        }
    }

    async fn find(&self, queue: &str, id: &TaskId) -> Result<Option<TaskInfo>> {
        // Peeks: the archive in pages, newest first (see `QueueAdmin::archived`).
        let all = self.archived(queue, 0, 10_000).await?;
        Ok(archived_infos(queue, all).into_iter().find(|t| t.id == *id))
    }

    async fn run_now(&self, queue: &str, id: &TaskId, rerun: Rerun) -> Result<()> {
        let Some((url, m, payload)) = self.hold_archived(queue, id).await? else {
            return Err(Error::NotFound { id: id.to_string() });
        };
        let Payload::Task(t) = payload else { unreachable!("held only when its task id matched") };
        // Published first: if this process dies before the delete, the archived copy shows up
        // again after the hold, and a second run of it is refused as a duplicate by its record.
        self.publish(&rerun_envelope(t.as_ref().clone(), rerun)).await?;
        self.delete_held(&url, &m).await
    }

    async fn archive_now(&self, _queue: &str, _id: &TaskId, _reason: &str) -> Result<()> {
        Err(unsupported("the SQS broker", "archive a waiting task (only the worker that receives it can)"))
    }

    async fn delete(&self, queue: &str, id: &TaskId) -> Result<()> {
        match self.hold_archived(queue, id).await? {
            Some((url, m, _)) => self.delete_held(&url, &m).await,
            None => Err(Error::NotFound { id: id.to_string() }),
        }
    }

    async fn run_all(&self, queue: &str, state: TaskState) -> Result<u64> {
        check_action(&TaskId::from("*"), state, "run")?;
        match state {
            TaskState::Archived => run_all_archived(self, queue).await,
            _ => Err(unsupported("the SQS broker", "run scheduled or retry tasks now")),
        }
    }

    async fn archive_all(&self, _queue: &str, _state: TaskState, _reason: &str) -> Result<Moved> {
        Err(unsupported("the SQS broker", "archive waiting tasks"))
    }

    async fn delete_all(&self, queue: &str, state: TaskState) -> Result<Moved> {
        check_action(&TaskId::from("*"), state, "delete")?;
        if state != TaskState::Archived {
            // A purge of the queue would take the tasks being run as well.
            return Err(unsupported("the SQS broker", "delete waiting tasks"));
        }
        // Each archived message received and deleted, so that its task's record can go too.
        let url = self.url(queue, true).await?;
        let mut ids = Vec::new();
        loop {
            let got = self.receive_held(&url).await?;
            if got.is_empty() {
                return Ok(Moved::ids(ids));
            }
            for m in &got {
                if let Payload::Task(t) = Payload::decode(body_bytes(m)) {
                    ids.push(t.id.clone());
                }
                self.delete_held(&url, m).await?;
            }
        }
    }
}
