//! Application state for handlers: a database pool, an HTTP client, a mailer, registered once
//! on the worker with [`WorkerBuilder::data`](crate::WorkerBuilder::data) and taken by task
//! functions as a [`Data<T>`] parameter, the way axum hands out `State<T>` and apalis `Data<T>`.
//!
//! ```
//! use conveyor_core::{Data, TaskContext, TaskError};
//!
//! #[derive(Clone)]
//! struct Mailer { from: String }
//!
//! // What `#[conveyor::task]` generates calls this with the worker's `Mailer`.
//! async fn send_welcome(user_id: u64, mailer: Data<Mailer>, ctx: TaskContext) -> Result<(), TaskError> {
//!     println!("mail to user {user_id} from {} (attempt {})", mailer.from, ctx.retried() + 1);
//!     Ok(())
//! }
//! ```

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use crate::handler::{TaskContext, TaskError};

/// The values registered on a worker, one per type. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct DataMap(Arc<HashMap<TypeId, Entry>>);

#[derive(Clone)]
struct Entry {
    value: Arc<dyn Any + Send + Sync>,
    type_name: &'static str,
}

impl DataMap {
    /// The value of type `T`, if one was registered.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.0.get(&TypeId::of::<T>()).and_then(|e| e.value.downcast_ref::<T>())
    }

    /// The value of type `T`, shared, if one was registered.
    pub fn get_arc<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.0.get(&TypeId::of::<T>()).and_then(|e| e.value.clone().downcast::<T>().ok())
    }

    /// Whether a value of the type with this id was registered.
    pub fn contains(&self, type_id: TypeId) -> bool {
        self.0.contains_key(&type_id)
    }

    /// This map with `value` added (replacing one of the same type).
    pub(crate) fn with<T: Send + Sync + 'static>(&self, value: T) -> DataMap {
        let mut map = HashMap::clone(&self.0);
        let entry = Entry { value: Arc::new(value), type_name: std::any::type_name::<T>() };
        map.insert(TypeId::of::<T>(), entry);
        DataMap(Arc::new(map))
    }
}

impl fmt::Debug for DataMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.values().map(|e| e.type_name)).finish()
    }
}

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

impl FromContext for TaskContext {
    fn from_context(ctx: &TaskContext) -> Result<Self, TaskError> {
        Ok(ctx.clone())
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_found_by_type() {
        let map = DataMap::default().with(5u32).with(String::from("pool"));
        assert_eq!(map.get::<u32>(), Some(&5));
        assert_eq!(map.get::<String>().map(String::as_str), Some("pool"));
        assert!(map.get::<u64>().is_none());
        assert!(map.contains(TypeId::of::<u32>()));
        assert_eq!(*Data::new(3).clone(), 3);
    }
}
