//! Building brokers and backends from URLs.

use std::sync::Arc;

use conveyor_core::{Broker, Error, Result, ResultBackend};

/// The environment variable [`broker_from_env`] reads.
pub const BROKER_ENV: &str = "CONVEYOR_BROKER";
/// The environment variable [`backend_from_env`] reads.
pub const BACKEND_ENV: &str = "CONVEYOR_BACKEND";

const BROKER_SCHEMES: &str = "memory, redis, rediss, amqp, amqps, sqs";
const BACKEND_SCHEMES: &str = "memory, redis, rediss";

fn scheme(url: &str) -> Result<String> {
    Ok(conveyor_core::parse_url(url)?.scheme().to_ascii_lowercase())
}

/// Builds the broker a URL names: `memory://[NAME]`, and with their features `redis://…`,
/// `amqp://…`, `sqs://…`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let err = conveyor::broker("kafka://localhost").await.err().unwrap();
/// assert!(err.to_string().contains("unknown broker scheme `kafka://`"));
/// # }
/// ```
pub async fn broker(url: &str) -> Result<Arc<dyn Broker>> {
    let kind = "broker";
    match scheme(url)?.as_str() {
        "memory" => Ok(Arc::new(crate::memory::MemoryBroker::from_url(url)?)),
        #[cfg(feature = "redis")]
        "redis" | "rediss" => Ok(Arc::new(crate::redis::RedisBroker::connect(url).await?)),
        #[cfg(not(feature = "redis"))]
        s @ ("redis" | "rediss") => not_yet(kind, s, "redis"),
        #[cfg(feature = "amqp")]
        "amqp" | "amqps" => Ok(Arc::new(crate::amqp::AmqpBroker::connect(url).await?)),
        #[cfg(not(feature = "amqp"))]
        s @ ("amqp" | "amqps") => not_yet(kind, s, "amqp"),
        #[cfg(feature = "sqs")]
        "sqs" => Ok(Arc::new(crate::sqs::SqsBroker::connect(url).await?)),
        #[cfg(not(feature = "sqs"))]
        s @ "sqs" => not_yet(kind, s, "sqs"),
        s => Err(Error::UnknownScheme { kind, scheme: s.to_owned(), known: BROKER_SCHEMES }),
    }
}

/// Builds the result backend a URL names: `memory://[NAME]`, and with the `redis` feature
/// `redis://…`.
pub async fn backend(url: &str) -> Result<Arc<dyn ResultBackend>> {
    let kind = "backend";
    match scheme(url)?.as_str() {
        "memory" => Ok(Arc::new(crate::memory::MemoryBackend::from_url(url)?)),
        #[cfg(feature = "redis")]
        "redis" | "rediss" => Ok(Arc::new(crate::redis::RedisBackend::connect(url).await?)),
        #[cfg(not(feature = "redis"))]
        s @ ("redis" | "rediss") => not_yet(kind, s, "redis"),
        s => Err(Error::UnknownScheme { kind, scheme: s.to_owned(), known: BACKEND_SCHEMES }),
    }
}

/// The broker named by `CONVEYOR_BROKER` (default `memory://`).
pub async fn broker_from_env() -> Result<Arc<dyn Broker>> {
    broker(&env_or_memory(BROKER_ENV)?).await
}

/// The backend named by `CONVEYOR_BACKEND` (default `memory://`).
pub async fn backend_from_env() -> Result<Arc<dyn ResultBackend>> {
    backend(&env_or_memory(BACKEND_ENV)?).await
}

fn env_or_memory(var: &str) -> Result<String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok("memory://".to_owned()),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::Config(format!("{var} is not valid UTF-8"))),
    }
}

/// A scheme whose broker/backend ships in a later release, or whose feature is off.
#[allow(dead_code)]
fn not_yet<T>(kind: &'static str, scheme: &str, feature: &'static str) -> Result<T> {
    Err(Error::FeatureNotEnabled { kind, scheme: scheme.to_owned(), feature })
}
