//! The Lua scripts, one file per operation, each with the shared prelude.

use redis::Script;
use std::sync::LazyLock;

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub(crate) static $name: LazyLock<Script> =
            LazyLock::new(|| Script::new(concat!(include_str!("../lua/prelude.lua"), include_str!($file))));
    };
}

script!(PUBLISH, "../lua/publish.lua");
script!(CLAIM, "../lua/claim.lua");
script!(ACK_MANY, "../lua/ack_many.lua");
script!(RETRY, "../lua/retry.lua");
script!(ARCHIVE, "../lua/archive.lua");
script!(RELEASE, "../lua/release.lua");
script!(EXTEND, "../lua/extend.lua");

/// The operator's scripts: the prelude, then what they share, then their own.
macro_rules! ops_script {
    ($name:ident, $file:literal) => {
        pub(crate) static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(
                include_str!("../lua/prelude.lua"),
                include_str!("../lua/ops.lua"),
                include_str!($file)
            ))
        });
    };
}

ops_script!(TASK_ACTION, "../lua/task_action.lua");
ops_script!(BULK_ACTION, "../lua/bulk_action.lua");

/// The kind of a Redis failure: the redis crate's own view of whether retrying helps (a
/// server that is loading its data, TRYAGAIN or a failover is only unavailable).
pub(crate) fn failure_kind(e: &redis::RedisError) -> conveyor_core::FailureKind {
    conveyor_core::FailureKind::from_signals(
        e.is_timeout(),
        e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal(),
        e.kind() == redis::ErrorKind::Parse,
        matches!(e.retry_method(), redis::RetryMethod::NoRetry),
    )
}
