use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Layer;
use crate::handler::{ErrorKind, Handler, Request, TaskResult};
use crate::task::TaskMessage;

/// How an attempt ended, as reported to a [`MetricsHook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The handler returned `Ok`.
    Succeeded,
    /// The handler failed (including panics and timeouts inside this layer).
    Failed(ErrorKind),
}

/// Receives the timing and outcome of every attempt: plug in Prometheus, StatsD, ...
pub trait MetricsHook: Send + Sync + 'static {
    /// An attempt starts.
    fn started(&self, _task: &TaskMessage) {}
    /// An attempt ended after `elapsed`.
    fn finished(&self, task: &TaskMessage, elapsed: Duration, outcome: Outcome);
}

/// A layer that reports every attempt to a [`MetricsHook`].
pub struct Metrics<H> {
    hook: Arc<H>,
}

impl<H: MetricsHook> Metrics<H> {
    /// A layer reporting to `hook`.
    pub fn new(hook: H) -> Self {
        Metrics { hook: Arc::new(hook) }
    }
}

impl<H: MetricsHook> Layer for Metrics<H> {
    fn layer(&self, inner: Arc<dyn Handler>) -> Arc<dyn Handler> {
        let hook = self.hook.clone();
        Arc::new(move |req: Request| {
            let hook = hook.clone();
            let task = req.task.clone();
            hook.started(&task);
            let fut = inner.call(req);
            async move {
                let start = Instant::now();
                let out: TaskResult = fut.await;
                let outcome = match &out {
                    Ok(_) => Outcome::Succeeded,
                    Err(e) => Outcome::Failed(e.kind()),
                };
                hook.finished(&task, start.elapsed(), outcome);
                out
            }
        })
    }
}
