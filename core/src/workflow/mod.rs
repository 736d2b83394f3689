//! Workflows as plain data: [`Signature`]s composed into chains, groups and chords.
//!
//! ```
//! use conveyor_core::workflow::{chain, chord, group, Signature};
//! let fetch = |page: u32| Signature::raw("fetch", &page).unwrap();
//! // Fetch three pages in parallel, then merge the three results (in order), then publish.
//! let flow = chain([
//!     chord([fetch(1), fetch(2), fetch(3)], Signature::piped_raw("merge")),
//!     Signature::piped_raw("publish").into(),
//! ]);
//! assert!(flow.validate().is_ok());
//! ```
//!
//! # How results flow
//! - In a **chain**, each step runs after the previous one succeeded. A step built with
//!   [`TaskExt::piped`] (no arguments of its own) gets the previous result *as its arguments*;
//!   a step built with [`TaskExt::with`] keeps its arguments and can read the previous result
//!   with [`TaskContext::previous_result`](crate::TaskContext::previous_result); an
//!   [`immutable`](Signature::immutable) step gets nothing from the previous one.
//! - A **group** runs its members in parallel; its result is the array of their results, in
//!   member order. A group followed by a step in a chain hands that array to the step.
//! - A **chord** is a group plus a body that receives the array of results once every member
//!   succeeded. It fires exactly once, also when the last members finish at the same instant
//!   on different workers, and when a member is redelivered after a crash.
//! - A failure (after retries) stops what follows and fires the `on_error` callbacks in scope:
//!   the failed task's own, its chain's, its group's or chord's (at most once each). An error
//!   callback receives a [`Failure`] as its input (as its arguments if it was built `piped`).
//!
//! Every task of a workflow gets its id when the workflow is built, and the continuation of
//! each task travels in its message: no worker holds workflow state, and re-running a step
//! after a redelivery cannot launch the next step twice (the second launch is a duplicate id).

pub(crate) mod advance;
mod handle;
pub(crate) mod plan;

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub(crate) use advance::{on_archived, on_success};
pub use handle::WorkflowHandle;
pub(crate) use plan::Meta;

/// The header a workflow step carries with the id of the task whose end launched it (the
/// previous step of a chain, the member that completed a chord, the task whose callback it
/// is): operators follow a workflow back from any step.
pub const PARENT_HEADER: &str = "conveyor-parent";

use crate::error::{Error, Result};
use crate::handler::Task;
use crate::task::TaskId;

/// What an error callback receives: which task failed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Failure {
    /// The failed task's id.
    pub task_id: TaskId,
    /// Its name.
    pub task_name: String,
    /// Its last error.
    pub error: String,
}

/// A task and its options, as data: the unit of a workflow.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Signature {
    /// The task id, assigned when the signature is built.
    pub id: TaskId,
    /// Task name.
    pub name: String,
    /// Arguments; `None` means "the previous result" (a piped signature).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Box<RawValue>>,
    /// If true, the previous result is not passed at all.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub immutable: bool,
    /// Queue (default: the task's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Retries allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retry: Option<u32>,
    /// Per-attempt timeout.
    #[serde(
        default,
        rename = "timeout_ms",
        with = "crate::time::opt_duration_ms",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// Result retention.
    #[serde(
        default,
        rename = "retention_ms",
        with = "crate::time::opt_duration_ms",
        skip_serializing_if = "Option::is_none"
    )]
    pub retention: Option<Duration>,
    /// Run after this task succeeds, each receiving its result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_success: Vec<Canvas>,
    /// Run if this task fails for good, each receiving a [`Failure`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_error: Vec<Signature>,
    /// Why the typed arguments could not be encoded (reported by `validate`).
    #[serde(skip)]
    encode_error: Option<String>,
}

impl Signature {
    fn build(name: &str, args: Option<Box<RawValue>>) -> Self {
        Signature {
            id: TaskId::random(),
            name: name.to_owned(),
            args,
            immutable: false,
            queue: None,
            max_retry: None,
            timeout: None,
            retention: None,
            on_success: Vec::new(),
            on_error: Vec::new(),
            encode_error: None,
        }
    }

