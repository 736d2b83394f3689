//! What a worker does when a workflow task succeeds or fails for good.

use serde_json::value::RawValue;

use super::plan::{collect, frame_errors, next_step, plan, Entry, Frame, Meta, Scope, Slot, WORKFLOW_TTL};
use super::{Canvas, Failure, Signature};
use crate::backend::{LockResult, StateUpdate};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::task::{TaskId, TaskMessage};

/// Launches what follows `task`'s success. Called before the task is acked: if it fails, the
/// task runs again, and launches already made are skipped (see [`launch`]).
pub(crate) async fn on_success(client: &Client, task: &TaskMessage, result: &RawValue) -> Result<()> {
    let Some(meta) = Meta::parse(task) else { return Ok(()) };
    for cb in &meta.callbacks {
        launch(client, cb, Scope { input: Some(result.to_owned()), ..Scope::default() }, Some(&task.id)).await?;
    }
    let by = &task.id;
    continue_after(client, by, result.to_owned(), meta.frames, meta.report, meta.base_errors, meta.result_id).await
}

/// Runs the next step of the enclosing chains, or, when none is left, reports to the group.
async fn continue_after(
    client: &Client,
    by: &TaskId,
    result: Box<RawValue>,
    frames: Vec<Frame>,
    report: Option<Slot>,
    base_errors: Vec<Signature>,
    result_id: Option<TaskId>,
) -> Result<()> {
    if let Some((next, frames)) = next_step(frames) {
        let scope = Scope { input: Some(result), frames, report, base_errors, result_id };
        return launch(client, &next, scope, Some(by)).await;
    }
    let Some(mut slot) = report else { return Ok(()) };
    let mut value = result;
    let backend = client.backend();
    loop {
        let count = backend.group_add(&slot.group, slot.index, &encode(&Entry::Ok(value))?, WORKFLOW_TTL).await?;
        if count < slot.size {
            return Ok(());
        }
        let members = backend.group_members(&slot.group).await?;
        let Ok(Some(results)) = collect(&members, slot.size) else {
            return Ok(()); // a member failed (its error callbacks fired), or entries are missing
        };
        let after = *slot.after;
        if let Some(body) = after.body {
            // The chord's error callbacks cover its body, and only it.
            let mut frames = after.frames;
            frames.push(Frame { steps: Vec::new(), on_error: after.group_errors });
            let scope =
                Scope { input: Some(results), frames, report: after.report, base_errors: after.base_errors, result_id };
            return launch(client, &body, scope, Some(by)).await;
        }
        if let Some((next, frames)) = next_step(after.frames) {
            let scope =
                Scope { input: Some(results), frames, report: after.report, base_errors: after.base_errors, result_id };
            return launch(client, &next, scope, Some(by)).await;
        }
        match after.report {
            // This group is a member of another: report the array of results to it.
            Some(outer) => {
                slot = outer;
                value = results;
            }
            None => return Ok(()),
        }
    }
}

/// Marks the groups of a task that failed for good, fires the error callbacks in scope, and
/// marks the workflow's result as failed.
pub(crate) async fn on_archived(client: &Client, task: &TaskMessage, error: &str) -> Result<()> {
    let Some(meta) = Meta::parse(task) else { return Ok(()) };
    let failure = Failure { task_id: task.id.clone(), task_name: task.name.clone(), error: error.to_owned() };
    let input =
        serde_json::value::to_raw_value(&failure).map_err(|source| Error::Encode { what: "failure", source })?;
    // Group entries first: they decide that no chord body runs, even if a callback fails below.
    let mut callbacks: Vec<&Signature> = meta.errors_in_scope().collect();
    let mut slot = meta.report.as_ref();
    while let Some(s) = slot {
        client.backend().group_add(&s.group, s.index, &encode(&Entry::Err(error.to_owned()))?, WORKFLOW_TTL).await?;
        callbacks.extend(&s.after.group_errors);
        callbacks.extend(frame_errors(&s.after.frames));
        slot = s.after.report.as_ref();
    }
    if let Some(id) = meta.result_id.as_ref().filter(|id| **id != task.id) {
        mark_failed(client, id, task, error).await?;
    }
    for sig in callbacks {
        let scope = Scope { input: Some(input.clone()), ..Scope::default() };
        launch(client, &Canvas::Task(sig.clone()), scope, Some(&task.id)).await?;
    }
    Ok(())
}

