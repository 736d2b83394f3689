//! Acks by group commit: deletes that arrive while others are on their way go together as
//! `DeleteMessageBatch` calls (10 per call, several calls at once), which spares SQS a request
//! per task under load and adds no wait when idle.

use std::collections::HashMap;

use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use aws_sdk_sqs::Client;
use conveyor_core::{FailureKind, Result};
use tokio::sync::{mpsc, oneshot};

pub(crate) struct DeleteRequest {
    pub(crate) url: String,
    pub(crate) handle: String,
    pub(crate) done: oneshot::Sender<Result<()>>,
}

/// Starts the flusher; it ends when the returned sender is dropped.
pub(crate) fn start(client: Client) -> mpsc::UnboundedSender<DeleteRequest> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(flush_loop(client, rx));
    tx
}

async fn flush_loop(client: Client, mut rx: mpsc::UnboundedReceiver<DeleteRequest>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 200 {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let mut by_url: HashMap<String, Vec<DeleteRequest>> = HashMap::new();
        for r in batch {
            by_url.entry(r.url.clone()).or_default().push(r);
        }
        let mut calls = tokio::task::JoinSet::new();
        for (url, reqs) in by_url {
            let mut reqs = reqs.into_iter();
            loop {
                let chunk: Vec<DeleteRequest> = reqs.by_ref().take(10).collect();
                if chunk.is_empty() {
                    break;
                }
                calls.spawn(delete_chunk(client.clone(), url.clone(), chunk));
            }
        }
        while calls.join_next().await.is_some() {}
    }
}

async fn delete_chunk(client: Client, url: String, chunk: Vec<DeleteRequest>) {
    let mut req = client.delete_message_batch().queue_url(&url);
    for (i, r) in chunk.iter().enumerate() {
        match DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(&r.handle).build() {
            Ok(e) => req = req.entries(e),
            Err(e) => {
                let msg = e.to_string();
                for r in chunk {
                    let _ = r.done.send(Err(crate::failure::fail(FailureKind::Rejected, msg.clone())));
                }
                return;
            }
        }
    }
    match req.send().await {
        Ok(out) => {
            let failed: HashMap<&str, _> = out.failed().iter().map(|f| (f.id(), f)).collect();
            for (i, r) in chunk.into_iter().enumerate() {
                let res = match failed.get(i.to_string().as_str()) {
                    Some(f) => Err(crate::failure::entry_err(f.sender_fault(), f.code(), f.message())),
                    None => Ok(()),
                };
                let _ = r.done.send(res);
            }
        }
        Err(e) => {
            let e = crate::err(e);
            let (kind, msg) = (e.failure_kind().unwrap_or(FailureKind::Unavailable), e.to_string());
            for r in chunk {
                let _ = r.done.send(Err(crate::failure::fail(kind, msg.clone())));
            }
        }
    }
}