    /// A signature of the task called `name` with `args` (untyped; prefer [`TaskExt::with`]).
    pub fn raw<A: Serialize + ?Sized>(name: &str, args: &A) -> Result<Self> {
        let raw =
            serde_json::value::to_raw_value(args).map_err(|source| Error::Encode { what: "task arguments", source })?;
        Ok(Self::build(name, Some(raw)))
    }

    /// A signature of the task called `name` whose arguments are the previous result.
    pub fn piped_raw(name: &str) -> Self {
        Self::build(name, None)
    }

    /// Ignores the previous result.
    pub fn immutable(mut self) -> Self {
        self.immutable = true;
        self
    }
    /// Sets the queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }
    /// Sets the retries allowed.
    pub fn max_retry(mut self, n: u32) -> Self {
        self.max_retry = Some(n);
        self
    }
    /// Sets the per-attempt timeout.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }
    /// Sets how long the result is kept.
    pub fn retention(mut self, d: Duration) -> Self {
        self.retention = Some(d);
        self
    }
    /// Sets the task id (it must be unique in the workflow).
    pub fn task_id(mut self, id: impl Into<TaskId>) -> Self {
        self.id = id.into();
        self
    }
    /// Adds a callback run after success with this task's result.
    pub fn on_success(mut self, callback: impl Into<Canvas>) -> Self {
        self.on_success.push(callback.into());
        self
    }
    /// Adds a callback run with a [`Failure`] if this task fails for good.
    pub fn on_error(mut self, callback: Signature) -> Self {
        self.on_error.push(callback);
        self
    }
}

/// Typed signatures from `#[task]` definitions.
pub trait TaskExt: Task + Sized {
    /// This task with `args`; in a chain it can read the previous result from its context.
    fn with(self, args: Self::Args) -> Signature {
        match serde_json::value::to_raw_value(&args) {
            Ok(raw) => Signature::build(Self::NAME, Some(raw)).with_defaults::<Self>(),
            Err(e) => {
                let mut s = Signature::build(Self::NAME, None).with_defaults::<Self>();
                s.encode_error = Some(e.to_string());
                s
            }
        }
    }

    /// This task with the previous result as its arguments.
    fn piped(self) -> Signature {
        Signature::build(Self::NAME, None).with_defaults::<Self>()
    }
}

impl<T: Task> TaskExt for T {}

impl Signature {
    fn with_defaults<T: Task>(mut self) -> Self {
        let d = T::defaults();
        self.queue = Some(d.queue.to_owned());
        self.max_retry = Some(d.max_retry);
        self.timeout = d.timeout;
        self
    }
}

/// A workflow: a task, or tasks composed in sequence or in parallel.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Canvas {
    /// One task.
    Task(Signature),
    /// Steps run one after the other.
    Chain {
        /// The steps.
        steps: Vec<Canvas>,
        /// Fired (once) if a step fails for good.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        on_error: Vec<Signature>,
    },
    /// Members run in parallel; optionally a body receives all their results.
    Group {
        /// The group id (assigned at build).
        id: String,
        /// The members.
        members: Vec<Canvas>,
        /// The chord body, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<Box<Canvas>>,
        /// Fired (once) if a member fails for good.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        on_error: Vec<Signature>,
    },
}

impl From<Signature> for Canvas {
    fn from(s: Signature) -> Self {
        Canvas::Task(s)
    }
}

/// Steps run one after another, each after the previous one succeeded.
pub fn chain(steps: impl IntoIterator<Item = impl Into<Canvas>>) -> Canvas {
    Canvas::Chain { steps: steps.into_iter().map(Into::into).collect(), on_error: Vec::new() }
}

/// Members run in parallel; the group's result is the array of their results, in order.
pub fn group(members: impl IntoIterator<Item = impl Into<Canvas>>) -> Canvas {
    Canvas::Group {
        id: TaskId::random().to_string(),
        members: members.into_iter().map(Into::into).collect(),
        body: None,
        on_error: Vec::new(),
    }
}

/// A group whose `body` receives the array of the members' results once all succeeded.
pub fn chord(members: impl IntoIterator<Item = impl Into<Canvas>>, body: impl Into<Canvas>) -> Canvas {
    Canvas::Group {
        id: TaskId::random().to_string(),
        members: members.into_iter().map(Into::into).collect(),
        body: Some(Box::new(body.into())),
        on_error: Vec::new(),
    }
}

