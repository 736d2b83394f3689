//! Worker behaviour: concurrency, priorities, shutdown, leases, middleware.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conveyor::backend::StateUpdate;
use conveyor::broker::ReceiveRequest;
use conveyor::middleware::{from_fn, Logging, Metrics, MetricsHook, Next, Outcome};
use conveyor::{ErrorKind, Request, TaskMessage, TaskState};

use super::tasks::{log, probe, Probe};
use super::{eventually, Env, Running};

const WAIT: Duration = Duration::from_secs(10);

pub async fn concurrency_is_bounded(env: Env) {
    let q = env.q("conc");
    let client = env.client();
    let msgs: Vec<_> = (0..12)
        .map(|_| client.task(probe, Probe { sleep_ms: 150, ..Probe::new(&q) }).queue(&q).build().unwrap())
        .collect();
    assert!(client.enqueue_messages(&msgs).await.iter().all(Result::is_ok));
    let w = Running::start(env.worker().queue(&q, 1).concurrency(3));
    for m in &msgs {
        client.wait(&m.id, WAIT).await.unwrap();
    }
    let l = log(&q);
    assert_eq!(l.finished, 12);
    assert_eq!(l.max_running, 3, "never more than 3 at once, and 3 reached");
    w.stop().await;
}

pub async fn strict_priority_drains_higher_first(env: Env) {
    let (hi, lo) = (env.q("strict-hi"), env.q("strict-lo"));
    let client = env.client();
    let mut msgs = Vec::new();
    for q in [&lo, &hi] {
        for _ in 0..8 {
            msgs.push(client.task(probe, Probe::new(q.as_str())).queue(q.as_str()).build().unwrap());
        }
    }
    assert!(client.enqueue_messages(&msgs).await.iter().all(Result::is_ok));
    let w = Running::start(env.worker().queue(&hi, 2).queue(&lo, 1).strict_priority(true).concurrency(1).batch(1));
    for m in &msgs {
        client.wait(&m.id, WAIT).await.unwrap();
    }
    let (h, l) = (log(&hi), log(&lo));
    assert!(h.starts.iter().max().unwrap() < l.starts.iter().min().unwrap(), "every high task before any low one");
    w.stop().await;
}

pub async fn weighted_priority_follows_weights(env: Env) {
    let qs = [(env.q("w-critical"), 6u32), (env.q("w-default"), 3), (env.q("w-low"), 1)];
    let client = env.client();
    let mut msgs = Vec::new();
    for (q, _) in &qs {
        for _ in 0..250 {
            msgs.push(client.task(probe, Probe::new(q.as_str())).queue(q.as_str()).build().unwrap());
        }
    }
    assert!(client.enqueue_messages(&msgs).await.iter().all(Result::is_ok));
    let mut b = env.worker().concurrency(1).batch(1);
    for (q, w) in &qs {
        b = b.queue(q, *w);
    }
    let w = Running::start(b);
    let done = || qs.iter().map(|(q, _)| log(q).finished).sum::<usize>();
    eventually(Duration::from_secs(60), "200 tasks processed", || async { done() >= 200 }).await;
    w.stop().await;
    // The first 200 starts in time order, while every queue was still backlogged.
    let mut starts: Vec<(tokio::time::Instant, usize)> =
        qs.iter().enumerate().flat_map(|(i, (q, _))| log(q).starts.into_iter().map(move |t| (t, i))).collect();
    starts.sort();
    let mut counts = [0usize; 3];
    for (_, i) in starts.iter().take(200) {
        counts[*i] += 1;
    }
    let share: Vec<f64> = counts.iter().map(|c| *c as f64 / 200.0).collect();
    assert!((0.48..=0.72).contains(&share[0]), "critical share {share:?} of {counts:?}");
    assert!((0.18..=0.42).contains(&share[1]), "default share {share:?} of {counts:?}");
    assert!((0.03..=0.19).contains(&share[2]), "low share {share:?} of {counts:?}");
}

