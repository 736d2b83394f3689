//! Unique tasks and result retention.

use std::time::Duration;

use conveyor::{Error, TaskState, UniqueRelease};

use super::tasks::{probe, Probe};
use super::{Env, Running};

const WAIT: Duration = Duration::from_secs(10);

pub async fn duplicate_names_the_holder(env: Env) {
    let q = env.q("unique");
    let client = env.client();
    let first = client.task(probe, Probe::new(&q)).queue(&q).unique(Duration::from_secs(60)).await.unwrap();
    let err = client.task(probe, Probe::new(&q)).queue(&q).unique(Duration::from_secs(60)).await.unwrap_err();
    assert!(matches!(&err, Error::DuplicateUnique { holder, .. } if holder == first.id().as_str()), "{err}");
    // Other arguments are another task; an explicit key makes them the same.
    let other = Probe::new(format!("{q}-other"));
    client.task(probe, other.clone()).queue(&q).unique(Duration::from_secs(60)).await.unwrap();
    let k = client.task(probe, Probe::new(&q)).queue(&q).unique(Duration::from_secs(60)).unique_key(&q).await.unwrap();
    let err = client.task(probe, other).queue(&q).unique(Duration::from_secs(60)).unique_key(&q).await.unwrap_err();
    assert!(matches!(&err, Error::DuplicateUnique { holder, .. } if holder == k.id().as_str()), "{err}");
    assert_eq!(env.broker.stats(&q).await.unwrap().pending, 3);
    // A unique key without a TTL is refused at build.
    let err = client.task(probe, Probe::new(&q)).queue(&q).unique_key("x").await.unwrap_err();
    assert!(matches!(err, Error::InvalidOption { option: "unique_key", .. }), "{err}");
}

pub async fn release_policies(env: Env) {
    let q = env.q("unique-rel");
    let client = env.client();
    let w = Running::start(env.worker().queue(&q, 1));
    let ttl = Duration::from_secs(60);
    let send = |key: &str, fail: bool, when: UniqueRelease| {
        let p = Probe { fail_times: u32::from(fail), skip_retry: true, ..Probe::new(format!("{q}-{key}")) };
        client.task(probe, p).queue(&q).unique(ttl).unique_key(format!("{q}-{key}")).unique_release(when)
    };
    // On success (default): released when it succeeds, kept when it fails.
    send("ok", false, UniqueRelease::OnSuccess).await.unwrap().get(WAIT).await.unwrap();
    send("ok", false, UniqueRelease::OnSuccess).await.expect("released after success");
    let h = send("bad", true, UniqueRelease::OnSuccess).await.unwrap();
    assert!(h.get(WAIT).await.is_err());
    assert!(send("bad", true, UniqueRelease::OnSuccess).await.unwrap_err().is_duplicate(), "kept after failure");
    // On completion: released after a failure too.
    let h = send("any", true, UniqueRelease::OnCompletion).await.unwrap();
    assert!(h.get(WAIT).await.is_err());
    send("any", true, UniqueRelease::OnCompletion).await.expect("released after archive");
    // On expiry: held after success.
    send("ttl", false, UniqueRelease::OnExpiry).await.unwrap().get(WAIT).await.unwrap();
    assert!(send("ttl", false, UniqueRelease::OnExpiry).await.unwrap_err().is_duplicate(), "held until the TTL");
    w.stop().await;
}

pub async fn retention_of_results(env: Env) {
    let q = env.q("retention");
    let client = env.client();
    let w = Running::start(env.worker().queue(&q, 1));
    let kept = client.task(probe, Probe::new(&q)).queue(&q).await.unwrap();
    kept.get(WAIT).await.unwrap();
    let gone = client.task(probe, Probe::new(format!("{q}-0"))).queue(&q).retention(Duration::ZERO).await.unwrap();
    super::eventually(WAIT, "the task done", || async { super::tasks::log(&format!("{q}-0")).finished == 1 }).await;
    super::eventually(WAIT, "the record deleted", || async { client.get(gone.id()).await.unwrap().is_none() }).await;
    let short =
        client.task(probe, Probe::new(format!("{q}-1"))).queue(&q).retention(Duration::from_millis(300)).await.unwrap();
    short.get(WAIT).await.unwrap();
    assert_eq!(kept.status().await.unwrap().state, TaskState::Completed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(client.get(short.id()).await.unwrap().is_none(), "expired after its retention");
    assert!(client.get(kept.id()).await.unwrap().is_some(), "kept for the default retention");
    w.stop().await;
}

/// The lock is not released by a same-id duplicate, nor by a retry; batches honour it; with
/// `OnExpiry` it goes when its TTL does.
pub async fn lock_edges(env: Env) {
    let q = env.q("unique-edges");
    let client = env.client();
    let ttl = Duration::from_secs(60);
    let id = format!("{q}-fixed");
    client.task(probe, Probe::new(&q)).queue(&q).task_id(id.as_str()).unique(ttl).await.unwrap();
    let err = client.task(probe, Probe::new(&q)).queue(&q).task_id(id.as_str()).unique(ttl).await.unwrap_err();
    assert!(matches!(err, Error::DuplicateTask { .. }), "{err}");
    let err = client.task(probe, Probe::new(&q)).queue(&q).unique(ttl).await.unwrap_err();
    assert!(matches!(&err, Error::DuplicateUnique { holder, .. } if *holder == id), "still held: {err}");
    // Batches: the second copy of a unique task is refused.
    let b = |n: &str| client.task(probe, Probe::new(format!("{q}-{n}"))).queue(&q).unique(ttl).build().unwrap();
    let results = client.enqueue_messages(&[b("x"), b("x"), b("y")]).await;
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    assert!(matches!(results[1], Err(Error::DuplicateUnique { .. })), "{results:?}");
    // A retry keeps the lock.
    let w = Running::start(env.worker().queue(&q, 1));
    let r = Probe { fail_times: 1, retry_after_ms: Some(800), ..Probe::new(format!("{q}-retry")) };
    let h = client.task(probe, r.clone()).queue(&q).unique(ttl).await.unwrap();
    super::eventually(WAIT, "first attempt failed", || async {
        super::tasks::log(&format!("{q}-retry")).finished == 1
    })
    .await;
    assert!(client.task(probe, r.clone()).queue(&q).unique(ttl).await.unwrap_err().is_duplicate());
    h.get(WAIT).await.unwrap();
    client.task(probe, r).queue(&q).unique(ttl).await.expect("released after success");
    // OnExpiry: free again once the TTL has passed.
    let e = || {
        client
            .task(probe, Probe::new(format!("{q}-exp")))
            .queue(&q)
            .unique(Duration::from_millis(500))
            .unique_release(UniqueRelease::OnExpiry)
    };
    e().await.unwrap().get(WAIT).await.unwrap();
    assert!(e().await.unwrap_err().is_duplicate());
    tokio::time::sleep(Duration::from_millis(700)).await;
    e().await.expect("free after the TTL");
    w.stop().await;
}
