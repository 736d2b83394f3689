//! Production credentials: a Redis ACL user limited to its application's keys, and a RabbitMQ
//! user on a vhost of its own. Tasks run through them (behaviours of the suite), and a wrong
//! password is a clear error that never shows the password.

use std::process::Command;
use std::sync::Arc;

use conveyor::memory::MemoryBackend;

use crate::suite::Env;

const PASSWORD: &str = "S3cret-app-pw";

fn no_leak(e: &conveyor::Error) {
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains(PASSWORD), "the password leaked: {shown}");
}

/// A Redis ACL user that may touch only the keys of its prefix (`~prefix:*`), with the
/// commands Conveyor needs (`+@all -@dangerous`: no `CONFIG`, `FLUSHALL`, `KEYS`…).
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_acl_user_limited_to_its_prefix() {
    let base = crate::redis::url();
    let prefix = format!("acl{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let user = format!("app-{prefix}");
    let admin = redis::Client::open(base.as_str()).unwrap();
    let mut conn = admin.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg("on")
        .arg(format!(">{PASSWORD}"))
        .arg(format!("~{prefix}:*"))
        .arg("+@all")
        .arg("-@dangerous")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let hostport = base.trim_start_matches("redis://").trim_end_matches('/').to_owned();
    let url = format!("redis://{user}:{PASSWORD}@{hostport}/?prefix={prefix}&list_completed=true");
    let env = async || {
        let broker = conveyor::broker(&url).await.unwrap_or_else(|e| panic!("the ACL user connects: {e}"));
        Env::new(broker, conveyor::backend(&url).await.unwrap())
    };
    crate::suite::basic::publish_receive_ack(env().await).await;
    crate::suite::basic::results_and_states(env().await).await;
    crate::suite::inspect::archived_task_runs_again_and_completes(env().await).await;
    // Its keys are the only ones it may touch: another prefix is refused by Redis.
    let other = format!("redis://{user}:{PASSWORD}@{hostport}/?prefix=not{prefix}");
    let refused = async {
        let b = conveyor::broker(&other).await?;
        let m = conveyor::TaskMessage::with_args("x", &()).unwrap();
        b.publish(&m).await
    };
    let e = refused.await.expect_err("keys outside its pattern are refused");
    assert!(e.to_string().to_lowercase().contains("permission") || e.to_string().contains("NOPERM"), "{e}");
    let wrong = format!("redis://{user}:wrong{PASSWORD}@{hostport}/?prefix={prefix}");
    let e = conveyor::broker(&wrong).await.err().expect("a wrong password is refused at connect");
    assert!(e.to_string().contains("refused the credentials"), "{e}");
    no_leak(&e);
    redis::cmd("ACL").arg("DELUSER").arg(&user).query_async::<()>(&mut conn).await.unwrap();
}

/// A RabbitMQ user with rights on its own vhost only (`scripts/rabbitmq user`).
#[cfg(feature = "amqp")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_user_on_its_own_vhost() {
    let base = url::Url::parse(&crate::amqp::url()).unwrap();
    let port = base.port().unwrap();
    let status = Command::new("scripts/rabbitmq")
        .args(["user", "conveyor-app", PASSWORD, "conveyor-app"])
        .env("CONVEYOR_AMQP_PORT", port.to_string())
        .status()
        .expect("scripts/rabbitmq runs");
    assert!(status.success(), "scripts/rabbitmq user failed");
    let prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    let url = format!("amqp://conveyor-app:{PASSWORD}@127.0.0.1:{port}/conveyor-app?prefix={prefix}");
    let broker = conveyor::broker(&url).await.unwrap_or_else(|e| panic!("the vhost's user connects: {e}"));
    assert!(!broker.describe().contains(PASSWORD), "{}", broker.describe());
    crate::suite::basic::publish_receive_ack(Env::new(broker, Arc::new(MemoryBackend::new()))).await;
    // The default vhost is not its own.
    let elsewhere = format!("amqp://conveyor-app:{PASSWORD}@127.0.0.1:{port}/%2f?prefix={prefix}");
    let e = conveyor::broker(&elsewhere).await.err().expect("no rights on another vhost");
    no_leak(&e);
    let wrong = format!("amqp://conveyor-app:wrong{PASSWORD}@127.0.0.1:{port}/conveyor-app");
    let e = conveyor::broker(&wrong).await.err().expect("a wrong password is refused");
    assert!(e.to_string().contains("refused the credentials"), "{e}");
    no_leak(&e);
}
