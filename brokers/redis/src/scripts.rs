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

/// The kind of a Redis failure: the redis crate's own view of whether retrying helps.
pub(crate) fn failure_kind(e: &redis::RedisError) -> conveyor_core::FailureKind {
    use conveyor_core::FailureKind as K;
    if e.is_timeout() {
        K::Timeout
    } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
        K::Connection
    } else if e.kind() == redis::ErrorKind::Parse {
        K::Protocol
    } else if matches!(e.retry_method(), redis::RetryMethod::NoRetry) {
        K::Rejected
    } else {
        // Loading its data, TRYAGAIN, a failover under way.
        K::Unavailable
    }
}
