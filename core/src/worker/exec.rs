//! Running one delivery and recording its outcome.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::run::{Ctx, Shared};
use super::UnknownTask;
use crate::backend::StateUpdate;
use crate::broker::{Delivery, Payload};
use crate::handler::{ErrorKind, Request, TaskError, TaskResult};
use crate::middleware::panic::CatchUnwind;
use crate::task::{TaskMessage, TaskState};

pub(crate) async fn process(ctx: &Ctx, d: Delivery) {
    let s = &*ctx.shared;
    let task = match &d.payload {
        Payload::Task(t) => t.clone(),
        Payload::Undecodable { error, .. } => {
            let reason = format!("undecodable payload: {error}");
            tracing::error!(queue = %d.queue, %reason, "archiving message");
            if let Err(e) = s.broker.archive(&d, &reason).await {
                tracing::error!(error = %e, "archive failed; the message returns after its lease");
            }
            return;
        }
    };

    // The broker redelivered it after lost leases more often than it may run.
    if task.retried > task.max_retry {
        let reason = task.last_error.clone().unwrap_or_else(|| "retries exhausted".into());
        return archive(s, &d, &task, reason).await;
    }
    let now = SystemTime::now();
    if task.deadline.is_some_and(|dl| dl <= now) {
        return archive(s, &d, &task, "deadline exceeded before the task started".into()).await;
    }
    let Some(handler) = s.handlers.get(&task.name) else {
        let reason = format!("no handler registered for task `{}`", task.name);
        return match s.config.unknown_task {
            UnknownTask::Archive => archive(s, &d, &task, reason).await,
            UnknownTask::Requeue(delay) => {
                tracing::warn!(task.id = %task.id, %reason, ?delay, "requeueing unknown task");
                log_err(s.broker.retry(&d, &task, delay).await, "requeue");
            }
        };
    };

    log_err(s.backend.update(&task, StateUpdate::to(TaskState::Active, task.retried)).await, "record active state");
    let limit = attempt_limit(&task, now);
    let key = s.inflight.insert(d.receipt.clone());
    let fut = CatchUnwind(handler.call(Request { task: task.clone(), shutdown: ctx.shutdown.clone() }));
    let out: Option<TaskResult> = tokio::select! {
        biased;
        r = run_limited(fut, limit) => Some(r),
        _ = ctx.hard.cancelled() => None,
    };
    s.inflight.remove(key);

    match out {
        None => {
            tracing::info!(task.id = %task.id, "handing unfinished task back");
            log_err(s.backend.update(&task, StateUpdate::to(TaskState::Pending, task.retried)).await, "record state");
            log_err(s.broker.release(&d).await, "release");
        }
        Some(Ok(result)) => {
            let retain = task.retention.unwrap_or(s.config.retention);
            log_err(
                s.backend.update(&task, StateUpdate::completed(task.retried, result, retain)).await,
                "record result",
            );
            log_err(s.broker.ack(&d).await, "ack");
        }
        Some(Err(e)) => fail(s, &d, &task, e).await,
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

async fn run_limited(fut: CatchUnwind, limit: Limit) -> TaskResult {
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

async fn fail(s: &Shared, d: &Delivery, task: &Arc<TaskMessage>, e: TaskError) {
    if !e.is_retryable() || task.retries_exhausted() {
        let reason = if e.is_retryable() {
            format!("{} (retries exhausted: {} of {})", e.message(), task.retried, task.max_retry)
        } else {
            e.message().to_owned()
        };
        return archive(s, d, task, reason).await;
    }
    let retry = task.retried + 1;
    let delay = match e.kind() {
        ErrorKind::RetryAfter(d) => d,
        _ => s.retry.delay(retry, &e, task),
    };
    let mut next = TaskMessage::clone(task);
    next.retried = retry;
    next.last_error = Some(e.message().to_owned());
    tracing::debug!(task.id = %task.id, retry, ?delay, error = %e, "scheduling retry");
    log_err(s.backend.update(&next, StateUpdate::retry(retry, e.message().to_owned())).await, "record retry");
    log_err(s.broker.retry(d, &next, delay).await, "retry");
}

async fn archive(s: &Shared, d: &Delivery, task: &TaskMessage, reason: String) {
    tracing::warn!(task.id = %task.id, task.name = %task.name, queue = %task.queue, %reason, "archiving task");
    let retain = task.retention.unwrap_or(s.config.retention).max(s.config.retention);
    log_err(
        s.backend.update(task, StateUpdate::archived(task.retried, reason.clone(), retain)).await,
        "record archive",
    );
    log_err(s.broker.archive(d, &reason).await, "archive");
}

fn log_err(r: crate::Result<()>, what: &str) {
    if let Err(e) = r {
        tracing::error!(error = %e, "{what} failed");
    }
}
