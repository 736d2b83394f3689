//! Application state for handlers: a database pool, an HTTP client, a mailer, registered once
//! on the worker with [`WorkerBuilder::data`](crate::WorkerBuilder::data) and taken by task
//! functions as a [`Data<T>`](crate::Data) parameter, the way axum hands out `State<T>` and
//! apalis `Data<T>`.
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
use std::sync::Arc;

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
    }
}
