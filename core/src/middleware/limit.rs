//! The attempt's time limit, the innermost layer the worker installs: the task's timeout, or
//! its deadline if that comes first. Inside the middleware chain, so that middleware (logging,
//! metrics) sees a timed-out attempt as a failed one.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::Layer;
use crate::handler::{BoxFuture, ErrorKind, Handler, Request, TaskError, TaskResult};
use crate::task::TaskMessage;

/// Limits each attempt to its task's timeout or deadline.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AttemptLimit;

impl Layer for AttemptLimit {
    fn layer(&self, inner: Arc<dyn Handler>) -> Arc<dyn Handler> {
        Arc::new(Limited(inner))
    }
}

struct Limited(Arc<dyn Handler>);

impl Handler for Limited {
    fn call(&self, req: Request) -> BoxFuture<TaskResult> {
        let limit = attempt_limit(&req.task, SystemTime::now());
        let fut = self.0.call(req);
        match limit {
            Limit::None => fut,
            _ => Box::pin(run_limited(fut, limit)),
        }
    }
}

/// What limits one attempt: the timeout, or the deadline if it comes first.
enum Limit {
    None,
    Timeout(Duration),
    Deadline(Duration),
}

fn attempt_limit(task: &TaskMessage, now: SystemTime) -> Limit {
    let to_deadline = task.deadline.map(|dl| dl.duration_since(now).unwrap_or_default());
    match (task.timeout, to_deadline) {
        (Some(t), Some(d)) if d < t => Limit::Deadline(d),
        (Some(t), _) => Limit::Timeout(t),
        (None, Some(d)) => Limit::Deadline(d),
        (None, None) => Limit::None,
    }
}

/// Runs `fut` within `limit`; the caller boxes it (only attempts with a limit pay for the timer).
async fn run_limited(fut: impl Future<Output = TaskResult>, limit: Limit) -> TaskResult {
    match limit {
        Limit::None => fut.await,
        Limit::Timeout(t) => tokio::time::timeout(t, fut)
            .await
            .unwrap_or_else(|_| Err(TaskError::with_kind(ErrorKind::TimedOut, format!("timed out after {t:?}")))),
        Limit::Deadline(d) => tokio::time::timeout(d, fut).await.unwrap_or_else(|_| {
            Err(TaskError::with_kind(ErrorKind::DeadlineExceeded, "deadline exceeded while running"))
        }),
    }
}
