//! Turning a canvas into task messages, each carrying its own continuation.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{Canvas, Signature};
use crate::error::{Error, Result};
use crate::task::{TaskMessage, DEFAULT_QUEUE};

/// What travels in `TaskMessage::workflow`: what to do after this task.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Meta {
    /// The previous result, for `TaskContext::previous_result`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) input: Option<Box<RawValue>>,
    /// The rest of the chain, run with this task's result; it inherits `report` and `scope_errors`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) then: Option<Canvas>,
    /// This task's own on-success callbacks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) callbacks: Vec<Canvas>,
    /// Where to report the result when nothing follows in this chain (a group member).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) report: Option<Slot>,
    /// Error callbacks of the enclosing chains, fired on any failure in scope.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) scope_errors: Vec<Signature>,
    /// This task's own error callbacks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) own_errors: Vec<Signature>,
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
    /// What follows the group (or the body) in the enclosing chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) then: Option<Canvas>,
    /// The enclosing group's slot, when this group is a member of another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) report: Option<Slot>,
    /// Error callbacks of the enclosing chains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) scope_errors: Vec<Signature>,
    /// The group's (or chord's) own error callbacks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) group_errors: Vec<Signature>,
}

/// What a part of a workflow is launched with.
#[derive(Default)]
pub(crate) struct Scope {
    pub(crate) input: Option<Box<RawValue>>,
    pub(crate) then: Option<Canvas>,
    pub(crate) report: Option<Slot>,
    pub(crate) scope_errors: Vec<Signature>,
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
}

fn null() -> Box<RawValue> {
    RawValue::from_string("null".to_owned()).expect("valid JSON")
}

/// Appends the messages that start `canvas` in `scope` to `out`.
pub(crate) fn plan(canvas: &Canvas, scope: Scope, out: &mut Vec<TaskMessage>) -> Result<()> {
    match canvas {
        Canvas::Task(sig) => {
            let input = if sig.immutable { None } else { scope.input };
            let args = sig.args.clone().or_else(|| input.clone()).unwrap_or_else(null);
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
                then: scope.then,
                callbacks: sig.on_success.clone(),
                report: scope.report,
                scope_errors: scope.scope_errors,
                own_errors: sig.on_error.clone(),
            };
            let raw =
                serde_json::value::to_raw_value(&meta).map_err(|source| Error::Encode { what: "workflow", source })?;
            m.workflow = Some(raw);
            out.push(m);
        }
        Canvas::Chain { steps, on_error } => {
            let (first, rest) =
                steps.split_first().ok_or_else(|| Error::InvalidWorkflow("a chain has no steps".into()))?;
            let mut errors = scope.scope_errors;
            errors.extend(on_error.iter().cloned());
            let mut rest: Vec<Canvas> = rest.to_vec();
            let then = match (rest.is_empty(), scope.then) {
                (true, then) => then,
                (false, then) => {
                    rest.extend(then);
                    Some(Canvas::Chain { steps: rest, on_error: Vec::new() })
                }
            };
            plan(first, Scope { input: scope.input, then, report: scope.report, scope_errors: errors }, out)?;
        }
        Canvas::Group { id, members, body, on_error } => {
            if members.is_empty() {
                return Err(Error::InvalidWorkflow(format!("group `{id}` has no members")));
            }
            let after = Box::new(After {
                body: body.as_deref().cloned(),
                then: scope.then,
                report: scope.report,
                scope_errors: scope.scope_errors.clone(),
                group_errors: on_error.clone(),
            });
            let size = members.len() as u32;
            for (i, member) in members.iter().enumerate() {
                let slot = Slot { group: id.clone(), index: i as u32, size, after: after.clone() };
                let member_scope = Scope {
                    input: scope.input.clone(),
                    then: None,
                    report: Some(slot),
                    scope_errors: scope.scope_errors.clone(),
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
    Task(crate::task::TaskId),
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

/// The JSON array `[r0, r1, …]` of a completed group's results, or the first error.
pub(crate) fn collect(members: &[(u32, Box<RawValue>)]) -> std::result::Result<Box<RawValue>, String> {
    let mut out = String::from("[");
    for (n, (_, v)) in members.iter().enumerate() {
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
    out.push(']');
    RawValue::from_string(out).map_err(|e| e.to_string())
}
