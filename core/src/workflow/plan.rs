//! Turning a canvas into task messages, each carrying its own continuation.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{Canvas, Signature};
use crate::error::{Error, Result};
use crate::task::{TaskId, TaskMessage, DEFAULT_QUEUE};

/// How long workflow bookkeeping (group results, launch markers) is kept: long enough for any
/// member to finish its retries.
pub(crate) const WORKFLOW_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// What travels in `TaskMessage::workflow`: what to do after this task.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Meta {
    /// The previous result, for `TaskContext::previous_result` (steps with their own arguments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) input: Option<Box<RawValue>>,
    /// The enclosing chains, innermost last: their remaining steps and error callbacks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) frames: Vec<Frame>,
    /// This task's own on-success callbacks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) callbacks: Vec<Canvas>,
    /// Where to report the result when no chain step follows (a group member).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) report: Option<Slot>,
    /// Error callbacks in scope from outside the frames.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) base_errors: Vec<Signature>,
    /// This task's own error callbacks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) own_errors: Vec<Signature>,
    /// The task whose record stands for the workflow's result (marked failed on a failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) result_id: Option<TaskId>,
}

/// One enclosing chain: the steps still to run, and its error callbacks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Frame {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) steps: Vec<Canvas>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) on_error: Vec<Signature>,
}

/// A member's place in a group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Slot {
    pub(crate) group: String,
    pub(crate) index: u32,
    pub(crate) size: u32,
    pub(crate) after: Box<After>,
}

/// What happens when a group completes (or a member fails).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct After {
    /// The chord body, run with the array of results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) body: Option<Canvas>,
    /// The chains enclosing the group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) frames: Vec<Frame>,
    /// The enclosing group's slot, when this group is a member of another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) report: Option<Slot>,
    /// Error callbacks in scope from outside the frames.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) base_errors: Vec<Signature>,
    /// The group's (or chord's) own error callbacks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) group_errors: Vec<Signature>,
}

/// What a part of a workflow is launched with.
#[derive(Default)]
pub(crate) struct Scope {
    pub(crate) input: Option<Box<RawValue>>,
    pub(crate) frames: Vec<Frame>,
    pub(crate) report: Option<Slot>,
    pub(crate) base_errors: Vec<Signature>,
    pub(crate) result_id: Option<TaskId>,
}

impl Meta {
    pub(crate) fn parse(task: &TaskMessage) -> Option<Meta> {
        let raw = task.workflow.as_ref()?;
        match serde_json::from_str(raw.get()) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::error!(task.id = %task.id, error = %e, "unreadable workflow data; continuing without it");
                None
            }
        }
    }

    /// Every error callback in scope of this task, innermost first.
    pub(crate) fn errors_in_scope(&self) -> impl Iterator<Item = &Signature> {
        self.own_errors.iter().chain(self.frames.iter().rev().flat_map(|f| &f.on_error)).chain(&self.base_errors)
    }
}

/// The error callbacks of `frames`.
pub(crate) fn frame_errors(frames: &[Frame]) -> impl Iterator<Item = &Signature> {
    frames.iter().rev().flat_map(|f| &f.on_error)
}

/// Takes the next step out of the frames (dropping finished ones).
pub(crate) fn next_step(mut frames: Vec<Frame>) -> Option<(Canvas, Vec<Frame>)> {
    while let Some(top) = frames.last_mut() {
        if top.steps.is_empty() {
            frames.pop();
            continue;
        }
        let next = top.steps.remove(0);
        return Some((next, frames));
    }
    None
}

fn null() -> Box<RawValue> {
    RawValue::from_string("null".to_owned()).expect("valid JSON")
}

