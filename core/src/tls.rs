//! TLS settings in a broker's or result backend's URL: `tls_ca=PATH` (the CA that signed the
//! server's certificate, PEM), `tls_cert=PATH` and `tls_key=PATH` (a client certificate and its
//! key, PEM, for servers that ask for one), and `tls_insecure_skip_verify=true` (accept any
//! server certificate: for tests only, never in production). The files are read when the URL
//! is parsed, so a missing one is an error naming it at once.

use crate::error::{Error, Result};

/// The URL parameters this module reads.
pub const TLS_PARAMS: &str = "tls_ca, tls_cert, tls_key, tls_insecure_skip_verify";

/// TLS settings read from a URL (see the [module docs](self)).
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsFiles {
    /// The CA certificate(s) to trust, PEM; `None`: the system's roots.
    pub ca: Option<Vec<u8>>,
    /// The client certificate, PEM.
    pub cert: Option<Vec<u8>>,
    /// The client certificate's key, PEM.
    pub key: Option<Vec<u8>>,
    /// Accept any server certificate (tests only).
    pub insecure_skip_verify: bool,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("TlsFiles")
            .field("ca", &self.ca.as_ref().map(|c| c.len()))
            .field("cert", &self.cert.as_ref().map(|c| c.len()))
            .field("key", &self.key.as_ref().map(|_| "…"))
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .finish()
    }
}

impl TlsFiles {
    /// Takes URL parameter `key` = `value` if it is one of [`TLS_PARAMS`]: true if it was.
    /// `url` names the URL in errors.
    pub fn take(&mut self, url: &str, key: &str, value: &str) -> Result<bool> {
        let read = |what: &str| {
            std::fs::read(value).map_err(|e| Error::invalid_url(url, format!("cannot read {what} `{value}`: {e}")))
        };
        match key {
            "tls_ca" => self.ca = Some(read("tls_ca")?),
            "tls_cert" => self.cert = Some(read("tls_cert")?),
            "tls_key" => self.key = Some(read("tls_key")?),
            "tls_insecure_skip_verify" => {
                self.insecure_skip_verify = match value {
                    "true" => true,
                    "false" => false,
                    other => {
                        let reason = format!("tls_insecure_skip_verify `{other}` must be true or false");
                        return Err(Error::invalid_url(url, reason));
                    }
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Whether any parameter was given.
    pub fn any(&self) -> bool {
        *self != TlsFiles::default()
    }

    /// Checks the settings against the URL's scheme: `tls` (`rediss`, `amqps`) or not, and
    /// whether TLS is compiled in (`feature` names the feature that adds it).
    pub fn check(&self, url: &str, tls: bool, compiled: bool, feature: &str) -> Result<()> {
        let bad = |reason: String| Err(Error::invalid_url(url, reason));
        if tls && !compiled {
            return bad(format!("a TLS URL needs Conveyor built with the `{feature}` feature"));
        }
        if !tls && self.any() {
            return bad("TLS parameters need a TLS URL (rediss://, amqps://)".into());
        }
        if self.cert.is_some() != self.key.is_some() {
            return bad("tls_cert and tls_key go together".into());
        }
        Ok(())
    }
}
