//! Fault tests against a real RabbitMQ node: a worker killed mid-task, RabbitMQ restarted
//! mid-run.

use std::process::Command;

fn url_with_prefix(base: &str) -> String {
    format!("{base}?prefix=f{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_task_outliving_its_lease_runs_once() {
    crate::faults::long_task_runs_once(&url_with_prefix(&crate::amqp::url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_mid_task_is_redelivered_and_completes_once() {
    crate::faults::worker_killed_mid_task(&url_with_prefix(&crate::amqp::url())).await;
}

/// Runs `scripts/rabbitmq` for the restart test's own node.
fn rabbitmq_script(action: &str, port: u16, dir: &str) {
    let status = Command::new("scripts/rabbitmq")
        .arg(action)
        .env("CONVEYOR_AMQP_PORT", port.to_string())
        .env("CONVEYOR_EPMD_PORT", (port - 1300).to_string())
        .env("CONVEYOR_AMQP_DIR", dir)
        .status()
        .expect("scripts/rabbitmq runs");
    assert!(status.success(), "scripts/rabbitmq {action} failed");
}

/// Stops the test's own server when dropped, also when the test fails.
struct Stop(u16, String);

impl Drop for Stop {
    fn drop(&mut self) {
        rabbitmq_script("stop", self.0, &self.1);
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_restart_mid_run_loses_no_confirmed_task() {
    let port = 5691;
    let dir = format!("/tmp/conveyor-rabbitmq-restart-{}", std::process::id());
    rabbitmq_script("start", port, &dir);
    let _stop = Stop(port, dir.clone());
    let url = url_with_prefix(&format!("amqp://guest:guest@127.0.0.1:{port}/%2f"));
    let d = dir.clone();
    crate::faults::broker_restart_mid_run(&url, move || rabbitmq_script("restart", port, &d)).await;
}

/// Errors say what kind they are: a queue deleted behind the broker's back makes a publish
/// unroutable, a refusal that trying again cannot mend; a port where nothing listens is a
/// connection failure, worth trying again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_carry_their_kind() {
    use conveyor::{Client, FailureKind, TaskMessage};
    use lapin::{options::QueueDeleteOptions, Connection, ConnectionProperties};
    let url = url_with_prefix(&crate::amqp::url());
    let prefix = url.rsplit("prefix=").next().unwrap().to_owned();
    let broker = conveyor::broker(&url).await.unwrap();
    let client = Client::new(broker, std::sync::Arc::new(conveyor::memory::MemoryBackend::new()));
    let task = || {
        let mut m = TaskMessage::with_args("x", &1).unwrap();
        m.queue = "gone".into();
        m
    };
    client.enqueue_message(task()).await.unwrap();
    let conn = Connection::connect(&crate::amqp::url(), ConnectionProperties::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.queue_delete(format!("{prefix}.gone").as_str().into(), QueueDeleteOptions::default()).await.unwrap();
    let err = client.enqueue_message(task()).await.unwrap_err();
    assert_eq!(err.failure_kind(), Some(FailureKind::Rejected), "{err}");
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("could not route"), "{err}");

    let err = conveyor::broker("amqp://127.0.0.1:1/%2f").await.map(|_| ()).unwrap_err();
    assert_eq!(err.failure_kind(), Some(FailureKind::Connection), "{err}");
    assert!(err.is_transient(), "{err}");
}

/// A raw channel on the test node, for writing behind the broker's back.
async fn raw_channel() -> (lapin::Connection, lapin::Channel) {
    use lapin::{Connection, ConnectionProperties};
    let conn = Connection::connect(&crate::amqp::url(), ConnectionProperties::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    (conn, ch)
}

fn long_string(v: &str) -> lapin::types::AMQPValue {
    lapin::types::AMQPValue::LongString(v.into())
}

/// Delays, retries and the archive are as durable as the queue they go to: every delay bucket
/// and the archive are quorum queues, and buckets dead-letter `at-least-once`. Declaring them again with exactly those arguments succeeds (RabbitMQ
/// refuses a declaration whose arguments differ from the queue's); as classic queues, it fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_buckets_and_archive_are_quorum_queues_dead_lettering_at_least_once() {
    use lapin::options::QueueDeclareOptions;
    use lapin::types::{AMQPValue, FieldTable};
    let url = url_with_prefix(&crate::amqp::url());
    let prefix = url.rsplit("prefix=").next().unwrap().to_owned();
    let broker = conveyor::broker(&url).await.unwrap();
    let client = conveyor::Client::new(broker, std::sync::Arc::new(conveyor::memory::MemoryBackend::new()));
    client.enqueue_message(crate::faults::message("x", "dur")).await.unwrap();
    let main = format!("{prefix}.dur");
    let quorum = |target: Option<&str>| {
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), long_string("quorum"));
        if let Some(t) = target {
            args.insert("x-dead-letter-exchange".into(), long_string(""));
            args.insert("x-dead-letter-routing-key".into(), long_string(t));
            args.insert("x-dead-letter-strategy".into(), long_string("at-least-once"));
            args.insert("x-overflow".into(), long_string("reject-publish"));
        }
        args
    };
    let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    let (_conn, ch) = raw_channel().await;
    for ms in [100i64, 409_600, 1_677_721_600] {
        let mut args = quorum(Some(&main));
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ms));
        let name = format!("{main}.delay.{ms}");
        ch.queue_declare(name.as_str().into(), durable, args).await.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // The main queue as before (its backstop dead-letters at most once: see topology.rs).
    let mut args = quorum(None);
    args.insert("x-dead-letter-exchange".into(), long_string(""));
    args.insert("x-dead-letter-routing-key".into(), long_string(&format!("{main}.archive")));
    args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(1000));
    ch.queue_declare(main.as_str().into(), durable, args).await.expect("main queue");
    ch.queue_declare(format!("{main}.archive").as_str().into(), durable, quorum(None)).await.expect("archive");
    // And the check itself can fail: a classic declaration of the archive is refused.
    let classic = ch.queue_declare(format!("{main}.archive").as_str().into(), durable, FieldTable::default()).await;
    assert!(classic.is_err(), "the check tells a classic queue from a quorum queue");
}

/// A queue that exists with other settings (declared by hand, or by an older version) is a
/// clear error naming it, and its failed declaration disturbs nothing else: a task running
/// meanwhile on another queue is acked once, not returned to its queue and run again (it
/// was, when declarations shared the publishing channel and a closed channel reconnected).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_queue_is_a_clear_error_and_disturbs_no_task_in_flight() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use conveyor::{FailureKind, Request, ResultBackend, TaskState, Worker};
    use lapin::options::QueueDeclareOptions;
    use lapin::types::FieldTable;
    let url = url_with_prefix(&crate::amqp::url());
    let prefix = url.rsplit("prefix=").next().unwrap().to_owned();
    let (_conn, ch) = raw_channel().await;
    let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    ch.queue_declare(format!("{prefix}.clash").as_str().into(), durable, FieldTable::default()).await.unwrap();

    let broker = conveyor::broker(&url).await.unwrap();
    let backend = Arc::new(conveyor::memory::MemoryBackend::new());
    let client = conveyor::Client::new(broker.clone(), backend.clone());
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let w = crate::suite::Running::start(
        Worker::builder(broker.clone(), backend.clone())
            .register_handler("fault:slow-once", move |_req: Request| {
                r.fetch_add(1, Ordering::SeqCst);
                async {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    crate::faults::ok()
                }
            })
            .queue("busy", 1)
            .lease(Duration::from_secs(30)),
    );
    let busy = client.enqueue_message(crate::faults::message("fault:slow-once", "busy")).await.unwrap();
    crate::suite::eventually(Duration::from_secs(10), "the task started", || async {
        runs.load(Ordering::SeqCst) == 1
    })
    .await;
    let err = client.enqueue_message(crate::faults::message("x", "clash")).await.unwrap_err();
    assert_eq!(err.failure_kind(), Some(FailureKind::Rejected), "{err}");
    assert!(err.to_string().contains(&format!("`{prefix}.clash` exists with other settings")), "{err}");
    // Publishing to good queues goes on.
    client.enqueue_message(crate::faults::message("x", "elsewhere")).await.expect("publishing goes on");
    crate::suite::eventually(Duration::from_secs(10), "the running task completed", || async {
        backend.get(&busy.id).await.unwrap().is_some_and(|r| r.state == TaskState::Completed)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    w.stop().await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the task in flight ran once");
}

/// A retry or delay hop publishes a copy and then acks the original; a crash in between leaves
/// both, and the original runs again. Here two copies of attempt 1 wait (as two such crashes
/// would leave): the first runs and completes, the second is acked unrun.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_whose_attempt_was_settled_is_not_run_again() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use conveyor::backend::StateUpdate;
    use conveyor::{Request, ResultBackend, TaskState, Worker};
    use lapin::options::BasicPublishOptions;
    use lapin::types::FieldTable;
    use lapin::BasicProperties;
    let url = url_with_prefix(&crate::amqp::url());
    let prefix = url.rsplit("prefix=").next().unwrap().to_owned();
    let broker = conveyor::broker(&url).await.unwrap();
    let backend = Arc::new(conveyor::memory::MemoryBackend::new());
    let client = conveyor::Client::new(broker.clone(), backend.clone());
    // The queue exists (a first task through it), and the task's record says attempt 0 failed
    // and attempt 1 is due, as the worker writes before it publishes the retry.
    let task = crate::faults::message("fault:count-copies", "copies");
    let mut first = task.clone();
    first.id = conveyor::TaskId::random();
    client.enqueue_message(first).await.unwrap();
    let mut copy = task.clone();
    copy.retried = 1;
    backend.update(&copy, StateUpdate::retry(1, "boom".into())).await.unwrap();
    let (_conn, ch) = raw_channel().await;
    let mut headers = FieldTable::default();
    headers.insert("x-conveyor-copy".into(), lapin::types::AMQPValue::LongLongInt(1));
    let props = BasicProperties::default().with_delivery_mode(2).with_headers(headers);
    for _ in 0..2 {
        let body = copy.encode().unwrap();
        let queue = format!("{prefix}.copies");
        let confirm = ch
            .basic_publish("".into(), queue.as_str().into(), BasicPublishOptions::default(), &body, props.clone())
            .await
            .unwrap();
        confirm.await.unwrap();
    }
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let w = crate::suite::Running::start(
        Worker::builder(broker.clone(), backend.clone())
            .register_handler("fault:count-copies", move |_req: Request| {
                r.fetch_add(1, Ordering::SeqCst);
                async { crate::faults::ok() }
            })
            .queue("copies", 1),
    );
    crate::suite::eventually(Duration::from_secs(10), "the queue drained", || async {
        broker.stats("copies").await.is_ok_and(|s| s.pending == 0 && s.active == 0)
    })
    .await;
    w.stop().await;
    // The first task (another id) ran too.
    assert_eq!(runs.load(Ordering::SeqCst), 2, "one run of the copies, one of the first task");
    let record = backend.get(&task.id).await.unwrap().unwrap();
    assert_eq!(record.state, TaskState::Completed);
}

/// A TCP relay to the test node that can be cut: its connections dropped, and new ones
/// accepted but never answered (a server that hangs, or a black-holed route).
struct Relay {
    port: u16,
    hang: std::sync::Arc<std::sync::atomic::AtomicBool>,
    links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Relay {
    async fn start(target: String) -> Relay {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let relay = Relay { port, hang: Default::default(), links: Default::default() };
        let (hang, links) = (relay.hang.clone(), relay.links.clone());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                if hang.load(Ordering::SeqCst) {
                    held.push(inbound);
                    continue;
                }
                let target = target.clone();
                let link = tokio::spawn(async move {
                    let mut outbound = tokio::net::TcpStream::connect(target).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                links.lock().unwrap().push(link.abort_handle());
            }
        });
        relay
    }

    /// Drops every relayed connection; new ones hang.
    fn cut(&self) {
        self.hang.store(true, std::sync::atomic::Ordering::SeqCst);
        for l in self.links.lock().unwrap().drain(..) {
            l.abort();
        }
    }
}

/// While RabbitMQ cannot be reached (new connections hang), callers waiting for a reconnect
/// get its answer: four publishes at once all fail within about one connect timeout (10 s),
/// rather than one after the other (40 s), each behind the previous caller's attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_do_not_queue_behind_each_others_reconnects() {
    use std::time::{Duration, Instant};
    let node = url::Url::parse(&crate::amqp::url()).unwrap();
    let relay = Relay::start(format!("127.0.0.1:{}", node.port().unwrap())).await;
    let mut via = node.clone();
    via.set_port(Some(relay.port)).unwrap();
    let broker = conveyor::broker(&url_with_prefix(via.as_str())).await.unwrap();
    broker.publish(&crate::faults::message("x", "relayed")).await.expect("through the relay");
    relay.cut();
    // The client has seen its connection drop.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start = Instant::now();
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let b = broker.clone();
            tokio::spawn(async move {
                let r = b.publish(&crate::faults::message("x", "relayed")).await;
                (r, start.elapsed())
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for c in calls {
        let (r, took) = c.await.unwrap();
        assert!(r.is_err(), "nothing to publish to");
        slowest = slowest.max(took);
    }
    assert!(slowest < Duration::from_secs(18), "callers waited for each other's reconnects: {slowest:?}");
}
