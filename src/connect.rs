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

/// The broker named by `CONVEYOR_BROKER`. Unset, it is an error that says so: a producer that
/// fell back to an in-process broker would accept tasks that no worker ever sees, and lose them
/// when it exits. Where the in-memory broker is the right default (examples, tests, a
/// single-process app), say so with [`broker_from_env_or`].
pub async fn broker_from_env() -> Result<Arc<dyn Broker>> {
    match env_var(BROKER_ENV)? {
        Some(url) => broker(&url).await,
        None => Err(Error::Config(format!(
            "{BROKER_ENV} is not set: set it to the broker's URL (`redis://host:6379`, `amqp://…`, `sqs://…`), \
             or call `broker_from_env_or(\"memory://\")` to run on the in-process broker"
        ))),
    }
}

/// The broker named by `CONVEYOR_BROKER`, or by `default` when it is unset.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> conveyor::Result<()> {
/// // Tasks live in this process unless CONVEYOR_BROKER names a shared broker.
/// let broker = conveyor::broker_from_env_or("memory://").await?;
/// # Ok(()) }
/// ```
pub async fn broker_from_env_or(default: &str) -> Result<Arc<dyn Broker>> {
    broker(&env_var(BROKER_ENV)?.unwrap_or_else(|| default.to_owned())).await
}

/// The result backend named by `CONVEYOR_BACKEND`; unset, the one the broker of
/// `CONVEYOR_BROKER` implies: its own server for Redis, the in-memory backend for the
/// in-memory broker. A RabbitMQ or SQS broker keeps no results, and an in-process backend
/// would not be shared with the other processes (unique tasks, results and workflows would
/// silently break across them): that is an error naming `CONVEYOR_BACKEND`, as is neither
/// variable being set.
pub async fn backend_from_env() -> Result<Arc<dyn ResultBackend>> {
    if let Some(url) = env_var(BACKEND_ENV)? {
        return backend(&url).await;
    }
    match env_var(BROKER_ENV)? {
        Some(broker_url) => backend(&backend_for(&broker_url)?).await,
        None => Err(Error::Config(format!(
            "neither {BACKEND_ENV} nor {BROKER_ENV} is set: set {BACKEND_ENV} to the result backend's URL \
             (`redis://host:6379`), or call `backend_from_env_or(\"memory://\")` to keep results in this process"
        ))),
    }
}

/// As [`backend_from_env`], with `default` when neither `CONVEYOR_BACKEND` nor
/// `CONVEYOR_BROKER` is set.
pub async fn backend_from_env_or(default: &str) -> Result<Arc<dyn ResultBackend>> {
    if let Some(url) = env_var(BACKEND_ENV)? {
        return backend(&url).await;
    }
    match env_var(BROKER_ENV)? {
        Some(broker_url) => backend(&backend_for(&broker_url)?).await,
        None => backend(default).await,
    }
}

/// The backend a broker URL implies when `CONVEYOR_BACKEND` is unset.
fn backend_for(broker_url: &str) -> Result<String> {
    match scheme(broker_url)?.as_str() {
        "redis" | "rediss" | "memory" => Ok(broker_url.to_owned()),
        s => Err(Error::Config(format!(
            "{BACKEND_ENV} is not set, and a `{s}://` broker keeps no results: set {BACKEND_ENV} to a result \
             backend's URL (`redis://host:6379`); a backend inside this process would not be shared with the others"
        ))),
    }
}

/// The variable's value, `None` when unset or blank.
fn env_var(var: &str) -> Result<Option<String>> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Ok(Some(v.trim().to_owned())),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::Config(format!("{var} is not valid UTF-8"))),
    }
}

/// A scheme whose broker/backend ships in a later release, or whose feature is off.
#[allow(dead_code)]
fn not_yet<T>(kind: &'static str, scheme: &str, feature: &'static str) -> Result<T> {
    Err(Error::FeatureNotEnabled { kind, scheme: scheme.to_owned(), feature })
}
