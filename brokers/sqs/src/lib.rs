//! The AWS SQS broker of [Conveyor](https://crates.io/crates/conveyor), on aws-sdk-sqs.
//!
//! - One SQS queue per Conveyor queue, `prefix-queue` (created on first use unless
//!   `create=false`), and an archive queue `prefix-queue-archive` where archived tasks go with
//!   the reason in the `conveyor-reason` attribute, both keeping messages 14 days. A queue name
//!   ending in `.fifo` is a FIFO queue: the message group is the task (one waiting task never
//!   holds up another), and each send has a deduplication id of its own (a publish's: task id,
//!   attempt and creation time), so SQS never drops a send; a delay's early receives are not
//!   lost leases.
//! - **Leases are visibility timeouts**: a received task is invisible for the lease; the
//!   worker's heartbeat extends it (`ChangeMessageVisibilityBatch`), so a long task is not
//!   delivered twice while it runs. A worker that dies stops extending, and the task reappears;
//!   `ApproximateReceiveCount - 1` is counted as lost leases. A hand-back sends a fresh copy
//!   and deletes the old one, so it does not count.
//! - **Delays**: `DelaySeconds`, rounded up to whole seconds (never early), at most 15 minutes
//!   per hop; longer delays hop (a task that arrives before the due time in its
//!   `conveyor-due` attribute is sent again for the rest and deleted). FIFO queues, which have no
//!   per-message delay, wait by visibility changes instead.
//! - **Receiving**: long polling on a worker's single queue; with several queues, short polls in
//!   priority order and a short long-poll on the first. Up to 10 messages per call.
//! - Payloads over SQS's 256 KiB are refused at enqueue with `PayloadTooLarge`.
//!
//! URL: `sqs://?region=us-east-1&endpoint=http://127.0.0.1:4566&prefix=NAME&create=true`;
//! credentials come from the standard AWS chain (environment, profile, instance role).

mod b64;
mod config;
mod deleter;
mod failure;
mod fifo;
mod inspect;
mod receive;

pub use config::SqsConfig;
use fifo::{fifo_id, publish_dedup, unique_id};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, MessageAttributeValue, QueueAttributeName};
use aws_sdk_sqs::Client;
use conveyor_core::{
    time, ArchivedTask, Broker, Delivery, Error, FailureKind, Payload, QueueAdmin, QueueStats, RawPublish, Receipt,
    ReceiveRequest, Result, TaskMessage,
};

/// SQS's largest message body.
pub const MAX_BODY: usize = 256 * 1024;
const MAX_DELAY_S: u64 = 900;
const DUE: &str = "conveyor-due";
const REASON: &str = "conveyor-reason";
const ARCHIVED_AT: &str = "conveyor-archived-at";
const ENCODING: &str = "conveyor-encoding";
/// Set on a copy sent before the original was deleted (a retry, a delay hop, a hand-back): a
/// crash in between leaves two (see `Delivery::copy`).
pub(crate) const COPY: &str = "conveyor-copy";

/// `attrs` marked as a copy's.
pub(crate) fn as_copy(mut attrs: HashMap<String, MessageAttributeValue>) -> HashMap<String, MessageAttributeValue> {
    attrs.insert(COPY.into(), attr("1"));
    attrs
}

pub(crate) use failure::err;

fn now_ms() -> i64 {
    time::to_millis(SystemTime::now()) as i64
}

/// The SQS broker. Cheap to clone.
#[derive(Clone)]
pub struct SqsBroker {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: SqsConfig,
    client: Client,
    urls: tokio::sync::Mutex<HashMap<String, String>>,
    paused: Mutex<std::collections::HashSet<String>>,
    /// Wakes receivers whose queues were all paused.
    resumed: tokio::sync::Notify,
    deletes: tokio::sync::mpsc::UnboundedSender<deleter::DeleteRequest>,
}

struct SqsReceipt {
    url: String,
    handle: String,
    queue: String,
    body: Arc<String>,
    attrs: HashMap<String, MessageAttributeValue>,
    /// When the message's visibility timeout runs out (at the latest): from then on another
    /// receiver may get it, so the lease is lost. Kept here because SQS (and its emulator)
    /// may still accept an old receipt handle after the message was received again.
    visible_at: Mutex<Instant>,
}

/// How long SQS keeps a message in the queues this broker creates: 14 days, the most it allows.
pub const RETENTION_S: u32 = 14 * 24 * 3600;

