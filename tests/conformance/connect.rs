//! Choosing brokers and backends by URL.

use conveyor::Error;

#[tokio::test]
async fn memory_urls_share_instances_by_name() {
    use conveyor::{Client, TaskMessage};
    let b1 = conveyor::broker("memory://connect-test").await.unwrap();
    let b2 = conveyor::broker("memory://connect-test").await.unwrap();
    let be = conveyor::backend("memory://connect-test").await.unwrap();
    let mut m = TaskMessage::with_args("x", &1).unwrap();
    m.queue = "connect-q".into();
    Client::new(b1, be).enqueue_message(m).await.unwrap();
    assert_eq!(b2.stats("connect-q").await.unwrap().pending, 1);
}

#[tokio::test]
async fn unknown_and_uncompiled_schemes_are_typed_errors() {
    let e = conveyor::broker("kafka://localhost:9092").await.err().unwrap();
    assert!(matches!(&e, Error::UnknownScheme { scheme, kind: "broker", .. } if scheme == "kafka"), "{e}");
    #[cfg(not(feature = "redis"))]
    {
        let e = conveyor::broker("redis://127.0.0.1:6379").await.err().unwrap();
        assert!(matches!(e, Error::FeatureNotEnabled { feature: "redis", .. }), "{e}");
        let e = conveyor::backend("redis://x").await.err().unwrap();
        assert!(matches!(e, Error::FeatureNotEnabled { feature: "redis", kind: "backend", .. }), "{e}");
    }
    #[cfg(not(feature = "amqp"))]
    {
        let e = conveyor::broker("amqp://127.0.0.1").await.err().unwrap();
        assert!(matches!(e, Error::FeatureNotEnabled { feature: "amqp", .. }), "{e}");
    }
    #[cfg(not(feature = "sqs"))]
    for (url, feature) in [("sqs://?region=us-east-1", "sqs")] {
        let e = conveyor::broker(url).await.err().unwrap();
        assert!(matches!(&e, Error::FeatureNotEnabled { feature: f, .. } if *f == feature), "{url}: {e}");
        assert!(e.to_string().contains(&format!("`{feature}` feature")), "{e}");
    }
    let e = conveyor::backend("amqp://x").await.err().unwrap();
    assert!(matches!(e, Error::UnknownScheme { kind: "backend", .. }), "{e}");
}

#[tokio::test]
async fn malformed_urls_are_typed_errors() {
    for url in ["not a url", "", "memory://a/b", "memory://x?lease=1s"] {
        let e = conveyor::broker(url).await.err().unwrap_or_else(|| panic!("{url:?} accepted"));
        assert!(matches!(e, Error::InvalidUrl { .. }), "{url:?}: {e}");
    }
}

#[tokio::test]
async fn env_var_selects_the_broker() {
    // Only this test touches the variables.
    std::env::set_var(conveyor::BROKER_ENV, "kafka://x");
    let e = conveyor::broker_from_env().await.err().unwrap();
    assert!(matches!(e, Error::UnknownScheme { .. }), "{e}");
    std::env::set_var(conveyor::BROKER_ENV, "memory://env-test");
    assert_eq!(conveyor::broker_from_env().await.unwrap().kind(), "memory");
    // The backend follows the broker: the in-memory one here.
    assert_eq!(conveyor::backend_from_env().await.unwrap().kind(), "memory");
    // A broker that keeps no results needs CONVEYOR_BACKEND.
    std::env::set_var(conveyor::BROKER_ENV, "amqp://127.0.0.1:1");
    let e = conveyor::backend_from_env().await.err().unwrap();
    assert!(e.to_string().contains("CONVEYOR_BACKEND is not set"), "{e}");
    let e = conveyor::backend_from_env_or("memory://").await.err().unwrap();
    assert!(e.to_string().contains("CONVEYOR_BACKEND is not set"), "{e}");
    std::env::set_var(conveyor::BACKEND_ENV, "memory://env-test");
    assert_eq!(conveyor::backend_from_env().await.unwrap().kind(), "memory");
    std::env::remove_var(conveyor::BACKEND_ENV);
    // Unset: never a silent fallback to this process.
    std::env::remove_var(conveyor::BROKER_ENV);
    let e = conveyor::broker_from_env().await.err().unwrap();
    assert!(e.to_string().contains("CONVEYOR_BROKER is not set"), "{e}");
    assert!(conveyor::backend_from_env().await.err().unwrap().to_string().contains("CONVEYOR_BACKEND"));
    assert_eq!(conveyor::broker_from_env_or("memory://").await.unwrap().kind(), "memory");
    assert_eq!(conveyor::backend_from_env_or("memory://").await.unwrap().kind(), "memory");
}

/// A typo in a parameter is an error naming the known ones (it used to be passed on to the
/// driver, which ignored it: `?prefx=shop` sent tasks to another namespace than the worker's),
/// and a broker and its backend accept and refuse the same prefixes.
#[tokio::test]
async fn unknown_url_parameters_and_bad_prefixes_are_refused() {
    let expect_invalid = |what: &str, r: conveyor::Result<()>, needle: &str| {
        let e = r.err().unwrap_or_else(|| panic!("{what} accepted"));
        assert!(matches!(e, Error::InvalidUrl { .. }) && e.to_string().contains(needle), "{what}: {e}");
    };
    #[cfg(feature = "redis")]
    for url in ["redis://127.0.0.1:1/?prefx=shop", "redis://127.0.0.1:1/?prefix={shop}"] {
        let needle =
            if url.contains("prefx") { "unknown parameter `prefx` (known: prefix," } else { "prefix `{shop}`" };
        expect_invalid(url, conveyor::broker(url).await.map(drop), needle);
        expect_invalid(url, conveyor::backend(url).await.map(drop), needle);
    }
    #[cfg(feature = "amqp")]
    for (url, needle) in [
        ("amqp://127.0.0.1:1/?prefx=shop", "unknown parameter `prefx`"),
        ("amqp://127.0.0.1:1/?prefix=a%20b", "prefix `a b`"),
    ] {
        expect_invalid(url, conveyor::broker(url).await.map(drop), needle);
    }
    #[cfg(feature = "sqs")]
    expect_invalid(
        "sqs",
        conveyor::broker("sqs://?region=us-east-1&prefx=shop").await.map(drop),
        "unknown parameter `prefx`",
    );
}
