//! `amqp://` URL parsing: Conveyor's own parameters are taken out, the rest goes to lapin.

use conveyor_core::{Error, Result};

/// The parameters an `amqp://` URL may carry.
pub const KNOWN: &str = "prefix, prefetch, heartbeat, connection_timeout, channel_max, frame_max, auth_mechanism";

/// Settings of an AMQP broker.
#[derive(Clone)]
#[non_exhaustive]
pub struct AmqpConfig {
    /// The URL handed to lapin (without Conveyor's parameters).
    pub url: String,
    /// Queue name prefix (default `conveyor`): Conveyor queue `q` is RabbitMQ queue `prefix.q`.
    pub prefix: String,
    /// Prefetch per queue consumer; `None`: the worker's free slots at its first receive.
    pub prefetch: Option<u16>,
}

impl std::fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("url", &conveyor_core::redact_url(&self.url))
            .field("prefix", &self.prefix)
            .field("prefetch", &self.prefetch)
            .finish()
    }
}

impl AmqpConfig {
    /// Parses `amqp://user:pass@host:port/vhost?prefix=NAME&prefetch=N`.
    pub fn from_url(url: &str) -> Result<Self> {
        let bad = |reason: String| Error::invalid_url(url, reason);
        let mut parsed = conveyor_core::parse_url(url)?;
        if !matches!(parsed.scheme(), "amqp" | "amqps") {
            return Err(bad(format!("expected amqp:// or amqps://, got {}://", parsed.scheme())));
        }
        let mut cfg = AmqpConfig { url: String::new(), prefix: "conveyor".into(), prefetch: None };
        let mut rest = Vec::new();
        for (k, v) in parsed.query_pairs() {
            match &*k {
                "prefix" => {
                    conveyor_core::check_prefix(&v).map_err(bad)?;
                    cfg.prefix = v.into_owned();
                }
                "prefetch" => {
                    cfg.prefetch = Some(
                        v.parse()
                            .ok()
                            .filter(|n| *n > 0)
                            .ok_or_else(|| bad(format!("prefetch `{v}` must be 1 to 65535")))?,
                    )
                }
                // lapin's own.
                "heartbeat" | "connection_timeout" | "channel_max" | "frame_max" | "auth_mechanism" => {
                    rest.push((k.into_owned(), v.into_owned()))
                }
                other => return Err(bad(format!("unknown parameter `{other}` (known: {KNOWN})"))),
            }
        }
        conveyor_core::replace_query(&mut parsed, &rest);
        cfg.url = parsed.to_string();
        Ok(cfg)
    }
}
