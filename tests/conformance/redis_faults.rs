//! Fault tests against the real Redis server: a worker killed mid-task, Redis restarted
//! mid-run, garbage where a task should be, a structure key of the wrong type, scripts flushed,
//! a stream replaced without its consumer group.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conveyor::memory::MemoryBackend;
use conveyor::{Client, Payload, Request, TaskState, Worker};

use crate::faults::{message, ok};
use crate::suite::{eventually, Running};

fn url_with_prefix(base: &str) -> String {
    format!("{}/?prefix=f{}", base.trim_end_matches('/'), uuid::Uuid::new_v4().simple())
}

/// A fault test's world: a broker in a key namespace of its own on `server`, an in-memory
/// result backend, a client, and a plain connection for writing into the broker's keys.
pub(crate) struct Setup {
    pub(crate) prefix: String,
    pub(crate) broker: Arc<dyn conveyor::Broker>,
    pub(crate) backend: Arc<MemoryBackend>,
    pub(crate) client: Client,
    pub(crate) conn: redis::aio::MultiplexedConnection,
}

impl Setup {
    pub(crate) async fn new(server: &str) -> Self {
        let url = url_with_prefix(server);
        let prefix = url.rsplit("prefix=").next().unwrap().to_owned();
        let broker = conveyor::broker(&url).await.unwrap();
        let backend = Arc::new(MemoryBackend::new());
        let client = Client::new(broker.clone(), backend.clone());
        let conn = redis::Client::open(server).unwrap().get_multiplexed_async_connection().await.unwrap();
        Setup { prefix, broker, backend, client, conn }
    }
}