/// Records the workflow's result task as archived, unless it already finished.
async fn mark_failed(client: &Client, result_id: &TaskId, failed: &TaskMessage, error: &str) -> Result<()> {
    if client.get(result_id).await?.is_some_and(|r| r.state.is_terminal()) {
        return Ok(());
    }
    let mut stand_in = TaskMessage::new(format!("workflow of {}", failed.name), failed.args.clone());
    stand_in.id = result_id.clone();
    stand_in.queue = failed.queue.clone();
    let why = format!("workflow step `{}` ({}) failed: {error}", failed.name, failed.id);
    client.backend().update(&stand_in, StateUpdate::archived(0, why, WORKFLOW_TTL)).await
}

/// Enqueues the first tasks of `canvas`; all are checked before any is published.
///
/// `by` is the workflow task that launches them (`None`: a client enqueueing a workflow, which
/// the task ids alone make idempotent). A task `by` launches is claimed first, for `by` (a
/// `launching:` lock kept for [`WORKFLOW_TTL`]), and marked launched (`launched:`) only once
/// the broker holds it:
/// - a launch cut short (a failed publish, a worker that died half-way) is made again when
///   `by` runs again, as its claim is its own;
/// - a task launched before is skipped by its marker (even after it ran and its record is
///   gone), or else by its deterministic task id (the enqueue answers that it is queued);
/// - a task another member of the workflow claimed (two failing members launching the same
///   error callback) is left to that member, whose own retries finish the launch.
pub(crate) async fn launch(client: &Client, canvas: &Canvas, scope: Scope, by: Option<&TaskId>) -> Result<()> {
    let mut msgs = Vec::new();
    plan(canvas, scope, &mut msgs)?;
    for m in &msgs {
        client.check(m)?;
    }
    let backend = client.backend();
    for mut m in msgs {
        if let Some(by) = by {
            m.headers.insert(super::PARENT_HEADER.to_owned(), by.to_string());
        }
        let launched = format!("launched:{}", m.id);
        if let Some(by) = by {
            if backend.incr(&launched, 0, Some(WORKFLOW_TTL)).await? > 0 {
                continue;
            }
            let claim = format!("launching:{}", m.id);
            if let LockResult::Held { .. } = backend.try_lock(&claim, by.as_str(), LAUNCH_CLAIM).await? {
                continue;
            }
        }
        let id = m.id.clone();
        match client.enqueue_message(m).await {
            Ok(_) | Err(Error::DuplicateTask { .. }) => {}
            Err(e) => {
                // Free for another member to launch (an archived member may never run again);
                // if this fails too, the claim lapses after LAUNCH_CLAIM.
                if let Some(by) = by {
                    let _ = backend.unlock(&format!("launching:{id}"), by.as_str()).await;
                }
                return Err(e);
            }
        }
        if by.is_some() {
            backend.incr(&launched, 1, Some(WORKFLOW_TTL)).await?;
        }
    }
    Ok(())
}

/// How long a launch claim holds when its holder neither finishes nor frees it (it died):
/// then another member of the workflow, or the holder run again, launches the task.
const LAUNCH_CLAIM: std::time::Duration = std::time::Duration::from_secs(600);

fn encode(e: &Entry) -> Result<Box<RawValue>> {
    serde_json::value::to_raw_value(e).map_err(|source| Error::Encode { what: "group entry", source })
}
