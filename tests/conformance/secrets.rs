//! Passwords in URLs never show in errors or `Debug` output, and a connection error names the
//! host and port it tried, and why (refused credentials, something else on the port).

use conveyor::Error;

const SECRET: &str = "S3cretPw";

fn no_leak(what: &str, e: &Error) {
    for text in [e.to_string(), format!("{e:?}")] {
        assert!(!text.contains(SECRET), "{what}: the password shows in `{text}`");
    }
}

#[tokio::test]
async fn bad_urls_never_show_their_password() {
    let mut urls = vec!["memory://u:S3cretPw@x", "memory://u:S3cretPw@x?token=S3cretPw"];
    if cfg!(feature = "redis") {
        urls.extend(["redis://:S3cretPw@127.0.0.1:1/?archive_limit=ten", "redis://u:S3cretPw@127.0.0.1:1/?prefx=a"]);
    }
    if cfg!(feature = "amqp") {
        urls.extend(["amqp://u:S3cretPw@127.0.0.1:1/%2f?prefetch=0", "amqps://u:S3cretP/w@127.0.0.1:1/?prefx=1"]);
    }
    if cfg!(feature = "sqs") {
        urls.push("sqs://u:S3cretPw@h/?region=us-east-1&prefx=a");
    }
    for url in urls {
        let e = conveyor::broker(url).await.err().unwrap_or_else(|| panic!("{url} accepted"));
        assert!(matches!(e, Error::InvalidUrl { .. }), "{url}: {e}");
        no_leak(url, &e);
    }
    if cfg!(feature = "redis") {
        let url = "redis://:S3cretPw@127.0.0.1:1/?prefix={a}";
        no_leak(url, &conveyor::backend(url).await.err().expect("refused"));
    }
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_connection_errors_say_where_and_hide_the_password() {
    let e = conveyor::broker("redis://:S3cretPw@127.0.0.1:1/").await.err().expect("nothing listens on port 1");
    assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
    assert!(e.is_transient(), "a refused connection is worth trying again: {e}");
    no_leak("broker", &e);
    let e = conveyor::backend("redis://:S3cretPw@127.0.0.1:1/").await.err().expect("nothing listens on port 1");
    assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
    no_leak("backend", &e);
    let cfg = conveyor::redis::RedisConfig::from_url("redis://:S3cretPw@127.0.0.1:1/?prefix=a").unwrap();
    assert!(!format!("{cfg:?}").contains(SECRET), "{cfg:?}");
}

/// A server that needs a password, reached without one or with a wrong one: a clear
/// authentication error at connect (it used to connect, and fail every later call with
/// `NOAUTH` or a broken pipe while the worker logged `receive failed` forever).
#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_that_needs_a_password_says_so_at_connect() {
    let (_server, url) = crate::redis_faults::own_server(6394, "auth");
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("CONFIG").arg("SET").arg("requirepass").arg(SECRET).query_async::<()>(&mut conn).await.unwrap();
    let port = url.rsplit(':').next().unwrap().to_owned();
    let without = conveyor::broker(&url).await.err();
    let wrong = conveyor::backend(&format!("redis://:wrong{SECRET}@127.0.0.1:{port}")).await.err();
    let right =
        conveyor::broker(&format!("redis://:{SECRET}@127.0.0.1:{port}/?prefix=auth")).await.map(|b| b.describe());
    // Back to no password before asserting, so that the server stops cleanly whatever happens.
    redis::cmd("AUTH").arg(SECRET).query_async::<()>(&mut conn).await.unwrap();
    redis::cmd("CONFIG").arg("SET").arg("requirepass").arg("").query_async::<()>(&mut conn).await.unwrap();
    for (what, e) in [("no password", without), ("wrong password", wrong)] {
        let e = e.unwrap_or_else(|| panic!("{what}: the connect must fail"));
        assert!(e.to_string().contains("refused the credentials") && e.to_string().contains(&port), "{what}: {e}");
        no_leak(what, &e);
    }
    // What the worker's start line shows of it.
    let shown = right.expect("the right password connects");
    assert!(shown.contains(&port) && shown.contains("auth") && !shown.contains(SECRET), "{shown}");
}

/// Something else than Redis on the port (here RabbitMQ) is named as such.
#[cfg(all(feature = "redis", feature = "amqp"))]
#[tokio::test]
async fn redis_url_pointing_at_another_server_says_so() {
    let amqp = url::Url::parse(&crate::amqp::url()).unwrap();
    let url = format!("redis://127.0.0.1:{}", amqp.port().unwrap());
    let e = conveyor::broker(&url).await.err().expect("RabbitMQ is not Redis");
    assert!(e.to_string().contains("does not answer as Redis does"), "{e}");
}

#[cfg(feature = "amqp")]
#[tokio::test]
async fn amqp_errors_say_where_and_hide_the_password() {
    let e = conveyor::broker("amqp://u:S3cretPw@127.0.0.1:1/%2f").await.err().expect("nothing listens on port 1");
    assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
    no_leak("refused", &e);
    let amqp = url::Url::parse(&crate::amqp::url()).unwrap();
    let wrong = format!("amqp://guest:wrong{SECRET}@127.0.0.1:{}/%2f", amqp.port().unwrap());
    let e = conveyor::broker(&wrong).await.err().expect("a wrong password is refused");
    assert!(e.to_string().contains("refused the credentials"), "{e}");
    no_leak("wrong password", &e);
}
