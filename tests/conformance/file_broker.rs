//! The suite on the example broker of docs/writing-a-broker.md (`examples/file_broker/`),
//! written from that guide alone: proof that the guide and the exported suite suffice.

#[path = "../../examples/file_broker/broker.rs"]
mod broker;

use std::sync::Arc;

use conveyor::memory::MemoryBackend;

use crate::suite::Env;

async fn env() -> Env {
    // Under target/ (cargo's directory for tests' files), not left in /tmp.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("file-broker-{}", uuid::Uuid::new_v4().simple()));
    Env::new(Arc::new(broker::FileBroker::open(dir).unwrap()), Arc::new(MemoryBackend::new()))
}

conformance_suite!(env);