pub async fn running_task_is_recorded_active(env: Env) {
    let q = env.q("active");
    let client = env.client();
    let w = Running::start(env.worker().queue(&q, 1));
    // A task that runs a while is seen `active` meanwhile (one that finishes within
    // ACTIVE_AFTER goes from pending to completed directly).
    let slow = client.task(probe, Probe { sleep_ms: 600, ..Probe::new(&q) }).queue(&q).build().unwrap();
    client.enqueue_message(slow.clone()).await.unwrap();
    eventually(WAIT, "the running task recorded active", || async {
        client.get(&slow.id).await.unwrap().is_some_and(|r| r.state == TaskState::Active)
    })
    .await;
    assert_eq!(client.wait(&slow.id, WAIT).await.unwrap().state, TaskState::Completed);
    let quick = client.task(probe, Probe::new(&q)).queue(&q).build().unwrap();
    client.enqueue_message(quick.clone()).await.unwrap();
    assert_eq!(client.wait(&quick.id, WAIT).await.unwrap().state, TaskState::Completed);
    w.stop().await;
}

pub async fn pause_holds_tasks_until_resume(env: Env) {
    let q = env.q("pause");
    let client = env.client();
    let admin = env.broker.admin().expect("the conformance suite needs QueueAdmin");
    let w = Running::start(env.worker().queue(&q, 1).concurrency(2));
    // One task runs first: the worker is past its first claims, waiting for more.
    let first = client.task(probe, Probe::new(&q)).queue(&q).build().unwrap();
    client.enqueue_message(first.clone()).await.unwrap();
    assert_eq!(client.wait(&first.id, WAIT).await.unwrap().state, TaskState::Completed);
    admin.pause(&q).await.unwrap();
    assert!(env.broker.stats(&q).await.unwrap().paused);
    let held: Vec<_> = (0..3).map(|_| client.task(probe, Probe::new(&q)).queue(&q).build().unwrap()).collect();
    assert!(client.enqueue_messages(&held).await.iter().all(Result::is_ok));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(log(&q).starts.len(), 1, "nothing runs while the queue is paused");
    for m in &held {
        assert_eq!(client.get(&m.id).await.unwrap().unwrap().state, TaskState::Pending);
    }
    admin.resume(&q).await.unwrap();
    assert!(!env.broker.stats(&q).await.unwrap().paused);
    for m in &held {
        assert_eq!(client.wait(&m.id, WAIT).await.unwrap().state, TaskState::Completed);
    }
    assert_eq!(log(&q).starts.len(), 4, "each held task ran once");
    w.stop().await;
}

pub async fn shutdown_hands_unfinished_tasks_back(env: Env) {
    let q = env.q("handback");
    let client = env.client();
    let w = Running::start(env.worker().queue(&q, 1).shutdown_timeout(Duration::from_millis(300)));
    let h = client.task(probe, Probe { sleep_first_ms: 60_000, ..Probe::new(&q) }).queue(&q).await.unwrap();
    eventually(WAIT, "the task running", || async { log(&q).running == 1 }).await;
    w.stop().await;
    let stats = env.broker.stats(&q).await.unwrap();
    assert_eq!((stats.pending, stats.active), (1, 0), "handed back, ready at once");
    assert_eq!(h.status().await.unwrap().state, TaskState::Pending);
    // Another worker runs it, with no attempt used by the hand-back.
    let w = Running::start(env.worker().queue(&q, 1));
    assert_eq!(h.get(WAIT).await.unwrap(), 2);
    assert_eq!(log(&q).retried_seen, [0, 0]);
    w.stop().await;
}

pub async fn shutdown_waits_for_running_tasks(env: Env) {
    let q = env.q("drain");
    let client = env.client();
    let w = Running::start(env.worker().queue(&q, 1));
    let h = client.task(probe, Probe { sleep_ms: 500, ..Probe::new(&q) }).queue(&q).await.unwrap();
    eventually(WAIT, "the task running", || async { log(&q).running == 1 }).await;
    w.stop().await;
    assert_eq!(h.status().await.unwrap().state, TaskState::Completed);
    let stats = env.broker.stats(&q).await.unwrap();
    assert_eq!((stats.pending, stats.active), (0, 0));
}

