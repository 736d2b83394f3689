//! Acks by group commit: acks that arrive while one batch is on its way go together in the next
//! (one script call per queue), which spares Redis a script run per task under load and adds no
//! wait when idle.

use std::collections::HashMap;
use std::sync::Arc;

use conveyor_core::{Error, Result};
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};

use crate::keys::QueueKeys;
use crate::scripts;

/// Most acks in one script call.
const MAX_BATCH: usize = 512;

pub(crate) struct AckRequest {
    pub(crate) keys: Arc<QueueKeys>,
    pub(crate) id: String,
    pub(crate) token: String,
    pub(crate) done: oneshot::Sender<Result<bool>>,
}

/// Starts the flusher; it ends when the returned sender (and its clones) are dropped.
pub(crate) fn start(conn: ConnectionManager) -> mpsc::UnboundedSender<AckRequest> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(flush_loop(conn, rx));
    tx
}

/// The stream suffix of a delivery `SUFFIX|ENTRY-ID`.
fn stream_of(token: &str) -> &str {
    token.split_once('|').map_or(token, |(s, _)| s)
}

/// The entry id of a delivery `SUFFIX|ENTRY-ID`.
fn entry_of(token: &str) -> &str {
    token.split_once('|').map_or("", |(_, e)| e)
}

/// An entry id `MS-SEQ` as numbers, for ordering (anything else sorts first).
fn entry_order(token: &str) -> (u64, u64) {
    let (ms, seq) = entry_of(token).split_once('-').unwrap_or(("", ""));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

async fn flush_loop(mut conn: ConnectionManager, mut rx: mpsc::UnboundedReceiver<AckRequest>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let mut by_queue: HashMap<String, Vec<AckRequest>> = HashMap::new();
        for r in batch {
            by_queue.entry(r.keys.ids.clone()).or_default().push(r);
        }
        for (_, mut reqs) in by_queue {
            let keys = reqs[0].keys.clone();
            // Grouped by stream (the delivery's `SUFFIX|ENTRY-ID`), oldest entry first: the
            // script acks a stream's deliveries with one XACK, trims the stream up to the
            // newest, and answers in this order.
            reqs.sort_by(|a, b| {
                stream_of(&a.token)
                    .cmp(stream_of(&b.token))
                    .then_with(|| entry_order(&a.token).cmp(&entry_order(&b.token)))
            });
            let mut inv = scripts::ACK_MANY.key(&keys.ids);
            inv.arg(&keys.base);
            for group in reqs.chunk_by(|a, b| stream_of(&a.token) == stream_of(&b.token)) {
                inv.arg(stream_of(&group[0].token)).arg(group.len());
                for r in group {
                    inv.arg(entry_of(&r.token));
                }
                for r in group {
                    inv.arg(&r.id);
                }
            }
            match inv.invoke_async::<Vec<i64>>(&mut conn).await {
                Ok(acked) => {
                    for (r, a) in reqs.into_iter().zip(acked) {
                        let _ = r.done.send(Ok(a == 1));
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    for r in reqs {
                        let _ = r.done.send(Err(Error::broker(msg.clone())));
                    }
                }
            }
        }
    }
}
