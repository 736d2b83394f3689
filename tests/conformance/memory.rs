//! The suite on the in-memory broker and backend.

use std::sync::Arc;

use conveyor::memory::{MemoryBackend, MemoryBroker};

use crate::suite::Env;

async fn env() -> Env {
    Env::new(Arc::new(MemoryBroker::new()), Arc::new(MemoryBackend::new()))
}

conformance_suite!(env);
inspector_suite!(env);

/// On one thread, tasks woken together run in the order they were woken, so the handler that
/// returns on the shutdown signal frees its slot before the prefetched task sees the shutdown:
/// the case the suite's multi-threaded run only hits by chance.
#[tokio::test(flavor = "current_thread")]
async fn prefetched_task_is_handed_back_not_started_on_one_thread() {
    crate::suite::worker::prefetched_task_is_handed_back_not_started(env().await).await;
}
