//! The Redis broker's stream housekeeping, seen in Redis: acked entries leave the queue's
//! stream (cut from its head, or deleted one by one behind a long-running task), and the
//! queue's counts stay exact meanwhile.

use std::sync::Arc;
use std::time::Duration;

use conveyor::{Request, TaskState, Worker};
use tokio::sync::Notify;

use crate::faults::{message, ok};
use crate::redis_faults::{queue_key, receive, Setup};
use crate::suite::{eventually, Running};

/// A lease long enough for the tests' tasks.
const LEASE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_entries_leave_the_stream_even_behind_a_long_task() {
    let Setup { prefix, broker, backend, client, mut conn } = Setup::new(&crate::redis::url()).await;
    let stream = queue_key(&prefix, "tidy", "s0");
    let xlen = |mut conn: redis::aio::MultiplexedConnection, key: String| async move {
        redis::cmd("XLEN").arg(&key).query_async::<u64>(&mut conn).await.unwrap()
    };
    let finish = Arc::new(Notify::new());
    let f = finish.clone();
    let w = Running::start(
        Worker::builder(broker.clone(), backend.clone())
            .register_handler("layout:slow", move |_req: Request| {
                let f = f.clone();
                async move {
                    f.notified().await;
                    ok()
                }
            })
            .register_handler("fault:count", |_req: Request| async { ok() })
            .concurrency(4)
            .queue("tidy", 1),
    );
    for round in ["deleted one by one", "cut from the head"] {
        // A long task, and quick ones published after it: more than 100 ms later in the first
        // round (they are deleted as they are acked), at once in the second (they wait for
        // the long one, and go with it).
        let slow = client.enqueue_message(message("layout:slow", "tidy")).await.unwrap();
        eventually(Duration::from_secs(10), "the long task running", || async {
            broker.stats("tidy").await.unwrap().active == 1
        })
        .await;
        if round == "deleted one by one" {
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        let batch: Vec<_> = (0..40).map(|_| message("fault:count", "tidy")).collect();
        for r in client.enqueue_messages(&batch).await {
            r.unwrap();
        }
        for t in &batch {
            assert_eq!(client.wait(&t.id, Duration::from_secs(10)).await.unwrap().state, TaskState::Completed);
        }
        // A task is recorded completed just before its ack.
        eventually(Duration::from_secs(10), "counts while the long task runs: 0 pending, 1 active", || async {
            let st = broker.stats("tidy").await.unwrap();
            (st.pending, st.active) == (0, 1)
        })
        .await;
        let len = xlen(conn.clone(), stream.clone()).await;
        if round == "deleted one by one" {
            assert_eq!(len, 1, "{round}: only the long task's entry is left");
        } else {
            assert!(len <= 41, "{round}: {len} entries");
        }
        finish.notify_one();
        assert_eq!(client.wait(&slow.id, Duration::from_secs(10)).await.unwrap().state, TaskState::Completed);
        eventually(Duration::from_secs(10), "the stream empty", || {
            let (c, k) = (conn.clone(), stream.clone());
            async move { xlen(c, k).await == 0 }
        })
        .await;
    }
    let st = broker.stats("tidy").await.unwrap();
    assert_eq!((st.pending, st.active), (0, 0));
    redis::cmd("PING").query_async::<()>(&mut conn).await.unwrap();
    w.stop().await;
}

/// A worker reading a queue's only stream without the script (see `claim.rs`) still honours
/// pauses and priorities: tasks published while paused come out highest priority first once
/// resumed (one the worker read as the pause began is handed back, not run), and streams a
/// queue no longer uses are dropped, so plain reads resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_reads_honour_pause_and_priority() {
    let Setup { prefix, broker, backend, client, mut conn } = Setup::new(&crate::redis::url()).await;
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let o = order.clone();
    let w = Running::start(
        Worker::builder(broker.clone(), backend.clone())
            .register_handler("layout:prio", move |req: Request| {
                o.lock().unwrap().push(req.task.priority);
                async { ok() }
            })
            .concurrency(1)
            .batch(1)
            .queue("prio", 1),
    );
    let with_priority = |p: u8| {
        let mut m = message("layout:prio", "prio");
        m.priority = p;
        m
    };
    let warm = client.enqueue_message(with_priority(0)).await.unwrap();
    assert_eq!(client.wait(&warm.id, Duration::from_secs(10)).await.unwrap().state, TaskState::Completed);
    let admin = broker.admin().unwrap();
    admin.pause("prio").await.unwrap();
    let held: Vec<_> = [0, 0, 0, 9, 9, 9].into_iter().map(with_priority).collect();
    for m in &held {
        client.enqueue_message(m.clone()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(order.lock().unwrap().len(), 1, "nothing runs while paused");
    admin.resume("prio").await.unwrap();
    for m in &held {
        assert_eq!(client.wait(&m.id, Duration::from_secs(10)).await.unwrap().state, TaskState::Completed);
    }
    assert_eq!(*order.lock().unwrap(), [0, 9, 9, 9, 0, 0, 0]);
    // Drained: the claims' upkeep drops the empty streams (a hand-back stream among them).
    let streams = queue_key(&prefix, "prio", "streams");
    eventually(Duration::from_secs(10), "no streams left", || {
        let (mut c, k) = (conn.clone(), streams.clone());
        async move { redis::cmd("SCARD").arg(&k).query_async::<u64>(&mut c).await.unwrap() == 0 }
    })
    .await;
    let again = client.enqueue_message(with_priority(0)).await.unwrap();
    assert_eq!(client.wait(&again.id, Duration::from_secs(10)).await.unwrap().state, TaskState::Completed);
    redis::cmd("PING").query_async::<()>(&mut conn).await.unwrap();
    w.stop().await;
}

/// Acked entries kept behind a long task also go when that task is settled otherwise than by
/// an ack (here: it fails, and its retry is scheduled), with no further ack on the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_entries_behind_a_retried_task_go_too() {
    let Setup { prefix, broker, backend, client, mut conn } = Setup::new(&crate::redis::url()).await;
    let stream = queue_key(&prefix, "tidy-retry", "s0");
    let finish = Arc::new(Notify::new());
    let f = finish.clone();
    let w = Running::start(
        Worker::builder(broker.clone(), backend.clone())
            .register_handler("layout:fail", move |_req: Request| {
                let f = f.clone();
                async move {
                    f.notified().await;
                    Err(conveyor::TaskError::retry_after(Duration::from_secs(60), "not yet"))
                }
            })
            .register_handler("fault:count", |_req: Request| async { ok() })
            .concurrency(4)
            .queue("tidy-retry", 1),
    );
    let slow = client.enqueue_message(message("layout:fail", "tidy-retry")).await.unwrap();
    eventually(Duration::from_secs(10), "the long task running", || async {
        broker.stats("tidy-retry").await.unwrap().active == 1
    })
    .await;
    let batch: Vec<_> = (0..20).map(|_| message("fault:count", "tidy-retry")).collect();
    for r in client.enqueue_messages(&batch).await {
        r.unwrap();
    }
    for t in &batch {
        assert_eq!(client.wait(&t.id, Duration::from_secs(10)).await.unwrap().state, TaskState::Completed);
    }
    finish.notify_one();
    eventually(Duration::from_secs(10), "the task scheduled for its retry", || async {
        client.get(&slow.id).await.unwrap().is_some_and(|r| r.state == TaskState::Retry)
    })
    .await;
    eventually(Duration::from_secs(10), "the stream empty", || {
        let (mut c, k) = (conn.clone(), stream.clone());
        async move { redis::cmd("XLEN").arg(&k).query_async::<u64>(&mut c).await.unwrap() == 0 }
    })
    .await;
    redis::cmd("PING").query_async::<()>(&mut conn).await.unwrap();
    w.stop().await;
}

/// A claim that reads the queue's only stream with a plain read wakes another receiver when
/// more tasks wait than it takes, and only then: acked entries kept in the stream behind a
/// running task are not counted as waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_reads_wake_another_receiver_only_for_waiting_tasks() {
    let Setup { prefix, broker, client, mut conn, .. } = Setup::new(&crate::redis::url()).await;
    let signal = queue_key(&prefix, "wake", "signal");
    let receive = |max: usize| receive(broker.clone(), "wake", max, LEASE, Duration::ZERO);
    let signals = |mut conn: redis::aio::MultiplexedConnection, key: String| async move {
        redis::cmd("LLEN").arg(&key).query_async::<u64>(&mut conn).await.unwrap()
    };
    let enqueue = |n: usize| {
        let batch: Vec<_> = (0..n).map(|_| message("fault:count", "wake")).collect();
        let client = client.clone();
        async move {
            for r in client.enqueue_messages(&batch).await {
                r.unwrap();
            }
        }
    };
    // A task left running, then five read and acked at once: they stay in the stream behind
    // it (published within 100 ms of it).
    enqueue(1).await;
    let running = receive(1).await;
    assert_eq!(running.len(), 1);
    enqueue(5).await;
    let quick = receive(5).await;
    assert_eq!(quick.len(), 5);
    for d in &quick {
        broker.ack(d).await.unwrap();
    }
    let len = redis::cmd("XLEN").arg(queue_key(&prefix, "wake", "s0")).query_async::<u64>(&mut conn).await.unwrap();
    // Kept behind the running task (6), unless this machine took over 100 ms between the two
    // publishes (then they were deleted at once: 1); no wake-up is due either way.
    assert!(len == 6 || len == 1, "{len} entries");
    redis::cmd("DEL").arg(&signal).query_async::<()>(&mut conn).await.unwrap();
    assert!(receive(1).await.is_empty());
    assert_eq!(signals(conn.clone(), signal.clone()).await, 0, "nothing waits: no wake-up");
    // Three waiting, one taken: another receiver is woken for the rest.
    enqueue(3).await;
    redis::cmd("DEL").arg(&signal).query_async::<()>(&mut conn).await.unwrap();
    assert_eq!(receive(1).await.len(), 1);
    assert_eq!(signals(conn.clone(), signal.clone()).await, 1, "two wait: a wake-up");
    for d in receive(10).await.iter().chain(&running) {
        broker.ack(d).await.unwrap();
    }
}

