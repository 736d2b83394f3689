//! Fault tests against the real Redis server: a worker killed mid-task, Redis restarted
//! mid-run, garbage where a task should be, a structure key of the wrong type, scripts flushed,
//! a stream replaced without its consumer group.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conveyor::broker::Payload;
use conveyor::memory::MemoryBackend;
use conveyor::{Client, Request, TaskState, Worker};

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

/// The wait of the fault tests' claims.
const HALF_SECOND: Duration = Duration::from_millis(500);

/// Claims up to `max` tasks of `queue` as a receiver would, with `lease`, waiting up to `wait`.
pub(crate) async fn receive(
    broker: Arc<dyn conveyor::Broker>,
    queue: &str,
    max: usize,
    lease: Duration,
    wait: Duration,
) -> Vec<conveyor::broker::Delivery> {
    let stop = conveyor::CancellationToken::new();
    let req =
        conveyor::broker::ReceiveRequest { queues: &[queue], max, wait, lease, max_payload: usize::MAX, stop: &stop };
    broker.receive(&req).await.unwrap()
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
pub(crate) struct Stop(u16, String);

/// Starts a server of the test's own on `port` (for faults that would disturb the other tests),
/// its data in a directory named after `name`; returns its guard and URL.
pub(crate) fn own_server(port: u16, name: &str) -> (Stop, String) {
    let dir = format!("/tmp/conveyor-redis-{name}-{}", std::process::id());
    redis_script("start", port, &dir);
    (Stop(port, dir), format!("redis://127.0.0.1:{port}"))
}

impl Drop for Stop {
    fn drop(&mut self) {
        redis_script("stop", self.0, &self.1);
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_mid_run_loses_no_accepted_task() {
    let (server, url) = own_server(6391, "restart");
    let (port, dir) = (server.0, server.1.clone());
    crate::faults::broker_restart_mid_run(&url_with_prefix(&url), move || redis_script("restart", port, &dir)).await;
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
    let req = conveyor::broker::ReceiveRequest {
        queues: &["broken"],
        max: 10,
        wait: Duration::from_millis(100),
        lease: Duration::from_secs(30),
        max_payload: usize::MAX,
        stop: &stop,
    };
    let err = broker.receive(&req).await.unwrap_err();
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");
    // A refusal, not an outage: trying again for 10 s cannot help.
    assert_eq!(err.failure_kind(), Some(conveyor::FailureKind::Rejected), "{err}");
    assert!(!err.is_transient());
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
    let (_server, url) = own_server(6392, "flush");
    let Setup { broker, backend, client, mut conn, .. } = Setup::new(&url).await;
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

/// Redis stalls (a slow script here) right after a task is published, longer than a waiting
/// receiver's margin: the receiver gives up on its wait, but the claim pipelined behind it
/// still runs when Redis comes back and leases the task. That claim's reply is taken in the
/// background and the task handed back at once, not left leased to nobody until its lease
/// expires (which would also count as a failed attempt).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_answered_after_a_stall_is_handed_back() {
    // A server of its own: the stall would hold up the other tests.
    let (_server, server) = own_server(6393, "stall");
    let Setup { prefix, broker, client, .. } = Setup::new(&server).await;
    // The queue's stream and group exist (a first task published and taken).
    client.enqueue_message(message("fault:count", "stall")).await.unwrap();
    let lease = Duration::from_secs(30);
    let got = receive(broker.clone(), "stall", 10, lease, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    broker.ack(&got[0]).await.unwrap();

    // A receiver waits on the empty queue; then a script publishes a task (as the publish
    // script does) and keeps Redis busy for 3.5 s, past the wait's 1 s + 2 s margin.
    let waiting = tokio::spawn(receive(broker.clone(), "stall", 10, lease, Duration::from_secs(8)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let task = message("fault:count", "stall");
    let stall = r"
        redis.call('XADD', KEYS[1], '*', ARGV[1], ARGV[2])
        redis.call('HSET', KEYS[2], ARGV[1], 1)
        redis.call('LPUSH', KEYS[3], 1)
        local function us() local t = redis.call('TIME') return tonumber(t[1]) * 1000000 + tonumber(t[2]) end
        local start = us()
        while us() - start < 3500000 do end
        return 1";
    let keys = ["s0", "ids", "signal"].map(|k| queue_key(&prefix, "stall", k));
    let mut busy = redis::Client::open(server.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let mut eval = redis::cmd("EVAL");
    eval.arg(stall).arg(3).arg(&keys[..]).arg(task.id.as_str()).arg(task.encode().unwrap());
    // The call itself times out on the client's side; Redis runs it to the end.
    let _ = eval.query_async::<i64>(&mut busy).await;
    // The task comes to the waiting receiver (or the next one) as a hand-back: at once, not
    // after its 30 s lease, and with no lost lease counted.
    let mut got = waiting.await.unwrap();
    if got.is_empty() {
        got = receive(broker.clone(), "stall", 10, lease, Duration::from_secs(5)).await;
    }
    assert_eq!(got.len(), 1, "the task claimed during the stall came back");
    let Payload::Task(t) = &got[0].payload else { panic!("undecodable") };
    assert_eq!(t.id, task.id);
    assert_eq!(got[0].lost_leases, 0, "no attempt counted");
    broker.ack(&got[0]).await.unwrap();
}

/// Redis stalls longer than a claim's 10 s reply limit (a slow script here) while a task waits:
/// the claim sent in the meantime gives up with an error, but Redis runs it once it is back and
/// leases the task. Its late reply is taken and the task handed back at once: not left leased
/// to nobody for its 30 s lease, and no attempt counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_reply_lost_to_the_timeout_costs_no_attempt() {
    let (_server, server) = own_server(6395, "late-claim");
    let Setup { prefix, broker, client, .. } = Setup::new(&server).await;
    // The queue and the claim script in place (a first task published and taken).
    let lease = Duration::from_secs(30);
    client.enqueue_message(message("fault:count", "late")).await.unwrap();
    let got = receive(broker.clone(), "late", 10, lease, Duration::from_secs(5)).await;
    broker.ack(&got[0]).await.unwrap();
    let task = message("fault:count", "late");
    client.enqueue_message(task.clone()).await.unwrap();
    let stall = r"
        local function us() local t = redis.call('TIME') return tonumber(t[1]) * 1000000 + tonumber(t[2]) end
        local start = us()
        while us() - start < 11500000 do end
        return 1";
    let mut busy = redis::Client::open(server.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    // Past 5 s, Redis answers `BUSY` to other calls while a script runs; here it stays silent
    // instead, as it does in a long `DEBUG SLEEP` or fork.
    let mut threshold = redis::cmd("CONFIG");
    threshold.arg("SET").arg("busy-reply-threshold").arg(60_000);
    threshold.query_async::<()>(&mut busy).await.unwrap();
    let key = queue_key(&prefix, "late", "ids");
    let started = tokio::time::Instant::now();
    tokio::spawn(async move {
        let _ = redis::cmd("EVAL").arg(stall).arg(1).arg(key).query_async::<i64>(&mut busy).await;
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stop = conveyor::CancellationToken::new();
    let req = conveyor::broker::ReceiveRequest {
        queues: &["late"],
        max: 10,
        wait: Duration::ZERO,
        lease,
        max_payload: usize::MAX,
        stop: &stop,
    };
    let first = broker.receive(&req).await;
    assert!(first.is_err(), "the claim gave up on its reply: {first:?}");
    tokio::time::sleep_until(started + Duration::from_secs(12)).await;
    let got = receive(broker.clone(), "late", 10, lease, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1, "the task claimed by the late claim came back at once");
    let Payload::Task(t) = &got[0].payload else { panic!("undecodable") };
    assert_eq!(t.id, task.id);
    assert_eq!(got[0].lost_leases, 0, "no attempt counted");
    broker.ack(&got[0]).await.unwrap();
}

/// The queue's set of streams holding the wrong type: a hand-back, a retry and a publish over
/// an archived task fail with the reason before writing anything, so no task is lost (taken
/// out of its stream and not put back) and no archived task dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_type_set_fails_before_any_write() {
    let Setup { prefix, broker, mut conn, .. } = Setup::new(&crate::redis::url()).await;
    let q = "broken-set";
    let streams = queue_key(&prefix, q, "streams");
    let lease = Duration::from_secs(30);
    let archived = message("fault:count", q);
    broker.publish(&archived).await.unwrap();
    broker.archive(&receive(broker.clone(), q, 1, lease, HALF_SECOND).await[0], "for the test").await.unwrap();
    broker.publish(&message("fault:count", q)).await.unwrap();
    let held = receive(broker.clone(), q, 1, lease, HALF_SECOND).await.remove(0);
    let Payload::Task(task) = &held.payload else { panic!("undecodable") };

    redis::cmd("SET").arg(&streams).arg("oops").query_async::<()>(&mut conn).await.unwrap();
    let err = broker.release(&held).await.unwrap_err();
    assert!(err.to_string().contains("holds a string, expected a set"), "{err}");
    let err = broker.retry(&held, task, Duration::ZERO).await.unwrap_err();
    assert!(err.to_string().contains("expected a set"), "{err}");
    let err = broker.publish(&archived).await.unwrap_err();
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");

    redis::cmd("DEL").arg(&streams).query_async::<()>(&mut conn).await.unwrap();
    redis::cmd("SADD").arg(&streams).arg("s0").query_async::<()>(&mut conn).await.unwrap();
    assert_eq!(broker.admin().unwrap().archived(q, 0, 10).await.unwrap().len(), 1, "the archived task kept");
    broker.release(&held).await.unwrap();
    let back = receive(broker.clone(), q, 1, lease, HALF_SECOND).await;
    assert_eq!(back.len(), 1, "the held task handed back");
    assert!(matches!(&back[0].payload, Payload::Task(t) if t.id == task.id));
}

/// A lease-recovery mark that never expires (written by something else) does not turn
/// recovery off: an abandoned lease still comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_recovery_mark_does_not_stop_recovery() {
    let Setup { prefix, broker, mut conn, .. } = Setup::new(&crate::redis::url()).await;
    let q = "stuck-mark";
    let mark = queue_key(&prefix, q, "recovery");
    broker.publish(&message("fault:count", q)).await.unwrap();
    drop(receive(broker.clone(), q, 1, Duration::from_millis(300), HALF_SECOND).await);
    redis::cmd("SET").arg(&mark).arg("oops").query_async::<()>(&mut conn).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let back = receive(broker.clone(), q, 1, Duration::from_secs(30), HALF_SECOND).await;
    assert_eq!(back.len(), 1, "the abandoned task recovered");
    assert_eq!(back[0].lost_leases, 1);
}

/// A receive asking for no task takes none (`XREADGROUP COUNT 0` would read a whole stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_of_zero_tasks_takes_none() {
    let Setup { broker, .. } = Setup::new(&crate::redis::url()).await;
    let q = "zero";
    for _ in 0..5 {
        broker.publish(&message("fault:count", q)).await.unwrap();
    }
    // One claim first: it leaves the queue read plainly, as under a running worker.
    assert_eq!(receive(broker.clone(), q, 1, Duration::from_secs(30), HALF_SECOND).await.len(), 1);
    assert!(receive(broker.clone(), q, 0, Duration::from_secs(30), HALF_SECOND).await.is_empty());
    let stats = broker.stats(q).await.unwrap();
    assert_eq!((stats.pending, stats.active), (4, 1));
}

/// A member of a queue's set of streams that is not a stream suffix (written by something
/// else, with a stream of that name): never read, and the queue goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_member_of_the_set_of_streams_is_ignored() {
    let Setup { prefix, broker, mut conn, .. } = Setup::new(&crate::redis::url()).await;
    let q = "foreign-member";
    redis::cmd("SADD").arg(queue_key(&prefix, q, "streams")).arg("junk").query_async::<()>(&mut conn).await.unwrap();
    let junk = queue_key(&prefix, q, "junk");
    redis::cmd("XADD").arg(&junk).arg("*").arg("a").arg("b").query_async::<()>(&mut conn).await.unwrap();
    broker.publish(&message("fault:count", q)).await.unwrap();
    broker.publish(&message("fault:count", q)).await.unwrap();
    assert_eq!(receive(broker.clone(), q, 10, Duration::from_secs(30), HALF_SECOND).await.len(), 2);
    let len: usize = redis::cmd("XLEN").arg(&junk).query_async(&mut conn).await.unwrap();
    assert_eq!(len, 1, "the foreign stream untouched");
}

/// An archived task's id published again with a delay: scheduled (not mixed with the archived
/// task's stored fields), and out of the archive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_id_published_again_with_a_delay() {
    let Setup { broker, .. } = Setup::new(&crate::redis::url()).await;
    let q = "rearchived";
    let lease = Duration::from_secs(30);
    let task = message("fault:count", q);
    broker.publish(&task).await.unwrap();
    broker.archive(&receive(broker.clone(), q, 1, lease, HALF_SECOND).await[0], "for the test").await.unwrap();
    let mut later = task.clone();
    later.eta = Some(std::time::SystemTime::now() + Duration::from_millis(200));
    broker.publish(&later).await.unwrap();
    let stats = broker.stats(q).await.unwrap();
    assert_eq!((stats.scheduled, stats.archived), (1, 0));
    let got = receive(broker.clone(), q, 1, lease, Duration::from_secs(5)).await;
    assert!(matches!(&got[..], [d] if matches!(&d.payload, Payload::Task(t) if t.id == task.id)));
}
