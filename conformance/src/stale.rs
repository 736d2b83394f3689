//! A worker that lost its lease while its task ran (it was cut off from the broker, frozen, or
//! its thread blocked, for longer than the lease) while the task ran again elsewhere: the
//! stale run stops, and writes nothing (no state, result, workflow step or callback).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use conveyor::backend::StateUpdate;
use conveyor::{chord, TaskContext, TaskError, TaskExt, TaskMessage, TaskRecord, TaskState};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::wf_tasks::{add, record, recorded, sum};
use super::{eventually, Env, Running};

const WAIT: Duration = Duration::from_secs(20);

/// What the first (stale) attempt of a [`stale`] task does.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Then {
    /// Sleeps for a minute: only a cancellation ends it early.
    Hang,
    /// Once the second attempt finished: heals the partition and fails (retryably).
    FailAfterLive,
    /// Once the second attempt started: heals the partition and fails for good; the second
    /// attempt then waits for it to end before it succeeds.
    SkipBeforeLive,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StaleArgs {
    pub key: String,
    pub then: Then,
}

/// What one key's runs did.
#[derive(Debug, Clone, Default)]
pub struct Runs {
    pub starts: u32,
    /// The first attempt reached its end (rather than being dropped).
    pub stale_returned: bool,
    /// The first attempt ended, either way.
    pub stale_ended: bool,
    pub live_done: bool,
}

fn runs_map() -> &'static Mutex<HashMap<String, Runs>> {
    static RUNS: OnceLock<Mutex<HashMap<String, Runs>>> = OnceLock::new();
    RUNS.get_or_init(Default::default)
}

pub fn runs(key: &str) -> Runs {
    runs_map().lock().unwrap().get(key).cloned().unwrap_or_default()
}

fn with_runs<T>(key: &str, f: impl FnOnce(&mut Runs) -> T) -> T {
    f(runs_map().lock().unwrap().entry(key.to_owned()).or_default())
}

/// The partition of the worker running `key`'s first attempt.
fn partition(key: &str) -> Arc<AtomicBool> {
    static CUTS: OnceLock<Mutex<HashMap<String, Arc<AtomicBool>>>> = OnceLock::new();
    CUTS.get_or_init(Default::default).lock().unwrap().entry(key.to_owned()).or_default().clone()
}

