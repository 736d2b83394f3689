//! What a worker does when a workflow task succeeds or fails for good.

use std::time::Duration;

use serde_json::value::RawValue;

use super::plan::{collect, plan, Entry, Meta, Scope, Slot};
use super::{Canvas, Failure, Signature};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::task::TaskMessage;

/// Launches what follows `task`'s success. Called before the task is acked: if it fails, the
/// task is redelivered and this runs again (duplicate launches are refused by task id).
pub(crate) async fn on_success(client: &Client, ttl: Duration, task: &TaskMessage, result: &RawValue) -> Result<()> {
    let Some(meta) = Meta::parse(task) else { return Ok(()) };
    for cb in &meta.callbacks {
        launch(client, cb, Scope { input: Some(result.to_owned()), ..Scope::default() }).await?;
    }
    if let Some(then) = meta.then {
        let scope =
            Scope { input: Some(result.to_owned()), then: None, report: meta.report, scope_errors: meta.scope_errors };
        return launch(client, &then, scope).await;
    }
    match meta.report {
        Some(slot) => report(client, ttl, slot, result.to_owned()).await,
        None => Ok(()),
    }
}

/// Records a group member's result; the member that completes the group runs what follows.
async fn report(client: &Client, ttl: Duration, mut slot: Slot, mut value: Box<RawValue>) -> Result<()> {
    let backend = client.backend();
    loop {
        let entry = encode(&Entry::Ok(value))?;
        let count = backend.group_add(&slot.group, slot.index, &entry, ttl).await?;
        if count < slot.size {
            return Ok(());
        }
        let members = backend.group_members(&slot.group).await?;
        let Ok(results) = collect(&members) else {
            return Ok(()); // a member failed: its error callbacks already fired
        };
        let after = *slot.after;
        if let Some(body) = after.body {
            let scope = Scope {
                input: Some(results),
                then: after.then,
                report: after.report,
                scope_errors: after.scope_errors,
            };
            return launch(client, &body, scope).await;
        }
        if let Some(then) = after.then {
            let scope =
                Scope { input: Some(results), then: None, report: after.report, scope_errors: after.scope_errors };
            return launch(client, &then, scope).await;
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

/// Fires the error callbacks in scope of a task that failed for good, and marks its groups failed.
pub(crate) async fn on_archived(client: &Client, ttl: Duration, task: &TaskMessage, error: &str) -> Result<()> {
    let Some(meta) = Meta::parse(task) else { return Ok(()) };
    let failure = Failure { task_id: task.id.clone(), task_name: task.name.clone(), error: error.to_owned() };
    let input =
        serde_json::value::to_raw_value(&failure).map_err(|source| Error::Encode { what: "failure", source })?;
    fire(client, meta.own_errors.iter().chain(&meta.scope_errors), &input).await?;
    let mut slot = meta.report;
    while let Some(s) = slot {
        let entry = encode(&Entry::Err(error.to_owned()))?;
        client.backend().group_add(&s.group, s.index, &entry, ttl).await?;
        fire(client, s.after.group_errors.iter().chain(&s.after.scope_errors), &input).await?;
        slot = s.after.report;
    }
    Ok(())
}

async fn fire(client: &Client, callbacks: impl Iterator<Item = &Signature>, input: &RawValue) -> Result<()> {
    for sig in callbacks {
        launch(client, &Canvas::Task(sig.clone()), Scope { input: Some(input.to_owned()), ..Scope::default() }).await?;
    }
    Ok(())
}

/// Enqueues the first tasks of `canvas`; a task already enqueued (same id) is left alone.
pub(crate) async fn launch(client: &Client, canvas: &Canvas, scope: Scope) -> Result<()> {
    let mut msgs = Vec::new();
    plan(canvas, scope, &mut msgs)?;
    for m in msgs {
        match client.enqueue_message(m).await {
            Ok(_) | Err(Error::DuplicateTask { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn encode(e: &Entry) -> Result<Box<RawValue>> {
    serde_json::value::to_raw_value(e).map_err(|source| Error::Encode { what: "group entry", source })
}
