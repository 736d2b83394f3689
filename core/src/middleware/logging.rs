use std::sync::Arc;

use tokio::time::Instant;

use super::Layer;
use crate::handler::{BoxFuture, Handler, Request, TaskResult};

/// Emits a `tracing` event per attempt: `debug` when it starts, `info` when it succeeds,
/// `warn` when it fails, with the task's id, name, queue, attempt and duration.
#[derive(Debug, Clone, Copy, Default)]
pub struct Logging;

impl Layer for Logging {
    fn layer(&self, inner: Arc<dyn Handler>) -> Arc<dyn Handler> {
        Arc::new(LoggingHandler(inner))
    }
}

struct LoggingHandler(Arc<dyn Handler>);

impl Handler for LoggingHandler {
    fn call(&self, req: Request) -> BoxFuture<TaskResult> {
        let task = req.task.clone();
        let fut = self.0.call(req);
        Box::pin(async move {
            let start = Instant::now();
            tracing::debug!(task.id = %task.id, task.name = %task.name, queue = %task.queue, attempt = task.retried + 1, "task started");
            let out = fut.await;
            let ms = start.elapsed().as_secs_f64() * 1e3;
            match &out {
                Ok(_) => {
                    tracing::info!(task.id = %task.id, task.name = %task.name, queue = %task.queue, attempt = task.retried + 1, elapsed_ms = %format_args!("{ms:.3}"), "task succeeded")
                }
                Err(e) => {
                    tracing::warn!(task.id = %task.id, task.name = %task.name, queue = %task.queue, attempt = task.retried + 1, elapsed_ms = %format_args!("{ms:.3}"), kind = ?e.kind(), error = %e, "task failed")
                }
            }
            out
        })
    }
}
