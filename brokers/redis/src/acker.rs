//! Acks by group commit: acks that arrive while one batch is on its way go together in the next
//! (one script call per queue), which spares Redis a script run per task under load and adds no
//! wait when idle.

use std::sync::Arc;

use conveyor_core::{Error, Receipt, Result};
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};

use crate::{scripts, RedisReceipt};

/// Most acks in one script call.
const MAX_BATCH: usize = 512;

pub(crate) struct AckRequest {
    /// A [`RedisReceipt`] (checked by the sender).
    pub(crate) receipt: Receipt,
    pub(crate) done: oneshot::Sender<Result<bool>>,
}

impl AckRequest {
    fn receipt(&self) -> &RedisReceipt {
        self.receipt.get::<RedisReceipt>().expect("checked by the sender")
    }
}

/// Starts the flusher; it ends when the returned sender (and its clones) are dropped.
pub(crate) fn start(conn: ConnectionManager) -> mpsc::UnboundedSender<AckRequest> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(flush_loop(conn, rx));
    tx
}

/// An entry id `MS-SEQ` as numbers, for ordering (anything else sorts first).
fn entry_order(eid: &str) -> (u64, u64) {
    let (ms, seq) = eid.split_once('-').unwrap_or(("", ""));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

fn stream_of(p: &Pending) -> &str {
    &p.2.receipt().suffix
}

/// One ack waiting in a batch: its queue (the keys' address), entry order, and request.
type Pending = (usize, (u64, u64), AckRequest);

async fn flush_loop(mut conn: ConnectionManager, mut rx: mpsc::UnboundedReceiver<AckRequest>) {
    // Reused from batch to batch: a large buffer allocated per batch costs more than its use.
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(r) = next {
            let queue = Arc::as_ptr(&r.receipt().keys) as usize;
            let order = entry_order(&r.receipt().eid);
            batch.push((queue, order, r));
            next = if batch.len() < MAX_BATCH { rx.try_recv().ok() } else { None };
        }
        // By queue, then stream (the delivery's `SUFFIX|ENTRY-ID`), oldest entry first: the
        // script acks a stream's deliveries with one XACK, trims the stream up to the newest,
        // and answers in this order.
        batch.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0).then_with(|| stream_of(a).cmp(stream_of(b))).then_with(|| a.1.cmp(&b.1))
        });
        while let Some(&(queue, _, _)) = batch.first() {
            let n = batch.iter().take_while(|p| p.0 == queue).count();
            let answer = flush_queue(&mut conn, &batch[..n]).await;
            for (i, (_, _, r)) in batch.drain(..n).enumerate() {
                let _ = r.done.send(match &answer {
                    Ok(acked) => Ok(acked.get(i) == Some(&1)),
                    Err(msg) => Err(Error::broker(msg.clone())),
                });
            }
        }
    }
}

/// Acks one queue's deliveries (sorted by stream, then entry) in one script call; answers 1
/// (acked) or 0 (lease lost) for each.
async fn flush_queue(conn: &mut ConnectionManager, reqs: &[Pending]) -> std::result::Result<Vec<i64>, String> {
    let keys = &reqs[0].2.receipt().keys;
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(scripts::ACK_MANY.get_hash()).arg(1).arg(&keys.ids).arg(&keys.base);
    for group in reqs.chunk_by(|a, b| stream_of(a) == stream_of(b)) {
        cmd.arg(stream_of(&group[0])).arg(group.len());
        for p in group {
            cmd.arg(&p.2.receipt().eid);
        }
        for p in group {
            cmd.arg(&p.2.receipt().id);
        }
    }
    let mut answer = cmd.query_async::<Vec<i64>>(conn).await;
    if matches!(&answer, Err(e) if e.code() == Some("NOSCRIPT")) {
        // Redis lost its scripts (a restart, `SCRIPT FLUSH`): load it, and send the batch again.
        answer = match scripts::ACK_MANY.prepare_invoke().load_async(conn).await {
            Ok(_) => cmd.query_async::<Vec<i64>>(conn).await,
            Err(e) => Err(e),
        };
    }
    answer.map_err(|e| e.to_string())
}
