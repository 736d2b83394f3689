//! Running one delivery and recording its outcome.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};

use super::inflight::{LeaseWatch, Leased};
use super::shared::{Ctx, Shared};
use super::UnknownTask;
use crate::backend::StateUpdate;
use crate::broker::{Delivery, Payload};
use crate::error::Result;
use crate::handler::{ErrorKind, Handler, Request, TaskError, TaskResult};
use crate::task::{TaskMessage, TaskState, UniqueRelease};
use crate::workflow;

/// Waits for a handler slot, then runs the delivery; a delivery still waiting when the worker
/// stops is handed back at once. `owned` (the delivery's place among those the worker holds) is
/// given up once the handler returned.
///
/// This is the future spawned per delivery, so its size is memory and copying per task: it
/// owns its arguments (an `async move` block around it would hold them twice) and lends the
/// delivery on by reference.
pub(crate) async fn run_delivery(ctx: Arc<Ctx>, running: Arc<Semaphore>, d: Delivery, owned: OwnedSemaphorePermit) {
    let s = &*ctx.shared;
    // The lease is renewed from now until the delivery is settled (acked, retried, archived,
    // released), also while it waits for a handler slot.
    let lease = Leased::new(&s.inflight, d.receipt.clone(), d.task().cloned());
    let slot = tokio::select! {
        biased;
        p = running.acquire() => match p { Ok(p) => Some(p), Err(_) => return },
        _ = ctx.stop.cancelled() => None,
        // Lost while it waited (the broker was out of reach for a whole lease): it is another
        // receiver's now.
        _ = lease.watch.lost.cancelled() => return,
    };
    // A slot freed as the shutdown began (a handler that returned on the shutdown signal) may
    // be handed straight to this waiting delivery: it is handed back all the same, not started.
    match slot {
        Some(slot) if !ctx.stop.is_cancelled() => {
            process(&ctx, &d, &lease.watch, Held { _slot: slot, _owned: owned }).await
        }
        _ => {
            drop(slot);
            Box::pin(settle(|| s.broker.release(&d), "hand back of a prefetched task")).await
        }
    }
}

/// The permits a delivery holds while it runs: its handler slot, and its place among the
/// deliveries the worker holds.
struct Held<'a> {
    _slot: SemaphorePermit<'a>,
    _owned: OwnedSemaphorePermit,
}

impl Held<'_> {
    /// Once the handler returned, its slot goes to the next task, and the place to the next
    /// delivery, while the outcome is recorded and settled with the broker (a round trip or
    /// two): under a bound of its own, `settling`. The worker's shutdown waits for it.
    async fn settling(self, settling: &Semaphore) -> Option<SemaphorePermit<'_>> {
        settling.acquire().await.ok()
    }
}