impl Canvas {
    /// Adds an error callback for this whole workflow part, fired at most once with a
    /// [`Failure`] when any of its tasks fails for good.
    pub fn on_error(mut self, callback: Signature) -> Self {
        match &mut self {
            Canvas::Task(s) => s.on_error.push(callback),
            Canvas::Chain { on_error, .. } | Canvas::Group { on_error, .. } => on_error.push(callback),
        }
        self
    }

    /// Gives every task and group an id derived from `prefix`, in a fixed order: the task that
    /// runs first gets `prefix` itself, the other tasks `prefix.N`, the groups `prefix.gN`.
    /// (Periodic fires get deterministic ids this way.)
    pub(crate) fn assign_ids(&mut self, prefix: &str) {
        let (mut tasks, mut groups) = (0u32, 0u32);
        self.assign(prefix, &mut tasks, &mut groups);
    }

    fn assign(&mut self, prefix: &str, tasks: &mut u32, groups: &mut u32) {
        let sig = |s: &mut Signature, tasks: &mut u32| {
            s.id = if *tasks == 0 { prefix.into() } else { format!("{prefix}.{tasks}").into() };
            *tasks += 1;
        };
        match self {
            Canvas::Task(s) => {
                sig(s, tasks);
                for c in &mut s.on_success {
                    c.assign(prefix, tasks, groups);
                }
                for e in &mut s.on_error {
                    sig(e, tasks);
                }
            }
            Canvas::Chain { steps, on_error } => {
                for c in steps {
                    c.assign(prefix, tasks, groups);
                }
                for e in on_error {
                    sig(e, tasks);
                }
            }
            Canvas::Group { id, members, body, on_error } => {
                *id = format!("{prefix}.g{groups}");
                *groups += 1;
                for c in members {
                    c.assign(prefix, tasks, groups);
                }
                if let Some(b) = body {
                    b.assign(prefix, tasks, groups);
                }
                for e in on_error {
                    sig(e, tasks);
                }
            }
        }
    }

    /// Checks the workflow: no empty chain or group, and no task id used twice (a signature
    /// reused in two places, which would make the workflow a cycle or run a step once only).
    pub fn validate(&self) -> Result<()> {
        let mut ids = HashSet::new();
        self.check(&mut ids)
    }

    fn check<'a>(&'a self, ids: &mut HashSet<&'a str>) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidWorkflow(m));
        let sig = |s: &'a Signature, ids: &mut HashSet<&'a str>| -> Result<()> {
            if s.name.is_empty() {
                return bad("a signature has an empty task name".into());
            }
            if let Some(e) = &s.encode_error {
                return bad(format!("arguments of `{}` do not encode: {e}", s.name));
            }
            if !ids.insert(s.id.as_str()) {
                return bad(format!("task id `{}` appears twice (a signature reused, or a cycle)", s.id));
            }
            Ok(())
        };
        match self {
            Canvas::Task(s) => {
                sig(s, ids)?;
                for c in &s.on_success {
                    c.check(ids)?;
                }
                for e in &s.on_error {
                    sig(e, ids)?;
                }
            }
            Canvas::Chain { steps, on_error } => {
                if steps.is_empty() {
                    return bad("a chain has no steps".into());
                }
                for c in steps {
                    c.check(ids)?;
                }
                for e in on_error {
                    sig(e, ids)?;
                }
            }
            Canvas::Group { id, members, body, on_error } => {
                if members.is_empty() {
                    return bad(format!("group `{id}` has no members"));
                }
                if !ids.insert(id.as_str()) {
                    return bad(format!("group id `{id}` appears twice"));
                }
                for c in members {
                    c.check(ids)?;
                }
                if let Some(b) = body {
                    b.check(ids)?;
                }
                for e in on_error {
                    sig(e, ids)?;
                }
            }
        }
        Ok(())
    }
}

impl crate::handler::TaskContext {
    /// In a workflow, the result of the step before this one (`None` outside a workflow, for
    /// the first step, and for immutable signatures).
    pub fn previous_result<T: serde::de::DeserializeOwned>(&self) -> Option<crate::Result<T>> {
        let input = Meta::parse(self.message())?.input?;
        Some(
            serde_json::from_str(input.get())
                .map_err(|source| crate::Error::Decode { what: "previous result", source }),
        )
    }
}
