use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::Layer;
use crate::handler::{BoxFuture, ErrorKind, Handler, Request, TaskError, TaskResult};

/// Turns a panic in the wrapped handler into a failed attempt whose error carries the panic
/// message (retried like any failure). The worker installs it innermost, around every handler,
/// and again outermost, around all middleware; add it yourself to place it elsewhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct CatchPanic;

impl Layer for CatchPanic {
    fn layer(&self, inner: Arc<dyn Handler>) -> Arc<dyn Handler> {
        Arc::new(PanicGuard(inner))
    }
}

struct PanicGuard(Arc<dyn Handler>);

impl Handler for PanicGuard {
    fn call(&self, req: Request) -> BoxFuture<TaskResult> {
        match catch_unwind(AssertUnwindSafe(|| self.0.call(req))) {
            Ok(fut) => Box::pin(CatchUnwind(fut)),
            Err(payload) => Box::pin(std::future::ready(Err(panic_error(payload)))),
        }
    }
}

/// Polls the inner future, catching a panic as an error.
pub(crate) struct CatchUnwind(pub(crate) BoxFuture<TaskResult>);

impl Future for CatchUnwind {
    type Output = TaskResult;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<TaskResult> {
        let fut = &mut self.0;
        match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(p) => p,
            Err(payload) => Poll::Ready(Err(panic_error(payload))),
        }
    }
}

/// The error of a caught panic.
pub(crate) fn panic_error(payload: Box<dyn std::any::Any + Send>) -> TaskError {
    let msg = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    };
    TaskError::with_kind(ErrorKind::Panicked, format!("handler panicked: {msg}"))
}