/// The paths a task rarely takes (archive, retry, hand back, a workflow's next step) are boxed:
/// inline, they made every delivery's spawned future several times larger, memory held and
/// copied per task even though the ack path is the one nearly every task takes.
async fn process(ctx: &Ctx, d: &Delivery, watch: &LeaseWatch, held: Held<'_>) {
    let s = &*ctx.shared;
    // Received long ago (it waited for a slot while the broker was out of reach): check first.
    if !Box::pin(holds_lease(s, d, watch)).await {
        return;
    }
    // A redelivery's record tells whether the task completed meanwhile, and whether the runs
    // whose leases were lost had started; a copy's, whether another delivery settled its
    // attempt already (see `Delivery::copy`).
    let (task, mut seen) = match &d.payload {
        Payload::Task(t) => {
            let record = match d.redelivered || d.copy {
                true => s.backend.get(&t.id).await.ok().flatten(),
                false => None,
            };
            (with_lost_leases(t, counted_losses(t, d.lost_leases, record.as_ref())), record)
        }
        Payload::Undecodable { error, .. } => {
            let reason = match error.starts_with("payload too large") {
                true => error.clone(),
                false => format!("undecodable payload: {error}"),
            };
            tracing::error!(queue = %d.queue, %reason, "archiving message");
            return settle(|| s.broker.archive(d, &reason), "archive").await;
        }
    };

    // A delivery seen before (a lost lease, a late or lost ack, a hand-back) whose task has
    // completed meanwhile is a duplicate: acked, not run again. Only redeliveries pay for the
    // look-up; a task whose result is not kept (retention 0) cannot be told apart and runs.
    let exhausted = task.retried > task.max_retry;
    if exhausted && seen.is_none() {
        seen = s.backend.get(&task.id).await.ok().flatten();
    }
    if seen.as_ref().is_some_and(|r| r.state == TaskState::Completed) {
        tracing::info!(task.id = %task.id, queue = %d.queue, "acking a duplicate delivery of a completed task");
        return settle(|| s.broker.ack(d), "ack of a finished task").await;
    }
    if d.copy && seen.as_ref().is_some_and(|r| settled(r, task.retried)) {
        tracing::info!(task.id = %task.id, queue = %d.queue, attempt = task.retried,
            "acking a copy whose attempt another delivery settled (its original ran again after a crash)");
        return settle(|| s.broker.ack(d), "ack of a settled copy").await;
    }
    // Lost leases (workers that died running it) used up its attempts.
    if exhausted {
        let reason = task.last_error.clone().unwrap_or_else(|| "retries exhausted".into());
        return Box::pin(archive(s, d, &task, reason, None)).await;
    }
    let now = SystemTime::now();
    if task.deadline.is_some_and(|dl| dl <= now) {
        return Box::pin(archive(s, d, &task, "deadline exceeded before the task started".into(), None)).await;
    }
    let Some(handler) = s.handlers.get(&task.name) else {
        let reason = format!("no handler registered for task `{}`", task.name);
        return match s.config.unknown_task {
            UnknownTask::Archive => Box::pin(archive(s, d, &task, reason, None)).await,
            UnknownTask::Requeue(delay) => {
                tracing::warn!(task.id = %task.id, %reason, ?delay, "requeueing unknown task");
                Box::pin(settle(|| s.broker.retry(d, &task, delay), "requeue")).await;
            }
        };
    };

    // Boxed, so that the handler's timers and selects take no room in the rest of the future.
    // After a lost lease, the run is recorded `active` before the handler starts, so that if
    // it takes its worker down at once, the next delivery knows it had started.
    let active_first = d.lost_leases > 0;
    s.inflight.started(watch);
    let started = Some(SystemTime::now());
    let out = match Box::pin(run_handler(ctx, &task, handler.as_ref(), active_first, watch)).await {
        Ran::Done(r) => Some(r),
        Ran::Interrupted => None,
        // Archived (not retried), with why; its workflow's error callbacks fire.
        Ran::Cancelled => Some(Err(TaskError::skip_retry(crate::inspect::OPERATOR_CANCELLED))),
        Ran::LeaseLost => {
            tracing::warn!(task.id = %task.id, queue = %d.queue, "lease lost while the task ran: stopped it; \
                its outcome is another delivery's to record");
            return;
        }
    };
    let _settling = held.settling(&ctx.settling).await;
    // The handler may have returned after the lease was lost without the heartbeat seeing it
    // (this process was frozen, or its thread blocked): then this run's outcome is not
    // recorded at all (no state, result, workflow step, callback or unique lock release).
    if !Box::pin(holds_lease(s, d, watch)).await {
        return;
    }

    match &out {
        Some(Ok(_)) => s.count(&d.queue, false),
        Some(Err(e)) if e.kind() != ErrorKind::Interrupted => s.count(&d.queue, true),
        _ => {}
    }
    match out {
        None => Box::pin(hand_back(s, d, &task)).await,
        Some(Ok(result)) => {
            if task.workflow.is_some() {
                // Launched before the ack: a crash here redelivers the task, and the relaunch
                // is refused by task id, so the next step runs once.
                if let Err(e) = Box::pin(workflow::on_success(&s.client, &task, &result)).await {
                    let msg = format!("could not launch the workflow's next step: {e}");
                    // Bad input cannot get better by retrying; a broker outage can.
                    let e = if e.is_transient() { TaskError::msg(msg) } else { TaskError::skip_retry(msg) };
                    return Box::pin(fail(s, d, &task, e, started)).await;
                }
            }
            // The heartbeat may have found the lease lost while the next steps launched.
            if watch.lost.is_cancelled() {
                return;
            }
            // The lock goes first: whoever sees the task completed can enqueue it again.
            release_unique(s, &task, true).await;
            let retain = task.retention.unwrap_or(s.config.retention);
            let ran = s.ran(&task, started, TaskState::Completed, None);
            let completed = || StateUpdate::completed(task.retried, result.clone(), retain).after(ran.clone());
            record(|| s.backend.update(&task, completed()), "record result").await;
            settle(|| s.broker.ack(d), "ack").await;
        }
        Some(Err(e)) if e.kind() == ErrorKind::Interrupted => Box::pin(hand_back(s, d, &task)).await,
        Some(Err(e)) => Box::pin(fail(s, d, &task, e, started)).await,
    }
}

