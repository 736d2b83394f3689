//! The recommended pairings: a RabbitMQ or SQS broker with the Redis result backend (records,
//! locks, counters, the operations state in Redis; tasks in the broker). Every behaviour of the
//! suite, against the real servers `scripts/test` starts. A test that cannot reach them fails.

/// The Redis result backend in a namespace of the test's own.
async fn redis_backend(ns: &str) -> std::sync::Arc<dyn conveyor::ResultBackend> {
    let url = format!("{}/?prefix={ns}&list_completed=true", crate::redis::url().trim_end_matches('/'));
    conveyor::backend(&url).await.unwrap_or_else(|e| panic!("Redis at {url} is not reachable ({e})"))
}

/// RabbitMQ with the Redis result backend.
mod amqp_redis {
    use crate::suite::Env;

    async fn env() -> Env {
        let ns = format!("t{}", uuid::Uuid::new_v4().simple());
        let url = format!("{}?prefix={ns}", crate::amqp::url());
        let broker = conveyor::broker(&url)
            .await
            .unwrap_or_else(|e| panic!("RabbitMQ at {url} is not reachable ({e}); run scripts/rabbitmq start"));
        Env::new(broker, super::redis_backend(&ns).await)
    }

    conformance_suite!(env);
    inspector_archive_suite!(env);
}

/// SQS with the Redis result backend.
mod sqs_redis {
    use crate::suite::Env;

    async fn env() -> Env {
        let ns = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let url = format!("{}&prefix={ns}", crate::sqs::url());
        let broker = conveyor::broker(&url)
            .await
            .unwrap_or_else(|e| panic!("SQS emulator at {url} is not reachable ({e}); run scripts/moto start"));
        Env::new(broker, super::redis_backend(&ns).await)
    }

    conformance_suite!(env);
    inspector_archive_suite!(env);
}
