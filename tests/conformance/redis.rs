//! The suite on Redis (broker and result backend), against the real server that `scripts/test`
//! starts (`CONVEYOR_TEST_REDIS_URL`, default `redis://127.0.0.1:6390`). A test that cannot
//! reach it fails.

use crate::suite::Env;

/// The server's URL.
pub fn url() -> String {
    std::env::var("CONVEYOR_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6390".into())
}

async fn env() -> Env {
    // A key namespace per test: tests share the server without touching each other's keys.
    // Completed tasks are indexed, for the inspector's behaviours on them.
    let url = format!("{}/?prefix=t{}&list_completed=true", url().trim_end_matches('/'), uuid::Uuid::new_v4().simple());
    let broker = conveyor::broker(&url)
        .await
        .unwrap_or_else(|e| panic!("Redis at {url} is not reachable ({e}); run scripts/redis start"));
    let backend = conveyor::backend(&url).await.unwrap_or_else(|e| panic!("Redis at {url} is not reachable ({e})"));
    Env::new(broker, backend)
}

conformance_suite!(env);
inspector_suite!(env);