/// The Redis key `name` of `queue` in the namespace `prefix`.
pub(crate) fn queue_key(prefix: &str, queue: &str, name: &str) -> String {
    format!("{prefix}:{{{prefix}:{queue}}}:{name}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_task_outliving_its_lease_runs_once() {
    crate::faults::long_task_runs_once(&url_with_prefix(&crate::redis::url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_mid_task_is_redelivered_and_completes_once() {
    crate::faults::worker_killed_mid_task(&url_with_prefix(&crate::redis::url())).await;
}

/// Runs `scripts/redis` for the restart test's own server.
fn redis_script(action: &str, port: u16, dir: &str) {
    let status = Command::new("scripts/redis")
        .arg(action)
        .env("CONVEYOR_REDIS_PORT", port.to_string())
        .env("CONVEYOR_REDIS_DIR", dir)
        .env("CONVEYOR_REDIS_FSYNC", "always")
        .status()
        .expect("scripts/redis runs");
    assert!(status.success(), "scripts/redis {action} failed");
}

/// Stops the test's own server when dropped, also when the test fails.
struct Stop(u16, String);

impl Drop for Stop {
    fn drop(&mut self) {
        redis_script("stop", self.0, &self.1);
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_mid_run_loses_no_accepted_task() {
    let port = 6391;
    let dir = format!("/tmp/conveyor-redis-restart-{}", std::process::id());
    redis_script("start", port, &dir);
    let _stop = Stop(port, dir.clone());
    let url = url_with_prefix(&format!("redis://127.0.0.1:{port}"));
    let d = dir.clone();
    crate::faults::broker_restart_mid_run(&url, move || redis_script("restart", port, &d)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_where_a_task_should_be_is_archived() {
    let Setup { prefix, broker, backend, client, mut conn } = Setup::new(&crate::redis::url()).await;
    // Something else wrote into the queue's stream: an entry with a payload that is not a
    // task, and one with no task fields at all.
    let stream = queue_key(&prefix, "garbage", "s0");
    let a = client.enqueue_message(message("fault:count", "garbage")).await.unwrap();
    redis::cmd("XADD").arg(&stream).arg("*").arg("m").arg("{not json").query_async::<()>(&mut conn).await.unwrap();
    redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("junk")
        .arg("\u{0}garbage")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    // And overwrote a scheduled task's key with something that is not a task hash.
    let mut later = message("fault:count", "garbage");
    later.eta = Some(std::time::SystemTime::now() + Duration::from_millis(300));
    let b = client.enqueue_message(later).await.unwrap();
    let key = queue_key(&prefix, "garbage", &format!("t:{}", b.id));
    redis::cmd("SET").arg(&key).arg("\u{0}garbage").query_async::<()>(&mut conn).await.unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let w = Running::start(
        Worker::builder(broker.clone(), backend.clone())
            .register_handler("fault:count", move |_req: Request| {
                r.fetch_add(1, Ordering::SeqCst);
                async { ok() }
            })
            .queue("garbage", 1),
    );
    eventually(Duration::from_secs(10), "all three archived", || async {
        broker.stats("garbage").await.unwrap().archived == 3
    })
    .await;
    // The real task around them ran.
    assert_eq!(client.wait(&a.id, Duration::from_secs(10)).await.unwrap().state, TaskState::Completed);
    let archived = broker.admin().unwrap().archived("garbage", 0, 10).await.unwrap();
    for a in &archived {
        assert!(a.reason.starts_with("undecodable payload"), "{}", a.reason);
        assert!(matches!(a.payload, Payload::Undecodable { .. }));
    }
    // The worker goes on.
    let c = client.enqueue_message(message("fault:count", "garbage")).await.unwrap();
    assert_eq!(client.wait(&c.id, Duration::from_secs(10)).await.unwrap().state, TaskState::Completed);
    assert_eq!(ran.load(Ordering::SeqCst), 2);
    w.stop().await;
}

/// A queue structure key holding the wrong type makes claims fail with a clear error, before
/// any write: no task is lost, and consuming resumes once the key is repaired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_type_structure_key_loses_nothing() {
    let Setup { prefix, broker, backend, client, mut conn } = Setup::new(&crate::redis::url()).await;
    let delayed = queue_key(&prefix, "broken", "delayed");
    redis::cmd("SET").arg(&delayed).arg("oops").query_async::<()>(&mut conn).await.unwrap();
    let rec = client.enqueue_message(message("fault:count", "broken")).await.unwrap();
    let stop = conveyor::CancellationToken::new();
    let req = conveyor::ReceiveRequest {
        queues: &["broken"],
        max: 10,
        wait: Duration::from_millis(100),
        lease: Duration::from_secs(30),
        stop: &stop,
    };
    let err = broker.receive(&req).await.unwrap_err();
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");
    redis::cmd("DEL").arg(&delayed).query_async::<()>(&mut conn).await.unwrap();
    assert_eq!(broker.stats("broken").await.unwrap().pending, 1, "nothing removed by the failed claim");
    let w = Running::start(
        Worker::builder(broker.clone(), backend.clone())
            .register_handler("fault:count", |_req: Request| async { ok() })
            .queue("broken", 1),
    );
    assert_eq!(client.wait(&rec.id, Duration::from_secs(10)).await.unwrap().state, TaskState::Completed);
    w.stop().await;
}

/// Redis forgetting its scripts (`SCRIPT FLUSH`, or a restart that keeps the connections'
/// peers) while a worker waits: the worker loads them again and goes on consuming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_flushed_while_waiting_are_loaded_again() {
    // A server of its own: flushing the shared one's scripts would disturb the other tests.
    let port = 6392;
    let dir = format!("/tmp/conveyor-redis-flush-{}", std::process::id());
    redis_script("start", port, &dir);
    let _stop = Stop(port, dir.clone());
    let Setup { broker, backend, client, mut conn, .. } = Setup::new(&format!("redis://127.0.0.1:{port}")).await;
    let w = Running::start(
        Worker::builder(broker.clone(), backend.clone())
            .register_handler("fault:count", |_req: Request| async { ok() })
            .queue("flushed", 1),
    );
    for round in 0..3 {
        let rec = client.enqueue_message(message("fault:count", "flushed")).await.unwrap();
        let state = client.wait(&rec.id, Duration::from_secs(10)).await.unwrap().state;
        assert_eq!(state, TaskState::Completed, "round {round}");
        // The worker is waiting (with a claim pipelined behind its wait) when the scripts go.
        tokio::time::sleep(Duration::from_millis(100)).await;
        redis::cmd("SCRIPT").arg("FLUSH").query_async::<()>(&mut conn).await.unwrap();
    }
    let rec = client.enqueue_message(message("fault:count", "flushed")).await.unwrap();
    assert_eq!(client.wait(&rec.id, Duration::from_secs(10)).await.unwrap().state, TaskState::Completed);
    w.stop().await;
}

/// A queue's stream replaced by something else (deleted, then written without the consumer
/// group): the next claim gives it its group back, archives the foreign entry and runs the rest.
/// Both before a worker starts and under a running worker that reads the stream plainly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_stream_gets_its_group_back() {
    let Setup { prefix, broker, backend, client, mut conn } = Setup::new(&crate::redis::url()).await;
    let stream = queue_key(&prefix, "regrouped", "s0");
    // The foreign entry's field name is what it is archived under.
    let replace = |mut conn: redis::aio::MultiplexedConnection, key: String, junk: &'static str| async move {
        redis::cmd("DEL").arg(&key).query_async::<()>(&mut conn).await.unwrap();
        redis::cmd("XADD").arg(&key).arg("*").arg(junk).arg("x").query_async::<()>(&mut conn).await.unwrap();
    };
    client.enqueue_message(message("fault:count", "regrouped")).await.unwrap();
    replace(conn.clone(), stream.clone(), "junk-1").await;
    let rec = client.enqueue_message(message("fault:count", "regrouped")).await.unwrap();
    let w = Running::start(
        Worker::builder(broker.clone(), backend.clone())
            .register_handler("fault:count", |_req: Request| async { ok() })
            .queue("regrouped", 1),
    );
    assert_eq!(client.wait(&rec.id, Duration::from_secs(10)).await.unwrap().state, TaskState::Completed);
    eventually(Duration::from_secs(10), "the foreign entry archived", || async {
        broker.stats("regrouped").await.unwrap().archived == 1
    })
    .await;
    // Again, under the running worker (now reading the one stream without the script).
    let warm = client.enqueue_message(message("fault:count", "regrouped")).await.unwrap();
    assert_eq!(client.wait(&warm.id, Duration::from_secs(10)).await.unwrap().state, TaskState::Completed);
    tokio::time::sleep(Duration::from_millis(100)).await;
    replace(conn.clone(), stream.clone(), "junk-2").await;
    let rec = client.enqueue_message(message("fault:count", "regrouped")).await.unwrap();
    assert_eq!(client.wait(&rec.id, Duration::from_secs(10)).await.unwrap().state, TaskState::Completed);
    eventually(Duration::from_secs(10), "the second foreign entry archived", || async {
        broker.stats("regrouped").await.unwrap().archived == 2
    })
    .await;
    redis::cmd("PING").query_async::<()>(&mut conn).await.unwrap();
    w.stop().await;
}

/// A batch publish where one queue's key holds the wrong type: that task fails with the
/// reason, the others are stored and run (each task of a pipeline gets its own answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_publish_with_one_broken_queue_stores_the_rest() {
    let Setup { prefix, broker, backend, client, mut conn } = Setup::new(&crate::redis::url()).await;
    let ids = queue_key(&prefix, "broken-batch", "ids");
    redis::cmd("SET").arg(&ids).arg("oops").query_async::<()>(&mut conn).await.unwrap();
    let batch = vec![
        message("fault:count", "whole-batch"),
        message("fault:count", "broken-batch"),
        message("fault:count", "whole-batch"),
    ];
    let results = client.enqueue_messages(&batch).await;
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    let err = results[1].as_ref().unwrap_err();
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");
    // The failed task's record is gone, so its id is free to send again.
    assert!(client.get(&batch[1].id).await.unwrap().is_none());
    let w = Running::start(
        Worker::builder(broker.clone(), backend.clone())
            .register_handler("fault:count", |_req: Request| async { ok() })
            .queue("whole-batch", 1),
    );
    for t in [&batch[0], &batch[2]] {
        assert_eq!(client.wait(&t.id, Duration::from_secs(10)).await.unwrap().state, TaskState::Completed);
    }
    w.stop().await;
}
