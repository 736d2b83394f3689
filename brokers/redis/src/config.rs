//! `redis://` URL parsing: Conveyor's own parameters are taken out, the rest goes to redis.

use conveyor_core::{Error, Result};

/// The parameters a `redis://` URL may carry (the broker's and the result backend's are the
/// same, so that both can share one URL).
pub const KNOWN: &str = "prefix, archive_limit, connections, protocol";

/// Settings of a Redis broker.
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// The URL handed to the redis crate (without Conveyor's parameters).
    pub url: String,
    /// Key namespace (default `conveyor`): apps and tests sharing a server use different ones.
    pub prefix: String,
    /// Archived tasks kept per queue (default 10,000); the oldest are deleted beyond it.
    pub archive_limit: usize,
    /// Multiplexed connections used in turn (default 4), besides one per blocked receiver.
    pub connections: usize,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &conveyor_core::redact_url(&self.url))
            .field("prefix", &self.prefix)
            .field("archive_limit", &self.archive_limit)
            .field("connections", &self.connections)
            .finish()
    }
}

impl RedisConfig {
    /// Parses `redis://[user:pass@]host[:port][/db][?prefix=NAME&archive_limit=N&connections=N]` (`rediss://`
    /// for TLS when the redis crate is built with TLS).
    pub fn from_url(url: &str) -> Result<Self> {
        let bad = |reason: String| Error::invalid_url(url, reason);
        let mut parsed = conveyor_core::parse_url(url)?;
        if !matches!(parsed.scheme(), "redis" | "rediss") {
            return Err(bad(format!("expected redis:// or rediss://, got {}://", parsed.scheme())));
        }
        let mut cfg =
            RedisConfig { url: String::new(), prefix: "conveyor".into(), archive_limit: 10_000, connections: 4 };
        let mut rest = Vec::new();
        for (k, v) in parsed.query_pairs() {
            match &*k {
                "prefix" => {
                    conveyor_core::check_prefix(&v).map_err(bad)?;
                    cfg.prefix = v.into_owned();
                }
                "archive_limit" => {
                    cfg.archive_limit = v.parse().map_err(|_| bad(format!("archive_limit `{v}` is not a number")))?;
                }
                "connections" => {
                    cfg.connections = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=64).contains(n))
                        .ok_or_else(|| bad(format!("connections `{v}` must be 1 to 64")))?;
                }
                // The redis crate's own.
                "protocol" => rest.push((k.into_owned(), v.into_owned())),
                // The result backend's, when both share one URL.
                "list_completed" => {}
                other => return Err(bad(format!("unknown parameter `{other}` (known: {KNOWN})"))),
            }
        }
        conveyor_core::replace_query(&mut parsed, &rest);
        cfg.url = parsed.to_string();
        Ok(cfg)
    }
}

/// The warning a Redis `maxmemory-policy` calls for: any policy but `noeviction` lets Redis
/// delete keys under memory pressure, and with them queued tasks, leases and archives.
pub fn eviction_warning(policy: &str) -> Option<String> {
    (policy != "noeviction").then(|| {
        format!(
            "Redis's maxmemory-policy is `{policy}`: when memory runs short, Redis deletes keys, queued \
             tasks among them. Set `maxmemory-policy noeviction` (Redis then refuses writes instead, \
             and enqueues fail visibly)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicting_policies_are_warned_about() {
        assert!(eviction_warning("noeviction").is_none());
        for p in ["allkeys-lru", "volatile-lru", "allkeys-random", "volatile-ttl"] {
            assert!(eviction_warning(p).is_some_and(|w| w.contains(p) && w.contains("noeviction")));
        }
    }

    #[test]
    fn takes_out_conveyor_parameters() {
        let c = RedisConfig::from_url("redis://127.0.0.1:6390/2?prefix=app&archive_limit=5").unwrap();
        assert_eq!((c.url.as_str(), c.prefix.as_str(), c.archive_limit), ("redis://127.0.0.1:6390/2", "app", 5));
        assert!(RedisConfig::from_url("redis://h?prefix={x}").is_err());
        assert!(RedisConfig::from_url("redis://h?archive_limit=many").is_err());
        assert!(RedisConfig::from_url("http://h").is_err());
        let e = RedisConfig::from_url("redis://h?prefx=shop").unwrap_err().to_string();
        assert!(e.contains("unknown parameter `prefx`") && e.contains("known: prefix,"), "{e}");
        assert!(RedisConfig::from_url("redis://h?protocol=resp3&connections=2").is_ok());
    }
}