/// A receiver waiting while the queue's tasks sit in one stream is woken for a task that lands
/// in another (a higher priority, a hand-back), and takes it at once: it does not go back to
/// waiting with the signal spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_receiver_takes_a_task_from_another_stream() {
    let Setup { broker, client, .. } = Setup::new(&crate::redis::url()).await;
    let receive = |max: usize, wait: Duration| receive(broker.clone(), "other", max, LEASE, wait);
    // A running task keeps the queue's stream `s0`, so idle receivers read it without the script.
    client.enqueue_message(message("fault:count", "other")).await.unwrap();
    let running = receive(1, Duration::ZERO).await;
    assert_eq!(running.len(), 1);
    assert!(receive(1, Duration::ZERO).await.is_empty());
    // A task of priority 9, then a hand-back, each published while a receiver waits. One that
    // went back to waiting with the signal spent would take it only when that wait ends, a
    // second later (the longest a receiver blocks); taking it takes a few round trips.
    let mut urgent = message("fault:count", "other");
    urgent.priority = 9;
    for what in ["a priority-9 task", "a handed-back task"] {
        let waiting = tokio::spawn(receive(1, Duration::from_secs(5)));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let published = std::time::Instant::now();
        if what == "a priority-9 task" {
            client.enqueue_message(urgent.clone()).await.unwrap();
        } else {
            broker.release(&running[0]).await.unwrap();
        }
        let got = waiting.await.unwrap();
        let took = published.elapsed();
        assert_eq!(got.len(), 1, "{what} taken by the waiting receiver");
        assert!(took < Duration::from_millis(800), "{what} taken after {took:?}: the receiver waited again");
        broker.ack(&got[0]).await.unwrap();
    }
}
