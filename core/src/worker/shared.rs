//! What the worker's loop and every delivery it runs share.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::inflight::InFlight;
use super::queues::QueueSelector;
use super::WorkerConfig;
use crate::backend::ResultBackend;
use crate::broker::Broker;
use crate::handler::{Handler, Shutdown};
use crate::retry::RetryPolicy;

/// What a worker holds for its whole life.
pub(crate) struct Shared {
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) backend: Arc<dyn ResultBackend>,
    pub(crate) handlers: HashMap<String, Arc<dyn Handler>>,
    pub(crate) retry: Arc<dyn RetryPolicy>,
    pub(crate) config: WorkerConfig,
    pub(crate) selector: QueueSelector,
    pub(crate) inflight: InFlight,
    /// For launching workflow continuations.
    pub(crate) client: crate::client::Client,
    /// What handlers are given ([`WorkerBuilder::data`](crate::WorkerBuilder::data)).
    pub(crate) data: crate::data::DataMap,
    /// Per queue of `config.queues`: attempts ended and failed since the last flush to the
    /// history (see `inspect::history`).
    pub(crate) counts: Vec<(std::sync::atomic::AtomicU64, std::sync::atomic::AtomicU64)>,
    /// How the attempts this worker runs name it (`host:pid`).
    pub(crate) label: String,
}

impl Shared {
    /// The attempt of `task` whose handler started at `started` (if it did), ending now in
    /// `outcome`.
    pub(crate) fn ran(
        &self,
        task: &crate::task::TaskMessage,
        started: Option<std::time::SystemTime>,
        outcome: crate::task::TaskState,
        error: Option<&str>,
    ) -> Option<crate::backend::Attempt> {
        let a = crate::backend::Attempt::ended(task.retried, started?, outcome, error.map(str::to_owned));
        Some(a.on(self.label.as_str()))
    }

    /// Counts an attempt of a task of `queue` that ended (and failed).
    pub(crate) fn count(&self, queue: &str, failed: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(i) = self.config.queues.iter().position(|(q, _)| q == queue) {
            self.counts[i].0.fetch_add(1, Relaxed);
            if failed {
                self.counts[i].1.fetch_add(1, Relaxed);
            }
        }
    }
}

/// What every task of one run shares (one `Arc` clone per task).
pub(crate) struct Ctx {
    pub(crate) shared: Arc<Shared>,
    /// Graceful shutdown began: stop receiving.
    pub(crate) stop: CancellationToken,
    /// Interrupt running handlers and hand their tasks back.
    pub(crate) hard: CancellationToken,
    /// What handlers see of `stop`.
    pub(crate) shutdown: Shutdown,
    /// Deliveries whose handler returned, being recorded and settled with the broker (they
    /// hold no handler slot meanwhile; see `exec::Held`).
    pub(crate) settling: Semaphore,
}
