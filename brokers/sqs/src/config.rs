//! `sqs://` URL parsing.

use conveyor_core::{Error, Result};

/// Settings of an SQS broker.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SqsConfig {
    /// AWS region.
    pub region: String,
    /// Endpoint override (emulators such as moto or LocalStack).
    pub endpoint: Option<String>,
    /// Queue name prefix (default `conveyor`).
    pub prefix: String,
    /// Create missing queues (default true); false requires them to exist.
    pub create: bool,
}

impl SqsConfig {
    /// Parses `sqs://?region=R&endpoint=URL&prefix=NAME&create=BOOL`.
    pub fn from_url(url: &str) -> Result<Self> {
        let bad = |reason: String| Error::invalid_url(url, reason);
        let parsed = conveyor_core::parse_url(url)?;
        if parsed.scheme() != "sqs" {
            return Err(bad(format!("expected sqs://, got {}://", parsed.scheme())));
        }
        let mut cfg = SqsConfig { region: String::new(), endpoint: None, prefix: "conveyor".into(), create: true };
        for (k, v) in parsed.query_pairs() {
            match &*k {
                "region" => cfg.region = v.into_owned(),
                "endpoint" => cfg.endpoint = Some(v.into_owned()),
                "prefix" => cfg.prefix = v.into_owned(),
                "create" => cfg.create = v.parse().map_err(|_| bad(format!("create `{v}` is not true or false")))?,
                other => {
                    return Err(bad(format!("unknown parameter `{other}` (known: region, endpoint, prefix, create)")))
                }
            }
        }
        if cfg.region.is_empty() {
            cfg.region =
                std::env::var("AWS_REGION").map_err(|_| bad("no region: add ?region=… or set AWS_REGION".into()))?;
        }
        conveyor_core::check_prefix(&cfg.prefix).map_err(bad)?;
        // SQS queue names take no `.` (but in `.fifo`) nor `:`.
        if !cfg.prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(bad(format!("prefix `{}` must be letters, digits, - or _ on SQS", cfg.prefix)));
        }
        Ok(cfg)
    }
}