/// The visibility timeout SQS is given for a lease: whole seconds, 1 s to 12 h.
pub(crate) fn visibility_secs(lease: Duration) -> i32 {
    lease.as_secs().clamp(1, 43_200) as i32
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Error codes of a visibility change for a message this receiver no longer holds.
const NOT_HELD: [&str; 2] = ["ReceiptHandleIsInvalid", "MessageNotInflight"];

fn attr(v: impl Into<String>) -> MessageAttributeValue {
    MessageAttributeValue::builder().data_type("String").string_value(v).build().expect("data type is set")
}

impl SqsBroker {
    /// Connects with the settings of an `sqs://` URL.
    pub async fn connect(url: &str) -> Result<Self> {
        let cfg = SqsConfig::from_url(url)?;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(cfg.region.clone()));
        if let Some(e) = &cfg.endpoint {
            loader = loader.endpoint_url(e);
        }
        let client = Client::new(&loader.load().await);
        let deletes = deleter::start(client.clone());
        let inner = Inner {
            cfg,
            client,
            urls: Default::default(),
            paused: Default::default(),
            resumed: Default::default(),
            deletes,
        };
        Ok(SqsBroker { inner: Arc::new(inner) })
    }

    fn client(&self) -> &Client {
        &self.inner.client
    }

    fn sqs_name(&self, queue: &str, archive: bool) -> String {
        let (base, fifo) = match queue.strip_suffix(".fifo") {
            Some(b) => (b, true),
            None => (queue, false),
        };
        let clean: String = base.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        let name = format!("{}-{clean}{}", self.inner.cfg.prefix, if archive { "-archive" } else { "" });
        if fifo {
            format!("{name}.fifo")
        } else {
            name
        }
    }

    /// The URL of a queue (or its archive), created if missing and allowed.
    async fn url(&self, queue: &str, archive: bool) -> Result<String> {
        // Its archive's name is the longer: checked for both, so that a task never reaches a
        // queue whose archive SQS would refuse.
        if self.sqs_name(queue, true).len() > 80 {
            return Err(Error::InvalidQueueName {
                name: queue.to_owned(),
                reason: "with the prefix and `-archive`, longer than the 80 characters SQS allows",
            });
        }
        let name = self.sqs_name(queue, archive);
        if let Some(u) = self.inner.urls.lock().await.get(&name) {
            return Ok(u.clone());
        }
        let url = if self.inner.cfg.create {
            // The longest SQS keeps a message (the default is 4 days): a backlog, or the
            // archive an operator has not looked at yet, is not dropped after 4 days.
            let mut req = self
                .client()
                .create_queue()
                .queue_name(&name)
                .attributes(QueueAttributeName::MessageRetentionPeriod, RETENTION_S.to_string());
            if name.ends_with(".fifo") {
                req = req.attributes(QueueAttributeName::FifoQueue, "true");
            }
            req.send().await.map_err(err)?.queue_url().map(str::to_owned)
        } else {
            self.client().get_queue_url().queue_name(&name).send().await.map_err(err)?.queue_url().map(str::to_owned)
        }
        .ok_or_else(|| failure::fail(FailureKind::Protocol, format!("SQS returned no URL for queue `{name}`")))?;
        self.inner.urls.lock().await.insert(name, url.clone());
        Ok(url)
    }

    /// Sends one body, delayed until `due_ms` if it is in the future.
    async fn send(
        &self,
        queue: &str,
        archive: bool,
        body: &str,
        mut attrs: HashMap<String, MessageAttributeValue>,
        due_ms: Option<i64>,
        (group, dedup): (&str, &str),
    ) -> Result<()> {
        if body.len() > MAX_BODY {
            return Err(Error::PayloadTooLarge { size: body.len(), limit: MAX_BODY });
        }
        let url = self.url(queue, archive).await?;
        let fifo = queue.ends_with(".fifo");
        let mut req = self.client().send_message().queue_url(&url).message_body(body);
        if let Some(due) = due_ms.filter(|d| *d > now_ms()) {
            attrs.insert(DUE.into(), attr(due.to_string()));
            if !fifo {
                let secs = ((due - now_ms()).max(0) as u64).div_ceil(1000).min(MAX_DELAY_S);
                req = req.delay_seconds(secs as i32);
            }
        } else {
            attrs.remove(DUE);
        }
        for (k, v) in attrs {
            req = req.message_attributes(k, v);
        }
        if fifo {
            req = req.message_group_id(fifo_id(group)).message_deduplication_id(fifo_id(dedup));
        }
        req.send().await.map_err(err)?;
        Ok(())
    }

    fn receipt<'a>(&self, d: &'a Delivery) -> Result<&'a SqsReceipt> {
        d.receipt
            .get::<SqsReceipt>()
            .ok_or_else(|| failure::fail(FailureKind::Rejected, "receipt was not issued by an SQS broker"))
    }

    async fn delete(&self, r: &SqsReceipt) -> Result<()> {
        let (done, answer) = tokio::sync::oneshot::channel();
        let req = deleter::DeleteRequest { url: r.url.clone(), handle: r.handle.clone(), done };
        self.inner
            .deletes
            .send(req)
            .map_err(|_| failure::fail(FailureKind::Unavailable, "the delete flusher has stopped"))?;
        answer.await.map_err(|_| failure::fail(FailureKind::Unavailable, "the delete flusher has stopped"))?
    }

    /// One entry of a `SendMessageBatch`, with its queue URL.
    async fn batch_entry(
        &self,
        i: usize,
        t: &TaskMessage,
    ) -> Result<(String, aws_sdk_sqs::types::SendMessageBatchRequestEntry)> {
        let body = String::from_utf8(t.encode()?).map_err(|e| Error::broker(e.to_string()))?;
        if body.len() > MAX_BODY {
            return Err(Error::PayloadTooLarge { size: body.len(), limit: MAX_BODY });
        }
        let url = self.url(&t.queue, false).await?;
        let mut e = aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder().id(i.to_string()).message_body(body);
        if let Some(due) = t.eta.map(|e| time::to_millis(e) as i64).filter(|d| *d > now_ms()) {
            e = e.message_attributes(DUE, attr(due.to_string()));
            if !t.queue.ends_with(".fifo") {
                e = e.delay_seconds(((due - now_ms()).max(0) as u64).div_ceil(1000).min(MAX_DELAY_S) as i32);
            }
        }
        if t.queue.ends_with(".fifo") {
            e = e.message_group_id(fifo_id(t.id.as_str())).message_deduplication_id(fifo_id(&publish_dedup(t)));
        }
        Ok((url, e.build().map_err(failure::build_err)?))
    }

    async fn queue_counts(&self, url: &str) -> Result<HashMap<QueueAttributeName, String>> {
        let out = self
            .client()
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .map_err(err)?;
        Ok(out.attributes().cloned().unwrap_or_default())
    }
}