/// A prefetched task is handed back at shutdown, also when the slot it waits for is freed as
/// the shutdown begins (by a handler that returns on the shutdown signal).
pub async fn prefetched_task_is_handed_back_not_started(env: Env) {
    let q = env.q("prefetch-stop");
    let client = env.client();
    let w = Running::start(env.worker().queue(&q, 1).concurrency(1).prefetch(1));
    let first = client.task(probe, Probe { interrupt_on_shutdown: true, ..Probe::new(&q) }).queue(&q).await.unwrap();
    eventually(WAIT, "the first task running", || async { log(&q).running == 1 }).await;
    let second = client.task(probe, Probe::new(&q)).queue(&q).await.unwrap();
    eventually(WAIT, "the second task prefetched", || async { env.broker.stats(&q).await.unwrap().active == 2 }).await;
    w.stop().await;
    assert_eq!(log(&q).starts.len(), 1, "the prefetched task was not started");
    // Counts settle after a moment on RabbitMQ (hand-backs are pushed to the broker's
    // consumer while the queue's count is read).
    eventually(WAIT, "both handed back, ready", || async {
        let stats = env.broker.stats(&q).await.unwrap();
        (stats.pending, stats.active) == (2, 0)
    })
    .await;
    let w = Running::start(env.worker().queue(&q, 1));
    assert_eq!(first.get(WAIT).await.unwrap() + second.get(WAIT).await.unwrap(), 2 + 3);
    assert_eq!(log(&q).retried_seen, [0, 0, 0], "no attempt used");
    w.stop().await;
}

/// Takes `q`'s one task as a receiver would, with a lease of a second: dropped without an ack,
/// it is left to that lease.
async fn take_with_short_lease(env: &Env, q: &str) -> conveyor::broker::Delivery {
    let stop = conveyor::CancellationToken::new();
    let lease = Duration::from_secs(1);
    let req = ReceiveRequest { queues: &[q], max: 1, wait: WAIT, lease, max_payload: usize::MAX, stop: &stop };
    let mut taken = env.broker.receive(&req).await.unwrap();
    assert_eq!(taken.len(), 1);
    taken.remove(0)
}

pub async fn abandoned_lease_is_redelivered(env: Env) {
    let q = env.q("lease");
    let client = env.client();
    let h = client.task(probe, Probe::new(&q)).queue(&q).await.unwrap();
    // A receiver takes the task with a short lease, then disappears without acking.
    drop(take_with_short_lease(&env, &q).await);
    let w = Running::start(env.worker().queue(&q, 1));
    assert_eq!(h.get(WAIT).await.unwrap(), 1);
    w.stop().await;
}

/// A task delivered again after it completed (its ack was lost: the receiver vanished after
/// recording the result) is acked without running again.
pub async fn completed_task_delivered_again_is_not_rerun(env: Env) {
    let q = env.q("done-again");
    let client = env.client();
    let h = client.task(probe, Probe::new(&q)).queue(&q).await.unwrap();
    let taken = take_with_short_lease(&env, &q).await;
    let conveyor::broker::Payload::Task(task) = &taken.payload else { panic!("undecodable") };
    let result = serde_json::value::to_raw_value(&7).unwrap();
    env.backend.update(task, StateUpdate::completed(0, result, Duration::from_secs(60))).await.unwrap();
    drop(taken);
    let w = Running::start(env.worker().queue(&q, 1));
    eventually(WAIT, "the duplicate settled", || async {
        let st = env.broker.stats(&q).await.unwrap();
        (st.pending, st.active, st.scheduled) == (0, 0, 0)
    })
    .await;
    w.stop().await;
    assert_eq!(log(&q).starts.len(), 0, "not run again");
    assert_eq!(h.get(WAIT).await.unwrap(), 7);
}

pub async fn interrupted_handler_hands_task_back(env: Env) {
    let q = env.q("interrupt");
    let client = env.client();
    let w = Running::start(env.worker().queue(&q, 1));
    let h = client.task(probe, Probe { interrupt_on_shutdown: true, ..Probe::new(&q) }).queue(&q).await.unwrap();
    eventually(WAIT, "the task running", || async { log(&q).running == 1 }).await;
    w.stop().await;
    let stats = env.broker.stats(&q).await.unwrap();
    assert_eq!((stats.pending, stats.active), (1, 0), "handed back, ready at once");
    let w = Running::start(env.worker().queue(&q, 1));
    assert_eq!(h.get(WAIT).await.unwrap(), 2);
    assert_eq!(log(&q).retried_seen, [0, 0], "no attempt used");
    w.stop().await;
}

pub async fn lost_lease_counts_as_an_attempt(env: Env) {
    let q = env.q("lost");
    let client = env.client();
    let h = client.task(probe, Probe::new(&q)).queue(&q).max_retry(0).await.unwrap();
    let taken = take_with_short_lease(&env, &q).await;
    // Its handler had started (recorded `active`, as a worker does) when the receiver died.
    let conveyor::broker::Payload::Task(task) = &taken.payload else { panic!("undecodable") };
    env.backend.update(task, StateUpdate::to(TaskState::Active, 0)).await.unwrap();
    // Its only attempt died with the receiver: archived, never run.
    let w = Running::start(env.worker().queue(&q, 1));
    let err = h.get(WAIT).await.unwrap_err();
    assert!(err.to_string().contains("lease expired"), "{err}");
    assert!(log(&q).starts.is_empty());
    w.stop().await;
}

