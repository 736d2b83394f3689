//! The suite on the in-memory broker and backend.

use std::sync::Arc;

use conveyor::memory::{MemoryBackend, MemoryBroker};

use crate::suite::Env;

async fn env() -> Env {
    Env::new(Arc::new(MemoryBroker::new()), Arc::new(MemoryBackend::new()))
}

conformance_suite!(env);
