//! What a task function can take after its arguments: the attempt's [`TaskContext`], and
//! values registered on the worker as [`Data<T>`].

use std::any::TypeId;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use crate::handler::{TaskContext, TaskError};

/// A value registered on the worker with [`WorkerBuilder::data`](crate::WorkerBuilder::data),
/// taken by a task function as a parameter after its arguments. Derefs to `T`; cheap to clone.
///
/// A task that takes a `Data<T>` the worker has no value for is refused when the worker is
/// built, with an error naming both.
pub struct Data<T>(Arc<T>);

impl<T> Data<T> {
    /// Wraps `value` (for calling a task's body directly, in a test say).
    pub fn new(value: T) -> Self {
        Data(Arc::new(value))
    }

    /// The shared value.
    pub fn into_inner(self) -> Arc<T> {
        self.0
    }
}

impl<T> Deref for Data<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> Clone for Data<T> {
    fn clone(&self) -> Self {
        Data(self.0.clone())
    }
}

impl<T: fmt::Debug> fmt::Debug for Data<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a task function can take after its arguments: [`TaskContext`] and [`Data<T>`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a parameter of a task after its arguments",
    label = "not `TaskContext` or `Data<T>`",
    note = "a task takes its arguments as ONE parameter (a struct or a tuple for several values), \
            followed by any of `ctx: TaskContext` and `name: Data<T>` (state registered with `WorkerBuilder::data`)"
)]
pub trait FromContext: Sized {
    /// Takes the parameter from the attempt's context.
    fn from_context(ctx: &TaskContext) -> Result<Self, TaskError>;

    /// The data type this parameter needs registered on the worker, if any: checked when the
    /// worker is built.
    fn required() -> Option<(TypeId, &'static str)> {
        None
    }
}

#[diagnostic::do_not_recommend]
impl FromContext for TaskContext {
    fn from_context(ctx: &TaskContext) -> Result<Self, TaskError> {
        Ok(ctx.clone())
    }
}

#[diagnostic::do_not_recommend]
impl<T: Send + Sync + 'static> FromContext for Data<T> {
    fn from_context(ctx: &TaskContext) -> Result<Self, TaskError> {
        ctx.data_map().get_arc::<T>().map(Data).ok_or_else(|| {
            let msg = format!("no `{}` registered on the worker (WorkerBuilder::data)", std::any::type_name::<T>());
            TaskError::skip_retry(msg)
        })
    }

    fn required() -> Option<(TypeId, &'static str)> {
        Some((TypeId::of::<T>(), std::any::type_name::<T>()))
    }
}