/// A worker that died with the task only received (prefetched, or waiting for a slot), its
/// handler never started: the lost lease costs no attempt, so a task with no retries still
/// runs (in a chaos run, 6 of 43 such tasks were archived without ever running).
pub async fn lease_lost_before_the_handler_started_costs_no_attempt(env: Env) {
    let q = env.q("lost-unstarted");
    let client = env.client();
    let h = client.task(probe, Probe::new(&q)).queue(&q).max_retry(0).await.unwrap();
    drop(take_with_short_lease(&env, &q).await);
    let w = Running::start(env.worker().queue(&q, 1));
    assert_eq!(h.get(WAIT).await.unwrap(), 1, "it ran");
    assert_eq!(h.status().await.unwrap().retried, 0, "no attempt used");
    w.stop().await;
}

/// A task whose run died with its worker (a lost lease, counted) is then interrupted on the
/// next worker by a graceful shutdown and handed back: it is not lost, and the run that
/// finishes it records its result. (On RabbitMQ and SQS a hand-back republished the original
/// message, which forgot the counted lease: its copy was taken for a duplicate and dropped.)
pub async fn handed_back_after_a_lost_lease_runs_to_completion(env: Env) {
    let q = env.q("lost-handback");
    let client = env.client();
    let h = client.task(probe, Probe { interrupt_on_shutdown: true, ..Probe::new(&q) }).queue(&q).await.unwrap();
    let taken = take_with_short_lease(&env, &q).await;
    let conveyor::broker::Payload::Task(task) = &taken.payload else { panic!("undecodable") };
    env.backend.update(task, StateUpdate::to(TaskState::Active, 0)).await.unwrap();
    let w = Running::start(env.worker().queue(&q, 1));
    eventually(WAIT, "the task running again", || async { log(&q).running == 1 }).await;
    w.stop().await;
    let w = Running::start(env.worker().queue(&q, 1));
    assert_eq!(h.get(WAIT).await.unwrap(), 2, "interrupted once, then completed");
    assert_eq!(h.status().await.unwrap().state, TaskState::Completed);
    w.stop().await;
}

pub async fn panicking_middleware_is_contained(env: Env) {
    let q = env.q("mw-panic");
    let client = env.client();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let bad = from_fn(move |req: Request, next: Next| {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("middleware bug");
        }
        next.run(req)
    });
    let w = Running::start(env.worker().queue(&q, 1).layer(bad));
    let h = client.task(probe, Probe::new(&q)).queue(&q).await.unwrap();
    assert_eq!(h.get(WAIT).await.unwrap(), 1);
    let rec = h.status().await.unwrap();
    assert_eq!(rec.retried, 1);
    let error = rec.error.unwrap_or_default();
    assert!(error.starts_with("handler panicked: middleware bug at ") && error.contains("worker.rs:"), "{error}");
    w.stop().await;
}

#[derive(Default, Clone)]
struct Hook(Arc<Mutex<Vec<(String, Outcome)>>>);

impl MetricsHook for Hook {
    fn finished(&self, task: &TaskMessage, _elapsed: Duration, outcome: Outcome) {
        self.0.lock().unwrap().push((task.name.clone(), outcome));
    }
}

pub async fn middleware_wraps_every_attempt(env: Env) {
    let q = env.q("mw");
    let client = env.client();
    let calls = Arc::new(AtomicUsize::new(0));
    let hook = Hook::default();
    let c = calls.clone();
    let counting = from_fn(move |req: Request, next: Next| {
        c.fetch_add(1, Ordering::SeqCst);
        next.run(req)
    });
    let w = Running::start(env.worker().queue(&q, 1).layer(Logging).layer(counting).layer(Metrics::new(hook.clone())));
    let h = client.task(probe, Probe { fail_times: 1, ..Probe::new(&q) }).queue(&q).await.unwrap();
    assert_eq!(h.get(WAIT).await.unwrap(), 2);
    w.stop().await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let seen = hook.0.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            ("conformance:probe".to_owned(), Outcome::Failed(ErrorKind::Failed)),
            ("conformance:probe".to_owned(), Outcome::Succeeded)
        ]
    );
}
