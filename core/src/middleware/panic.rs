use std::cell::{Cell, RefCell};
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

thread_local! {
    /// Whether this thread is inside a handler that a [`CatchPanic`] guards.
    static GUARDED: Cell<bool> = const { Cell::new(false) };
    /// Where the last guarded panic on this thread happened, and its message.
    static CAUGHT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs, once per process, a panic hook that keeps a panic inside a guarded handler from
/// printing the default report (and with `RUST_BACKTRACE` set, a backtrace of 90 frames per
/// attempt): its message and location go into the attempt's error instead, which the worker
/// and [`Logging`](super::Logging) log in one line. Panics elsewhere go to the hook that was
/// installed before. (A hook installed later replaces this one.)
pub(crate) fn install_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // With `panic = "abort"` nothing is caught: the default report must be printed.
            if GUARDED.get() && cfg!(panic = "unwind") {
                let at = info.location().map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()));
                CAUGHT.set(Some(format!("{}{}", payload_text(info.payload()), at.unwrap_or_default())));
            } else {
                previous(info)
            }
        }));
    });
}

/// Runs `f` marked as guarded (restoring the mark after, for nested guards).
fn guarded<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
    // A panic caught inside the handler (its own catch_unwind) left its message: not this one's.
    CAUGHT.set(None);
    let was = GUARDED.replace(true);
    let r = catch_unwind(AssertUnwindSafe(f));
    GUARDED.set(was);
    r
}

impl Handler for PanicGuard {
    fn call(&self, req: Request) -> BoxFuture<TaskResult> {
        match guarded(|| self.0.call(req)) {
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
        match guarded(|| fut.as_mut().poll(cx)) {
            Ok(p) => p,
            Err(payload) => Poll::Ready(Err(panic_error(payload))),
        }
    }
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// The error of a caught panic: its message, and where it happened if the hook saw it.
pub(crate) fn panic_error(payload: Box<dyn std::any::Any + Send>) -> TaskError {
    let msg = CAUGHT.take().unwrap_or_else(|| payload_text(&*payload));
    TaskError::with_kind(ErrorKind::Panicked, format!("handler panicked: {msg}"))
}
