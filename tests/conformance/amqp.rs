//! The suite on RabbitMQ (with the in-memory result backend), against the real node that
//! `scripts/test` starts (`CONVEYOR_TEST_AMQP_URL`, default `amqp://guest:guest@127.0.0.1:5690/%2f`).
//! A test that cannot reach it fails.

use std::sync::Arc;

use conveyor::memory::MemoryBackend;

use crate::suite::Env;

/// The server's URL.
pub fn url() -> String {
    std::env::var("CONVEYOR_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5690/%2f".into())
}

async fn env() -> Env {
    // Queue names of their own per test.
    let url = format!("{}?prefix=t{}", url(), uuid::Uuid::new_v4().simple());
    let broker = conveyor::broker(&url)
        .await
        .unwrap_or_else(|e| panic!("RabbitMQ at {url} is not reachable ({e}); run scripts/rabbitmq start"));
    Env::new(broker, Arc::new(MemoryBackend::new()))
}

conformance_suite!(env);
inspector_archive_suite!(env);