/// How a handler's run ended.
enum Ran {
    /// It returned.
    Done(TaskResult),
    /// A hard stop interrupted it.
    Interrupted,
    /// Its lease was lost: it was dropped where it stood.
    LeaseLost,
    /// An operator cancelled it: it was dropped where it stood.
    Cancelled,
}

/// Runs the handler until it returns, a hard stop, or `lost`. A task still running after
/// ACTIVE_AFTER is recorded `active`, while it goes on; the record is written before the
/// outcome's, so the states stay in order. One that finishes sooner goes from `pending` to its
/// outcome directly: a backend write per task saved where tasks are many and short, and nothing
/// anyone could have watched.
async fn run_handler(
    ctx: &Ctx,
    task: &Arc<TaskMessage>,
    handler: &dyn Handler,
    active_first: bool,
    watch: &LeaseWatch,
) -> Ran {
    if active_first {
        log_err(
            ctx.shared.backend.update(task, StateUpdate::to(TaskState::Active, task.retried)).await,
            "record active state",
        );
    }
    // The handler chain is wrapped in CatchPanic outermost and innermost, and the attempt's
    // time limit innermost, so that middleware sees a timeout as a failed attempt (see
    // WorkerBuilder::build).
    let data = ctx.shared.data.clone();
    let fut = handler.call(Request { task: task.clone(), shutdown: ctx.shutdown.clone(), data });
    let run = async {
        tokio::select! {
            biased;
            r = fut => Ran::Done(r),
            _ = ctx.hard.cancelled() => Ran::Interrupted,
            _ = watch.lost.cancelled() => Ran::LeaseLost,
            _ = watch.cancel.cancelled() => Ran::Cancelled,
        }
    };
    tokio::pin!(run);
    let early = tokio::select! {
        biased;
        out = &mut run => Some(out),
        _ = tokio::time::sleep(ACTIVE_AFTER) => None,
    };
    match early {
        Some(out) => out,
        None if active_first => run.await,
        None => {
            let active = ctx.shared.backend.update(task, StateUpdate::to(TaskState::Active, task.retried));
            let (recorded, out) = tokio::join!(active, &mut run);
            log_err(recorded, "record active state");
            out
        }
    }
}

/// True if this worker still holds the delivery's lease, so that it may run it and write its
/// outcome; false if the lease is lost (or cannot be checked), and then the caller writes
/// nothing: the broker delivers the task again (or has already), and that delivery's outcome
/// is the one recorded.
///
/// The heartbeat confirms every lease each lease / 3, so a confirmation younger than half a
/// lease needs no round trip (the ack path of nearly every task). An older one means this
/// process was frozen, its thread blocked, or the broker out of reach: the broker is asked.
async fn holds_lease(s: &Shared, d: &Delivery, watch: &LeaseWatch) -> bool {
    if watch.lost.is_cancelled() {
        return false;
    }
    let lease = s.config.lease;
    if s.inflight.since_confirmed(watch) < lease / 2 {
        return true;
    }
    let sent = tokio::time::Instant::now();
    let receipt = [d.receipt.clone()];
    match with_retries(|| s.broker.extend_leases(&receipt, lease), "lease check").await {
        Ok(lost) if lost.is_empty() => {
            s.inflight.confirm(watch, sent);
            true
        }
        Ok(_) => {
            watch.lost.cancel();
            tracing::warn!(queue = %d.queue, "lease lost (this worker was frozen or out of reach for a whole lease): \
                this run's outcome is not recorded; the task runs again on the delivery that replaced it");
            false
        }
        Err(e) => {
            tracing::error!(queue = %d.queue, error = %e, "could not check a lease that was not confirmed for half \
                its length: this run's outcome is not recorded; the task returns when its lease expires");
            false
        }
    }
}

/// How long a task runs before its `active` state is recorded.
pub(crate) const ACTIVE_AFTER: Duration = Duration::from_millis(10);

