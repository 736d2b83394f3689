//! The suite on SQS (with the in-memory result backend), against moto's SQS emulator that
//! `scripts/test` starts (`CONVEYOR_TEST_SQS_URL`, default
//! `sqs://?region=us-east-1&endpoint=http://127.0.0.1:4590`). A test that cannot reach it fails.

use std::sync::Arc;

use conveyor::memory::MemoryBackend;

use crate::suite::Env;

/// The emulator's URL (and credentials for it, which it does not check, unless real ones are set).
pub fn url() -> String {
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    }
    // Never look for EC2 instance credentials from a test (only loopback traffic is allowed).
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    std::env::var("CONVEYOR_TEST_SQS_URL")
        .unwrap_or_else(|_| "sqs://?region=us-east-1&endpoint=http://127.0.0.1:4590".into())
}

async fn env() -> Env {
    let url = format!("{}&prefix=t{}", url(), &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let broker = conveyor::broker(&url)
        .await
        .unwrap_or_else(|e| panic!("SQS emulator at {url} is not reachable ({e}); run scripts/moto start"));
    Env::new(broker, Arc::new(MemoryBackend::new()))
}

conformance_suite!(env);
inspector_archive_suite!(env);
