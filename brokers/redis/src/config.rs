//! `redis://` URL parsing: Conveyor's own parameters are taken out, the rest goes to redis.

use conveyor_core::{Error, Result};

/// The parameters a `redis://` URL may carry (the broker's and the result backend's are the
/// same, so that both can share one URL).
pub const KNOWN: &str =
    "prefix, archive_limit, connections, protocol, tls_ca, tls_cert, tls_key, tls_insecure_skip_verify";

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
    /// TLS settings (`rediss://` with `tls_ca`, …; see [`conveyor_core::tls`]).
    pub tls: conveyor_core::tls::TlsFiles,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &conveyor_core::redact_url(&self.url))
            .field("prefix", &self.prefix)
            .field("archive_limit", &self.archive_limit)
            .field("connections", &self.connections)
            .field("tls", &self.tls)
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
        let mut cfg = RedisConfig {
            url: String::new(),
            prefix: "conveyor".into(),
            archive_limit: 10_000,
            connections: 4,
            tls: Default::default(),
        };
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
                other if cfg.tls.take(url, other, &v)? => {}
                other => return Err(bad(format!("unknown parameter `{other}` (known: {KNOWN})"))),
            }
        }
        cfg.tls.check(url, parsed.scheme() == "rediss", cfg!(feature = "tls"), "redis-tls")?;
        conveyor_core::replace_query(&mut parsed, &rest);
        if cfg.tls.insecure_skip_verify {
            parsed.set_fragment(Some("insecure"));
        }
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

/// A redis client for `url`, with `tls`'s CA and client certificate when it has them.
pub(crate) fn client(url: &str, tls: &conveyor_core::tls::TlsFiles) -> redis::RedisResult<redis::Client> {
    #[cfg(feature = "tls")]
    {
        // One crypto provider for rustls, whatever else the application links (an AWS SDK
        // brings another): set once, first come.
        let _ = rustls::crypto::ring::default_provider().install_default();
        if tls.ca.is_some() || tls.cert.is_some() {
            let client_tls = match (&tls.cert, &tls.key) {
                (Some(cert), Some(key)) => {
                    Some(redis::ClientTlsConfig { client_cert: cert.clone(), client_key: key.clone() })
                }
                _ => None,
            };
            let certs = redis::TlsCertificates { client_tls, root_cert: tls.ca.clone() };
            return redis::Client::build_with_tls(url, certs);
        }
    }
    let _ = tls;
    redis::Client::open(url)
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

    #[test]
    fn tls_urls_need_the_feature() {
        let tls = RedisConfig::from_url("rediss://h:6380/?prefix=app");
        if cfg!(feature = "tls") {
            assert!(tls.is_ok());
            let c = RedisConfig::from_url("rediss://h/?tls_insecure_skip_verify=true").unwrap();
            assert!(c.url.ends_with("#insecure") && c.tls.insecure_skip_verify, "{}", c.url);
        } else {
            let e = tls.err().unwrap().to_string();
            assert!(e.contains("`redis-tls` feature"), "{e}");
        }
    }
}