/// How many of a delivery's `lost` leases count as failed attempts: those of runs that had
/// started. A record still waiting for this attempt (`pending`, `scheduled`, `retry`) shows
/// that no handler had started it: its worker died while the task was only prefetched, or
/// waiting for a slot, and that costs no attempt. An `active` record, or none (retention 0, a
/// backend that lost it), counts them all: a task that kills its worker must not loop forever.
/// (A run that took its worker down before it was recorded `active`, within its first
/// milliseconds, is recorded before it starts on the next delivery, so it costs one extra
/// run at most.)
fn counted_losses(task: &TaskMessage, lost: u32, record: Option<&crate::backend::TaskRecord>) -> u32 {
    match record {
        Some(r)
            if matches!(r.state, TaskState::Pending | TaskState::Scheduled | TaskState::Retry)
                && r.attempt() <= task.retried =>
        {
            0
        }
        _ => lost,
    }
}

/// Whether `record` shows attempt `attempt` settled by some delivery: the task completed, or
/// this attempt (or a later one) was retried or archived. Whoever settled it carries the task
/// on (its own message stays until the retry or archive is published), so a copy of this
/// attempt is a duplicate. An `active` or `pending` record of a later attempt is not proof:
/// an attempt counted from lost leases can be handed back (see [`hand_back`]).
fn settled(record: &crate::backend::TaskRecord, attempt: u32) -> bool {
    record.state == TaskState::Completed
        || (record.attempt() >= attempt && matches!(record.state, TaskState::Retry | TaskState::Archived))
}

/// The task as it stands after `lost` expired leases: each counts as a failed attempt.
fn with_lost_leases(task: &Arc<TaskMessage>, lost: u32) -> Arc<TaskMessage> {
    if lost == 0 {
        return task.clone();
    }
    let mut t = TaskMessage::clone(task);
    t.retried = t.retried.saturating_add(lost);
    t.last_error = Some(format!(
        "lease expired {lost} time(s): the worker running the task stopped responding (crashed or was killed)"
    ));
    Arc::new(t)
}

/// Gives the delivery back, ready at once, without using an attempt. A task whose lost leases
/// were counted goes back as counted (a new envelope, published at once): a broker that hands
/// back the original message (RabbitMQ, SQS) would forget them, and the next run's writes,
/// of an earlier attempt than its record's, would be fenced off.
async fn hand_back(s: &Shared, d: &Delivery, task: &TaskMessage) {
    tracing::info!(task.id = %task.id, "handing unfinished task back");
    record(|| s.backend.update(task, StateUpdate::to(TaskState::Pending, task.retried)), "record state").await;
    match d.task() {
        Some(original) if original.retried != task.retried => {
            settle(|| s.broker.retry(d, task, Duration::ZERO), "hand back").await
        }
        _ => settle(|| s.broker.release(d), "release").await,
    }
}

