//! Enqueues and workflow launches cut short (the publish failed, and undoing what was written
//! failed too): retrying with the same task id, or running the launching step again, queues
//! the task; nothing is left marked as enqueued with nothing behind it.

use std::sync::Arc;
use std::time::Duration;

use conveyor::{chain, chord, Client, Error, TaskExt, TaskId, TaskState};

use super::faulty::{FaultyBroker, NoCleanup};
use super::tasks::{log, probe, Probe};
use super::wf_tasks::{add, double, sum};
use super::{Env, Running};

const WAIT: Duration = Duration::from_secs(15);

/// A client whose publishes of `probe` fail once, and whose clean-ups fail.
fn faulty_client(env: &Env, stored: bool) -> (Client, Arc<FaultyBroker>) {
    let broker = FaultyBroker::new(env.broker.clone(), "conformance:probe", 1, stored);
    (Client::new(broker.clone(), Arc::new(NoCleanup(env.backend.clone()))), broker)
}

/// The enqueue failed before the broker stored the task, and its record could not be removed:
/// a retry with the same id enqueues it (it answered `DuplicateTask` with nothing queued).
pub async fn enqueue_retried_after_a_failed_publish_and_cleanup(env: Env) {
    let q = env.q("enq-retry");
    let (client, broker) = faulty_client(&env, false);
    let id = TaskId::from(format!("{q}-fixed"));
    let first = client.task(probe, Probe::new(&q)).queue(&q).task_id(id.clone()).await.unwrap_err();
    assert!(broker.failed_all());
    assert!(first.may_have_been_stored(), "{first}");
    let h = client.task(probe, Probe::new(&q)).queue(&q).task_id(id.clone()).await.expect("the retry enqueues it");
    let w = Running::start(env.worker().queue(&q, 1));
    assert_eq!(h.get(WAIT).await.unwrap(), 1);
    w.stop().await;
    assert_eq!(log(&q).starts.len(), 1, "ran once");
}

/// The broker stored the task but its answer was lost, and the record could not be removed:
/// the retry with the same id enqueues it or answers that it is queued; either way it runs.
pub async fn enqueue_whose_answer_was_lost_runs(env: Env) {
    let q = env.q("enq-lost-answer");
    let (client, _) = faulty_client(&env, true);
    let id = TaskId::from(format!("{q}-fixed"));
    assert!(client.task(probe, Probe::new(&q)).queue(&q).task_id(id.clone()).await.unwrap_err().may_have_been_stored());
    match client.task(probe, Probe::new(&q)).queue(&q).task_id(id.clone()).await {
        Ok(_) | Err(Error::DuplicateTask { .. }) => {}
        Err(e) => panic!("the retry failed: {e}"),
    }
    let w = Running::start(env.worker().queue(&q, 1));
    let rec = env.client().wait(&id, WAIT).await.unwrap();
    assert_eq!(rec.state, TaskState::Completed);
    w.stop().await;
    // Brokers that keep no index of live task ids (all but Redis) may run both copies.
    assert!(!log(&q).starts.is_empty());
}

/// A worker whose publishes of `name` fail once, with clean-ups failing, on `q`.
fn faulty_worker(env: &Env, q: &str, name: &str) -> (Running, Arc<FaultyBroker>) {
    let broker = FaultyBroker::new(env.broker.clone(), name, 1, false);
    let w = Running::start(env.builder(broker.clone(), Arc::new(NoCleanup(env.backend.clone()))).queue(q, 1));
    (w, broker)
}

/// The publish of a chain's next step fails, and so does undoing its launch: the step before
/// fails its attempt, runs again, and launches the step (the chain used to hang).
pub async fn chain_step_launched_after_a_failed_publish(env: Env) {
    let q = env.q("launch-chain");
    let (w, broker) = faulty_worker(&env, &q, "wf:double");
    let flow = chain([add.with((1, 2)).queue(&q), double.piped().queue(&q), double.piped().queue(&q)]);
    let h = env.client().enqueue_workflow(flow).await.unwrap();
    assert_eq!(h.get::<i64>(WAIT).await.unwrap(), 12);
    assert!(broker.failed_all());
    w.stop().await;
}

/// The same for a chord's body, launched by the member that completes the group.
pub async fn chord_body_launched_after_a_failed_publish(env: Env) {
    let q = env.q("launch-chord");
    let (w, broker) = faulty_worker(&env, &q, "wf:sum");
    let flow = chord([add.with((1, 0)).queue(&q), add.with((2, 0)).queue(&q)], sum.piped().queue(&q));
    let h = env.client().enqueue_workflow(flow).await.unwrap();
    assert_eq!(h.get::<i64>(WAIT).await.unwrap(), 3);
    assert!(broker.failed_all());
    w.stop().await;
}