fn count(attrs: &HashMap<QueueAttributeName, String>, name: QueueAttributeName) -> u64 {
    attrs.get(&name).and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[async_trait]
impl Broker for SqsBroker {
    fn kind(&self) -> &'static str {
        "sqs"
    }

    fn describe(&self) -> String {
        let cfg = &self.inner.cfg;
        let endpoint =
            cfg.endpoint.as_deref().map(|e| format!(" at {}", conveyor_core::redact_url(e))).unwrap_or_default();
        format!("sqs {}{endpoint} (prefix `{}`)", cfg.region, cfg.prefix)
    }

    async fn publish(&self, task: &TaskMessage) -> Result<()> {
        let body = String::from_utf8(task.encode()?).map_err(|e| Error::broker(e.to_string()))?;
        let due = task.eta.map(|e| time::to_millis(e) as i64);
        self.send(&task.queue, false, &body, HashMap::new(), due, (task.id.as_str(), &publish_dedup(task))).await
    }

    async fn publish_many(&self, tasks: &[TaskMessage]) -> Vec<Result<()>> {
        // SendMessageBatch, 10 per call, the calls of different chunks at once.
        let mut out: Vec<Result<()>> = tasks.iter().map(|_| Ok(())).collect();
        type Entry = aws_sdk_sqs::types::SendMessageBatchRequestEntry;
        let mut chunks: Vec<(String, Vec<(usize, Entry)>)> = Vec::new();
        for (i, t) in tasks.iter().enumerate() {
            match self.batch_entry(i, t).await {
                Ok((url, e)) => match chunks.iter_mut().rev().find(|(u, es)| *u == url && es.len() < 10) {
                    Some((_, es)) => es.push((i, e)),
                    None => chunks.push((url, vec![(i, e)])),
                },
                Err(e) => out[i] = Err(e),
            }
        }
        let mut calls = tokio::task::JoinSet::new();
        for (url, entries) in chunks {
            let client = self.client().clone();
            calls.spawn(async move {
                let ids: Vec<usize> = entries.iter().map(|(i, _)| *i).collect();
                let mut req = client.send_message_batch().queue_url(&url);
                for (_, e) in entries {
                    req = req.entries(e);
                }
                (ids, req.send().await.map_err(err))
            });
        }
        while let Some(joined) = calls.join_next().await {
            let Ok((ids, res)) = joined else { continue };
            match res {
                Ok(o) => {
                    for f in o.failed() {
                        if let Ok(i) = f.id().parse::<usize>() {
                            out[i] = Err(failure::entry_err(f.sender_fault(), f.code(), f.message()));
                        }
                    }
                }
                Err(e) => {
                    let (kind, msg) = (e.failure_kind().unwrap_or(FailureKind::Unavailable), e.to_string());
                    for i in ids {
                        out[i] = Err(failure::fail(kind, msg.clone()));
                    }
                }
            }
        }
        out
    }

    async fn receive(&self, req: &ReceiveRequest<'_>) -> Result<Vec<Delivery>> {
        let got = self.receive_unpaused(req).await?;
        Ok(conveyor_core::broker::hand_back_paused(self, got, |q| {
            self.inner.paused.lock().unwrap_or_else(|e| e.into_inner()).contains(q)
        })
        .await)
    }

    async fn ack(&self, d: &Delivery) -> Result<()> {
        self.delete(self.receipt(d)?).await
    }

    async fn retry(&self, d: &Delivery, task: &TaskMessage, delay: Duration) -> Result<()> {
        let r = self.receipt(d)?;
        let body = String::from_utf8(task.encode()?).map_err(|e| Error::broker(e.to_string()))?;
        let due = (!delay.is_zero()).then(|| now_ms() + delay.as_millis().min(i64::MAX as u128 / 2) as i64);
        // A fresh deduplication id per send: a requeue of an unknown task sends the same
        // envelope again, which a reused id would have SQS drop (and the original is deleted).
        let dedup = unique_id("retry");
        self.send(&task.queue, false, &body, as_copy(HashMap::new()), due, (task.id.as_str(), &dedup)).await?;
        self.delete(r).await
    }

    async fn archive(&self, d: &Delivery, reason: &str) -> Result<()> {
        let r = self.receipt(d)?;
        let mut attrs = r.attrs.clone();
        attrs.insert(REASON.into(), attr(reason));
        attrs.insert(ARCHIVED_AT.into(), attr(now_ms().to_string()));
        let dedup = unique_id("archive");
        self.send(&r.queue, true, &r.body, attrs, None, (&dedup, &dedup)).await?;
        self.delete(r).await
    }

    async fn release(&self, d: &Delivery) -> Result<()> {
        // A fresh copy, so that the hand-back is not counted as a lost lease.
        let r = self.receipt(d)?;
        // Unique: on a FIFO queue, two hand-backs with one deduplication id within five
        // minutes would keep only the first, and the second task would be lost.
        let dedup = unique_id("release");
        self.send(&r.queue, false, &r.body, as_copy(r.attrs.clone()), None, (&dedup, &dedup)).await?;
        self.delete(r).await
    }

    async fn extend_leases(&self, receipts: &[Receipt], lease: Duration) -> Result<Vec<usize>> {
        let mut lost = Vec::new();
        let mut by_url: HashMap<&str, Vec<(usize, &SqsReceipt)>> = HashMap::new();
        let sent = Instant::now();
        for (i, r) in receipts.iter().enumerate() {
            let r = r
                .get::<SqsReceipt>()
                .ok_or_else(|| failure::fail(FailureKind::Rejected, "receipt was not issued by an SQS broker"))?;
            // Visible again: another receiver may have it already. Not extended (that could
            // hide the other receiver's copy), lost.
            if *lock(&r.visible_at) <= sent {
                lost.push(i);
            } else {
                by_url.entry(&r.url).or_default().push((i, r));
            }
        }
        let secs = visibility_secs(lease);
        // Every chunk is asked even if one fails, so that one deleted queue cannot let the
        // leases of the others run out; the first failure is reported at the end.
        let mut first_err = None;
        for (url, rs) in by_url {
            for chunk in rs.chunks(10) {
                let mut req = self.client().change_message_visibility_batch().queue_url(url);
                for (n, (_, r)) in chunk.iter().enumerate() {
                    let entry = ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(n.to_string())
                        .receipt_handle(&r.handle)
                        .visibility_timeout(secs)
                        .build()
                        .map_err(failure::build_err)?;
                    req = req.entries(entry);
                }
                let out = match req.send().await {
                    Ok(out) => out,
                    Err(e) => {
                        first_err.get_or_insert(err(e));
                        continue;
                    }
                };
                // A receipt SQS refuses (whatever the code: a deleted message's is
                // `InvalidParameterValue` on SQS) is not held any more.
                for f in out.failed() {
                    if let Some((i, _)) = f.id().parse::<usize>().ok().and_then(|n| chunk.get(n)) {
                        if !NOT_HELD.contains(&f.code()) {
                            tracing::debug!(
                                code = f.code(),
                                message = f.message().unwrap_or(""),
                                "visibility change refused"
                            );
                        }
                        lost.push(*i);
                    }
                }
                let until = sent + Duration::from_secs(secs as u64);
                for (n, (_, r)) in chunk.iter().enumerate() {
                    if out.successful().iter().any(|s| s.id() == n.to_string()) {
                        *lock(&r.visible_at) = until;
                    }
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        lost.sort_unstable();
        Ok(lost)
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats> {
        let main = self.queue_counts(&self.url(queue, false).await?).await?;
        let arch = self.queue_counts(&self.url(queue, true).await?).await?;
        let mut s = QueueStats::default();
        s.queue = queue.to_owned();
        s.pending = count(&main, QueueAttributeName::ApproximateNumberOfMessages);
        s.active = count(&main, QueueAttributeName::ApproximateNumberOfMessagesNotVisible);
        s.scheduled = count(&main, QueueAttributeName::ApproximateNumberOfMessagesDelayed);
        s.archived = count(&arch, QueueAttributeName::ApproximateNumberOfMessages);
        s.paused = self.inner.paused.lock().unwrap_or_else(|e| e.into_inner()).contains(queue);
        Ok(s)
    }

    fn admin(&self) -> Option<&dyn QueueAdmin> {
        Some(self)
    }

    fn raw(&self) -> Option<&dyn RawPublish> {
        Some(self)
    }

    fn inspect(&self) -> Option<&dyn conveyor_core::inspect::BrokerInspect> {
        Some(self)
    }
}

#[async_trait]
impl QueueAdmin for SqsBroker {
    async fn pause(&self, queue: &str) -> Result<()> {
        self.inner.paused.lock().unwrap_or_else(|e| e.into_inner()).insert(queue.to_owned());
        Ok(())
    }

    async fn resume(&self, queue: &str) -> Result<()> {
        self.inner.paused.lock().unwrap_or_else(|e| e.into_inner()).remove(queue);
        self.inner.resumed.notify_waiters();
        Ok(())
    }

    async fn archived(&self, queue: &str, offset: usize, limit: usize) -> Result<Vec<ArchivedTask>> {
        // Peeks (visibility 0) until no new message shows up; SQS gives no order or paging.
        let url = self.url(queue, true).await?;
        let mut seen: HashMap<String, ArchivedTask> = HashMap::new();
        for _ in 0..20 {
            let out = self
                .client()
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .visibility_timeout(0)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(err)?;
            let mut new = 0;
            for m in out.messages() {
                let Some(id) = m.message_id() else { continue };
                if seen.contains_key(id) {
                    continue;
                }
                new += 1;
                let attrs = m.message_attributes().cloned().unwrap_or_default();
                let s = |k: &str| attrs.get(k).and_then(|v| v.string_value()).map(str::to_owned);
                let body = m.body().unwrap_or_default();
                let bytes = match s(ENCODING).as_deref() {
                    Some("base64") => b64::decode(body).unwrap_or_else(|| body.as_bytes().to_vec()),
                    _ => body.as_bytes().to_vec(),
                };
                let payload = Payload::decode(bytes);
                let at = s(ARCHIVED_AT).and_then(|v| v.parse().ok()).map_or(SystemTime::UNIX_EPOCH, time::from_millis);
                seen.insert(id.to_owned(), ArchivedTask::new(payload, s(REASON).unwrap_or_default(), at));
            }
            if new == 0 || seen.len() >= offset.saturating_add(limit) {
                break;
            }
        }
        let mut all: Vec<ArchivedTask> = seen.into_values().collect();
        all.sort_by_key(|a| std::cmp::Reverse(a.archived_at));
        Ok(all.into_iter().skip(offset).take(limit).collect())
    }
}

#[async_trait]
impl RawPublish for SqsBroker {
    async fn publish_raw(&self, queue: &str, bytes: Vec<u8>) -> Result<()> {
        let dedup = unique_id("raw");
        match String::from_utf8(bytes) {
            Ok(text) if b64::sqs_safe(&text) => {
                self.send(queue, false, &text, HashMap::new(), None, (&dedup, &dedup)).await
            }
            Ok(text) => self.send_encoded(queue, text.as_bytes(), &dedup).await,
            Err(e) => self.send_encoded(queue, e.as_bytes(), &dedup).await,
        }
    }
}

impl SqsBroker {
    async fn send_encoded(&self, queue: &str, bytes: &[u8], dedup: &str) -> Result<()> {
        let attrs = HashMap::from([(ENCODING.to_owned(), attr("base64"))]);
        self.send(queue, false, &b64::encode(bytes), attrs, None, (dedup, dedup)).await
    }
}