/// `started`: when the failed attempt's handler started (none if it never did).
async fn fail(s: &Shared, d: &Delivery, task: &Arc<TaskMessage>, e: TaskError, started: Option<SystemTime>) {
    if !e.is_retryable() || task.retries_exhausted() {
        let reason = if e.is_retryable() {
            format!("{} (retries exhausted: {} of {})", e.message(), task.retried, task.max_retry)
        } else {
            e.message().to_owned()
        };
        return archive(s, d, task, reason, started).await;
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
    let ran = s.ran(task, started, TaskState::Retry, Some(e.message()));
    let update = || StateUpdate::retry(retry, e.message().to_owned()).after(ran.clone());
    record(|| s.backend.update(&next, update()), "record retry").await;
    settle(|| s.broker.retry(d, &next, delay), "retry").await;
}

async fn archive(s: &Shared, d: &Delivery, task: &TaskMessage, reason: String, started: Option<SystemTime>) {
    tracing::warn!(task.id = %task.id, task.name = %task.name, queue = %task.queue, %reason, "archiving task");
    if task.workflow.is_some() {
        if let Err(e) = workflow::on_archived(&s.client, task, &reason).await {
            tracing::error!(task.id = %task.id, error = %e, "could not fire the workflow's error callbacks");
        }
    }
    release_unique(s, task, false).await;
    let retain = task.retention.unwrap_or(s.config.retention).max(s.config.retention);
    let ran = s.ran(task, started, TaskState::Archived, Some(&reason));
    let update = || StateUpdate::archived(task.retried, reason.clone(), retain).after(ran.clone());
    record(|| s.backend.update(task, update()), "record archive").await;
    settle(|| s.broker.archive(d, &reason), "archive").await;
}

/// How long a broker or backend call that settles a task is tried again on transient errors:
/// long enough to ride out a Redis restart or failover, or a connection that fails its first
/// command after dropping (seconds); bounded, so that a shutdown still ends.
const RETRY_FOR: Duration = Duration::from_secs(10);

/// Runs `call` until it succeeds or fails for good; transient errors (the broker or backend
/// unreachable) are tried again, 50 ms apart and then twice as long each time up to 2 s, for
/// up to [`RETRY_FOR`]. The delivery's lease is renewed meanwhile.
async fn with_retries<'a, T, F, Fut>(call: F, what: &str) -> Result<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T>> + 'a,
{
    let start = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        match call().await {
            Err(e) if e.is_transient() && start.elapsed() + pause < RETRY_FOR => {
                tracing::warn!(error = %e, "{what} failed; trying again in {pause:?}");
                // Boxed: the timer is rare, and inline it would take room in every task's future.
                Box::pin(tokio::time::sleep(pause)).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            r => return r,
        }
    }
}

/// Runs a broker call that settles a delivery (see [`with_retries`]). If it still fails, the
/// lease expires and the broker delivers the task again, so nothing is lost; the error is
/// logged.
async fn settle<'a, F, Fut>(call: F, what: &str)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<()>> + 'a,
{
    match with_retries(call, what).await {
        Ok(()) => {}
        Err(e) if e.is_lease_lost() => {
            tracing::warn!(error = %e, "{what}: the lease was lost; the broker has delivered the task again");
        }
        Err(e) => tracing::error!(error = %e, "{what} failed; the task returns when its lease expires"),
    }
}

/// Records a task's state in the result backend (see [`with_retries`]); a write that still
/// fails is logged, and the task is settled all the same.
async fn record<'a, F, Fut>(call: F, what: &str)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<()>> + 'a,
{
    log_err(with_retries(call, what).await, what);
}

/// Releases a unique task's lock as its policy says, once it completed (`succeeded`) or was archived.
async fn release_unique(s: &Shared, task: &TaskMessage, succeeded: bool) {
    let Some(key) = &task.unique_key else { return };
    let release = match task.unique_release {
        UniqueRelease::OnSuccess => succeeded,
        UniqueRelease::OnCompletion => true,
        UniqueRelease::OnExpiry => false,
    };
    if release {
        if let Err(e) = s.backend.unlock(&crate::client::unique_lock_name(key), task.id.as_str()).await {
            tracing::warn!(task.id = %task.id, error = %e, "could not release the unique lock; it expires with its TTL");
        }
    }
}

fn log_err(r: Result<()>, what: &str) {
    if let Err(e) = r {
        tracing::error!(error = %e, "{what} failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TaskRecord;

    fn record(state: TaskState, retried: u32) -> TaskRecord {
        let mut r = TaskRecord::enqueued(&TaskMessage::with_args("t", &()).unwrap());
        (r.state, r.retried) = (state, retried);
        r
    }

    #[test]
    fn a_copy_is_settled_only_by_a_settled_or_later_attempt() {
        // Attempt 1's copy (retried 1).
        assert!(!settled(&record(TaskState::Retry, 1), 1), "attempt 0 retried: attempt 1 is to run");
        assert!(!settled(&record(TaskState::Active, 1), 1), "attempt 1 running elsewhere, or its worker died");
        assert!(!settled(&record(TaskState::Pending, 1), 1), "attempt 1 handed back");
        assert!(settled(&record(TaskState::Retry, 2), 1), "attempt 1 failed and was retried");
        assert!(settled(&record(TaskState::Retry, 3), 1), "a later attempt was retried");
        assert!(settled(&record(TaskState::Archived, 1), 1), "attempt 1 archived");
        assert!(settled(&record(TaskState::Completed, 0), 1), "completed");
        // A later attempt counted from lost leases may be handed back: its copy carries the
        // original's count, so an active or pending record of a later attempt is no proof.
        assert!(!settled(&record(TaskState::Active, 2), 1), "attempt 2 running, or handed back");
        assert!(!settled(&record(TaskState::Pending, 2), 0), "a counted attempt handed back");
        assert!(!settled(&record(TaskState::Archived, 0), 1), "an older attempt's archive (a stale write)");
    }
}
