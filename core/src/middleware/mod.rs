//! Middleware: layers around a task handler, in the manner of tower.
//!
//! A [`Layer`] wraps a [`Handler`] in another handler. The worker builds the chain once at
//! start-up: the first layer added is the outermost. Write your own with [`from_fn`]:
//!
//! ```
//! use conveyor_core::middleware::{from_fn, Next};
//! use conveyor_core::Request;
//!
//! let tenant_check = from_fn(|req: Request, next: Next| async move {
//!     if req.task.headers.get("tenant").is_none() {
//!         tracing::warn!(task = %req.task.id, "task without tenant header");
//!     }
//!     next.run(req).await
//! });
//! # let _ = tenant_check;
//! ```
//!
//! Built in: [`Logging`] (tracing events per attempt), [`CatchPanic`] (a panic becomes a
//! failed attempt carrying the panic message; the worker always installs it innermost), and
//! [`Metrics`] (a hook called with each attempt's timing and outcome).

pub(crate) mod limit;
mod logging;
mod metrics;
pub(crate) mod panic;

use std::future::Future;
use std::sync::Arc;

pub use logging::Logging;
pub use metrics::{Metrics, MetricsHook, Outcome};
pub use panic::CatchPanic;

use crate::handler::{BoxFuture, Handler, Request, TaskResult};

/// Wraps a handler in another one.
pub trait Layer: Send + Sync + 'static {
    /// Returns `inner` wrapped by this layer.
    fn layer(&self, inner: Arc<dyn Handler>) -> Arc<dyn Handler>;
}

/// The rest of the chain, handed to a [`from_fn`] middleware.
#[derive(Clone)]
pub struct Next {
    inner: Arc<dyn Handler>,
}

impl Next {
    /// Runs the rest of the chain (and finally the task handler).
    pub fn run(self, req: Request) -> BoxFuture<TaskResult> {
        self.inner.call(req)
    }
}

/// A layer made from an async function `(Request, Next) -> TaskResult`. See the module docs.
pub fn from_fn<F, Fut>(f: F) -> FnLayer<F>
where
    F: Fn(Request, Next) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = TaskResult> + Send + 'static,
{
    FnLayer { f: Arc::new(f) }
}

/// The layer returned by [`from_fn`].
pub struct FnLayer<F> {
    f: Arc<F>,
}

impl<F, Fut> Layer for FnLayer<F>
where
    F: Fn(Request, Next) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = TaskResult> + Send + 'static,
{
    fn layer(&self, inner: Arc<dyn Handler>) -> Arc<dyn Handler> {
        let f = self.f.clone();
        Arc::new(move |req: Request| f(req, Next { inner: inner.clone() }))
    }
}

/// Wraps `handler` in `layers`, the first one outermost.
pub(crate) fn wrap(handler: Arc<dyn Handler>, layers: &[Arc<dyn Layer>]) -> Arc<dyn Handler> {
    layers.iter().rev().fold(handler, |h, l| l.layer(h))
}
