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
