//! The suite on Redis over TLS (`rediss://`, feature `redis-tls`), against the TLS-only server
//! that `scripts/redis-tls start` runs with certificates made at start
//! (`CONVEYOR_TEST_REDIS_TLS_URL`, default `rediss://127.0.0.1:6398/?tls_ca=…/ca.crt`); and
//! what goes wrong: a wrong CA, no CA (the system's roots), TLS against a plain server. A test
//! that cannot reach the server fails.

use std::time::{Duration, Instant};

use crate::suite::Env;

/// The server's URL, with its CA.
pub fn url() -> String {
    std::env::var("CONVEYOR_TEST_REDIS_TLS_URL")
        .unwrap_or_else(|_| "rediss://127.0.0.1:6398/?tls_ca=/tmp/conveyor-redis-tls-6398/ca.crt".into())
}

/// The directory of the server's certificates (next to its CA).
fn certs() -> String {
    let url = url();
    let ca = url.split("tls_ca=").nth(1).expect("the URL names its CA").split('&').next().unwrap().to_owned();
    ca.rsplit_once('/').map(|(dir, _)| dir.to_owned()).unwrap()
}

async fn env() -> Env {
    let url = format!("{}&prefix=t{}&list_completed=true", url(), uuid::Uuid::new_v4().simple());
    let broker = conveyor::broker(&url)
        .await
        .unwrap_or_else(|e| panic!("TLS Redis at {url} is not reachable ({e}); run scripts/redis-tls start"));
    let backend = conveyor::backend(&url).await.unwrap_or_else(|e| panic!("TLS Redis at {url}: {e}"));
    Env::new(broker, backend)
}

conformance_suite!(env);
inspector_suite!(env);

/// A server certificate the client cannot verify is an error at connect, quickly (no hang),
/// that says what failed; so is TLS against a server that speaks plain Redis.
#[tokio::test]
async fn unverifiable_servers_are_clear_errors_at_connect() {
    let dir = certs();
    let port = url().split(':').nth(2).unwrap().split('/').next().unwrap().to_owned();
    for (what, bad) in [
        ("a wrong CA", format!("rediss://127.0.0.1:{port}/?tls_ca={dir}/wrong-ca.crt")),
        ("the system's roots", format!("rediss://127.0.0.1:{port}/")),
        ("a plain server", format!("rediss://{}/", crate::redis::url().trim_start_matches("redis://"))),
    ] {
        let started = Instant::now();
        let e = conveyor::broker(&bad).await.err().unwrap_or_else(|| panic!("{what}: must fail"));
        // A plain server never answers the handshake: each of the connection's attempts times
        // out (5 s) before the error; the others fail at the handshake.
        let limit = if what == "a plain server" { 30 } else { 5 };
        assert!(started.elapsed() < Duration::from_secs(limit), "{what}: took {:?}", started.elapsed());
        let shown = e.to_string();
        assert!(shown.contains("127.0.0.1"), "{what}: {shown}");
        if what != "a plain server" {
            assert!(shown.contains("invalid peer certificate"), "{what}: {shown}");
            assert!(conveyor::backend(&bad).await.is_err(), "{what}: the backend too");
        }
    }
}

/// A client certificate (mutual TLS), and verification turned off (tests only) work; TLS
/// parameters on a plain URL, or a certificate without its key, are refused by name.
#[tokio::test]
async fn client_certificates_and_bad_tls_parameters() {
    let dir = certs();
    let mtls = format!("{}&tls_cert={dir}/client.crt&tls_key={dir}/client.key&prefix=mtls", url());
    conveyor::broker(&mtls).await.expect("a client certificate signed by the server's CA");
    let port = url().split(':').nth(2).unwrap().split('/').next().unwrap().to_owned();
    let insecure = format!("rediss://127.0.0.1:{port}/?tls_insecure_skip_verify=true");
    conveyor::backend(&insecure).await.expect("verification off accepts any certificate");
    for (bad, says) in [
        (format!("redis://127.0.0.1:{port}/?tls_ca={dir}/ca.crt"), "need a TLS URL"),
        (format!("rediss://127.0.0.1:{port}/?tls_cert={dir}/client.crt"), "go together"),
        ("rediss://127.0.0.1:1/?tls_ca=/nonexistent/ca.crt".to_owned(), "cannot read tls_ca"),
        (format!("rediss://127.0.0.1:{port}/?tls_insecure_skip_verify=yes"), "true or false"),
    ] {
        let e = conveyor::broker(&bad).await.err().unwrap_or_else(|| panic!("{bad}: must be refused"));
        assert!(e.to_string().contains(says), "{bad}: {e}");
    }
}