/// Appends the messages that start `canvas` in `scope` to `out`.
pub(crate) fn plan(canvas: &Canvas, scope: Scope, out: &mut Vec<TaskMessage>) -> Result<()> {
    match canvas {
        Canvas::Task(sig) => {
            let input = if sig.immutable { None } else { scope.input };
            let (args, input) = match &sig.args {
                Some(a) => (a.clone(), input),
                // Piped: the previous result is the arguments (not carried twice).
                None => (input.unwrap_or_else(null), None),
            };
            let mut m = TaskMessage::new(sig.name.clone(), args);
            m.id = sig.id.clone();
            m.queue = sig.queue.clone().unwrap_or_else(|| DEFAULT_QUEUE.to_owned());
            if let Some(n) = sig.max_retry {
                m.max_retry = n;
            }
            m.timeout = sig.timeout;
            m.retention = sig.retention;
            let meta = Meta {
                input,
                frames: scope.frames,
                callbacks: sig.on_success.clone(),
                report: scope.report,
                base_errors: scope.base_errors,
                own_errors: sig.on_error.clone(),
                result_id: scope.result_id,
            };
            let raw =
                serde_json::value::to_raw_value(&meta).map_err(|source| Error::Encode { what: "workflow", source })?;
            m.workflow = Some(raw);
            out.push(m);
        }
        Canvas::Chain { steps, on_error } => {
            let (first, rest) =
                steps.split_first().ok_or_else(|| Error::InvalidWorkflow("a chain has no steps".into()))?;
            let mut frames = scope.frames;
            frames.push(Frame { steps: rest.to_vec(), on_error: on_error.clone() });
            plan(first, Scope { frames, ..scope }, out)?;
        }
        Canvas::Group { id, members, body, on_error } => {
            if members.is_empty() {
                return Err(Error::InvalidWorkflow(format!("group `{id}` has no members")));
            }
            // A member's failure fails the enclosing chains too.
            let member_errors: Vec<Signature> =
                scope.base_errors.iter().chain(frame_errors(&scope.frames)).cloned().collect();
            let after = Box::new(After {
                body: body.as_deref().cloned(),
                frames: scope.frames,
                report: scope.report,
                base_errors: scope.base_errors,
                group_errors: on_error.clone(),
            });
            let size = members.len() as u32;
            for (i, member) in members.iter().enumerate() {
                let slot = Slot { group: id.clone(), index: i as u32, size, after: after.clone() };
                let member_scope = Scope {
                    input: scope.input.clone(),
                    frames: Vec::new(),
                    report: Some(slot),
                    base_errors: member_errors.clone(),
                    result_id: scope.result_id.clone(),
                };
                plan(member, member_scope, out)?;
            }
        }
    }
    Ok(())
}

/// Where a canvas's final result ends up.
#[derive(Debug, Clone)]
pub(crate) enum ResultRef {
    Task(TaskId),
    Group { id: String, size: u32 },
}

pub(crate) fn result_ref(canvas: &Canvas) -> ResultRef {
    match canvas {
        Canvas::Task(s) => ResultRef::Task(s.id.clone()),
        Canvas::Chain { steps, .. } => steps.last().map_or(ResultRef::Group { id: String::new(), size: 0 }, result_ref),
        Canvas::Group { body: Some(b), .. } => result_ref(b),
        Canvas::Group { id, members, .. } => ResultRef::Group { id: id.clone(), size: members.len() as u32 },
    }
}

/// A group member's stored outcome.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Entry {
    Ok(Box<RawValue>),
    Err(String),
}

/// The JSON array `[r0, r1, …]` of a complete group's results in member order, `Ok(None)` while
/// members are missing, or the first member error.
pub(crate) fn collect(
    members: &[(u32, Box<RawValue>)],
    size: u32,
) -> std::result::Result<Option<Box<RawValue>>, String> {
    let mut sorted: Vec<&(u32, Box<RawValue>)> = members.iter().collect();
    sorted.sort_by_key(|(i, _)| *i);
    let mut out = String::from("[");
    let mut complete = true;
    for (n, (i, v)) in sorted.iter().enumerate() {
        if *i != n as u32 {
            complete = false;
        }
        match serde_json::from_str::<Entry>(v.get()) {
            Ok(Entry::Ok(r)) => {
                if n > 0 {
                    out.push(',');
                }
                out.push_str(r.get());
            }
            Ok(Entry::Err(e)) => return Err(e),
            Err(e) => return Err(format!("unreadable group entry: {e}")),
        }
    }
    if !complete || sorted.len() as u32 != size {
        return Ok(None);
    }
    out.push(']');
    RawValue::from_string(out).map(Some).map_err(|e| e.to_string())
}