async fn until(what: impl Fn(&Runs) -> bool, key: &str) {
    for _ in 0..1000 {
        if what(&runs(key)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct StaleEnd(String);

impl Drop for StaleEnd {
    fn drop(&mut self) {
        with_runs(&self.0, |r| r.stale_ended = true);
    }
}

/// The first attempt runs on the cut-off worker and behaves as `then` says; later attempts
/// (on the live worker) return 5.
#[conveyor::task(name = "conformance:stale")]
pub async fn stale(a: StaleArgs, ctx: TaskContext) -> std::result::Result<i64, TaskError> {
    let n = with_runs(&a.key, |r| {
        r.starts += 1;
        r.starts
    });
    if n > 1 {
        if a.then == Then::SkipBeforeLive {
            until(|r| r.stale_ended, &a.key).await;
        }
        with_runs(&a.key, |r| r.live_done = true);
        return Ok(5);
    }
    let _end = StaleEnd(a.key.clone());
    let result = match a.then {
        Then::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Err(TaskError::msg("stale failure"))
        }
        Then::FailAfterLive => {
            until(|r| r.live_done, &a.key).await;
            Err(TaskError::msg("stale failure"))
        }
        Then::SkipBeforeLive => {
            until(|r| r.starts > 1, &a.key).await;
            Err(TaskError::skip_retry("stale failure"))
        }
    };
    // The worker sees its broker again only as this returns: the heartbeat has had no chance
    // to notice the lost lease, so only the check before writing the outcome can.
    partition(&a.key).store(false, Ordering::SeqCst);
    with_runs(&a.key, |r| r.stale_returned = true);
    let _ = ctx;
    result
}

/// Starts the worker that will lose its lease (1 s, extensions failing from the start), on
/// `q`, and waits until it runs `key`'s first attempt.
async fn start_stale_worker(env: &Env, q: &str, key: &str) -> Running {
    let cut = partition(key);
    cut.store(true, Ordering::SeqCst);
    let broker = super::faulty::FaultyBroker::partitioned(env.broker.clone(), cut);
    // One slot and no prefetch: it takes nothing else while its task runs.
    let w = Running::start(env.worker_via(broker).queue(q, 1).concurrency(1).prefetch(0).lease(Duration::from_secs(1)));
    eventually(WAIT, "the first attempt running", || async { runs(key).starts == 1 }).await;
    w
}

/// The heartbeat finds the lease lost once the partition heals: the stale handler is dropped
/// where it stands, and the record keeps the live run's outcome.
pub async fn lost_lease_stops_the_stale_run(env: Env) {
    let q = env.q("stale-hang");
    let key = q.clone();
    let args = StaleArgs { key: key.clone(), then: Then::Hang };
    let h = env.client().task(stale, args).queue(&q).max_retry(3).await.unwrap();
    let stale_w = start_stale_worker(&env, &q, &key).await;
    let live_w = Running::start(env.worker().queue(&q, 1));
    assert_eq!(h.get(WAIT).await.unwrap(), 5, "the live run's result");
    partition(&key).store(false, Ordering::SeqCst);
    eventually(WAIT, "the stale run stopped", || async { runs(&key).stale_ended }).await;
    assert!(!runs(&key).stale_returned, "the stale handler is dropped, not left to finish");
    stale_w.stop().await;
    live_w.stop().await;
    let rec = h.status().await.unwrap();
    assert_eq!((rec.state, rec.retried, rec.error), (TaskState::Completed, 1, None), "the live run's record");
    assert_eq!(runs(&key).starts, 2);
}

/// The stale run returns (a failure) after the live run completed, and before any heartbeat
/// could tell it its lease is gone: nothing it would write reaches the record.
pub async fn stale_run_cannot_overwrite_the_live_outcome(env: Env) {
    let q = env.q("stale-late");
    let key = q.clone();
    let args = StaleArgs { key: key.clone(), then: Then::FailAfterLive };
    let h = env.client().task(stale, args).queue(&q).max_retry(3).await.unwrap();
    let stale_w = start_stale_worker(&env, &q, &key).await;
    let live_w = Running::start(env.worker().queue(&q, 1));
    eventually(WAIT, "the stale run returned", || async { runs(&key).stale_returned }).await;
    stale_w.stop().await;
    live_w.stop().await;
    assert_eq!(h.get(WAIT).await.unwrap(), 5);
    let rec = h.status().await.unwrap();
    assert_eq!((rec.state, rec.retried, rec.error), (TaskState::Completed, 1, None), "the live run's record");
    assert_eq!(runs(&key).starts, 2, "the stale failure was not retried");
    let st = env.broker.stats(&q).await.unwrap();
    assert_eq!((st.pending, st.scheduled, st.active, st.archived), (0, 0, 0, 0), "{st:?}");
}

/// A chord member whose stale run fails for good while its live run succeeds: the stale
/// failure is not written into the chord, so the body fires once and the error callback never.
pub async fn stale_chord_member_failure_does_not_fail_the_chord(env: Env) {
    let q = env.q("stale-chord");
    let key = q.clone();
    let (body, err) = (format!("{q}-body"), format!("{q}-err"));
    let member = stale.with(StaleArgs { key: key.clone(), then: Then::SkipBeforeLive }).queue(&q).max_retry(3);
    let body_sig = sum.piped().queue(&q).on_success(record.with(body.clone()).queue(&q));
    let flow = chord([member, add.with((1, 0)).queue(&q)], body_sig).on_error(record.with(err.clone()).queue(&q));
    let h = env.client().enqueue_workflow(flow).await.unwrap();
    let stale_w = start_stale_worker(&env, &q, &key).await;
    let live_w = Running::start(env.worker().queue(&q, 1).concurrency(4));
    assert_eq!(h.get::<i64>(WAIT).await.unwrap(), 6, "the body ran on both members' results");
    eventually(WAIT, "the success callback", || async { !recorded(&body).is_empty() }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stale_w.stop().await;
    live_w.stop().await;
    assert!(runs(&key).stale_returned);
    assert_eq!(recorded(&body), [Value::from(6)], "the body fired once");
    assert!(recorded(&err).is_empty(), "the error callback must not fire: {:?}", recorded(&err));
}

/// The fence in the result backend itself (for a stale write that races the checks above):
/// an update from an earlier attempt than the record's is dropped, and a completed record
/// takes nothing but `completed`.
pub async fn record_writes_are_fenced_by_attempt(env: Env) {
    let mut t = TaskMessage::with_args("conformance:stale", &()).unwrap();
    t.queue = env.q("fence");
    let b = &env.backend;
    let state = |r: TaskRecord| (r.state, r.retried, r.error);
    b.create(&TaskRecord::enqueued(&t)).await.unwrap();
    // Attempt 1 runs (attempt 0 lost its lease); attempt 0's late failure is dropped.
    b.update(&t, StateUpdate::to(TaskState::Active, 1)).await.unwrap();
    b.update(&t, StateUpdate::retry(1, "stale".into())).await.unwrap();
    b.update(&t, StateUpdate::archived(0, "stale".into(), Duration::from_secs(60))).await.unwrap();
    assert_eq!(state(b.get(&t.id).await.unwrap().unwrap()), (TaskState::Active, 1, None));
    // Attempt 1 fails, attempt 2 completes.
    b.update(&t, StateUpdate::retry(2, "failed once".into())).await.unwrap();
    b.update(&t, StateUpdate::to(TaskState::Active, 2)).await.unwrap();
    let five = serde_json::value::to_raw_value(&5).unwrap();
    b.update(&t, StateUpdate::completed(2, five, Duration::from_secs(60))).await.unwrap();
    // Nothing but `completed` over `completed`, whatever the attempt.
    b.update(&t, StateUpdate::retry(3, "late".into())).await.unwrap();
    b.update(&t, StateUpdate::to(TaskState::Pending, 2)).await.unwrap();
    b.update(&t, StateUpdate::archived(2, "late".into(), Duration::from_secs(60))).await.unwrap();
    let rec = b.get(&t.id).await.unwrap().unwrap();
    assert_eq!(rec.result_as::<i64>().unwrap(), Some(5));
    assert_eq!(state(rec), (TaskState::Completed, 2, Some("failed once".into())));
}
