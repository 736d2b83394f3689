//! Publish, receive, ack; states and results; enqueue-time errors.

use std::time::Duration;

use conveyor::broker::ReceiveRequest;
use conveyor::{Error, TaskState};

use super::tasks::{probe, Probe};
use super::{Env, Running};

const WAIT: Duration = Duration::from_secs(10);

pub async fn publish_receive_ack(env: Env) {
    let q = env.q("basic");
    let client = env.client();
    let h = client.task(probe, Probe::new(&q)).queue(&q).await.unwrap();
    assert_eq!(h.enqueued_state(), TaskState::Pending);
    assert_eq!(env.broker.stats(&q).await.unwrap().pending, 1);

    // Straight through the broker: receive, then ack.
    let stop = conveyor::CancellationToken::new();
    let req = ReceiveRequest {
        queues: &[q.as_str()],
        max: 10,
        wait: WAIT,
        lease: Duration::from_secs(30),
        max_payload: usize::MAX,
        stop: &stop,
    };
    let got = env.broker.receive(&req).await.unwrap();
    assert_eq!(got.len(), 1);
    let task = got[0].task().expect("decoded task");
    assert_eq!(&task.id, h.id());
    assert_eq!(task.name, "conformance:probe");
    let stats = env.broker.stats(&q).await.unwrap();
    assert_eq!((stats.pending, stats.active), (0, 1));
    env.broker.ack(&got[0]).await.unwrap();
    let stats = env.broker.stats(&q).await.unwrap();
    assert_eq!((stats.pending, stats.active), (0, 0));
}

pub async fn results_and_states(env: Env) {
    let q = env.q("results");
    let client = env.client();
    let w = Running::start(env.worker().queue(&q, 1));
    let h = client.task(probe, Probe::new(&q)).queue(&q).await.unwrap();
    assert_eq!(h.get(WAIT).await.unwrap(), 1);
    let rec = h.status().await.unwrap();
    assert_eq!(rec.state, TaskState::Completed);
    assert_eq!(rec.queue, q);
    assert_eq!(rec.retried, 0);
    w.stop().await;
    let stats = env.broker.stats(&q).await.unwrap();
    assert_eq!((stats.pending, stats.active, stats.archived), (0, 0, 0));
}

pub async fn duplicate_task_id_is_a_conflict(env: Env) {
    let q = env.q("dup");
    let client = env.client();
    let id = format!("{q}-order-42");
    client.task(probe, Probe::new(&q)).queue(&q).task_id(id.as_str()).await.unwrap();
    let err = client.task(probe, Probe::new(&q)).queue(&q).task_id(id.as_str()).await.unwrap_err();
    assert!(matches!(&err, Error::DuplicateTask { id: i } if *i == id), "{err}");
    assert!(err.is_duplicate());
    assert_eq!(env.broker.stats(&q).await.unwrap().pending, 1, "the duplicate must not be published");
}

pub async fn payload_over_limit_is_refused(env: Env) {
    let q = env.q("big");
    let client = env.client().max_payload(1024);
    let big = Probe::new("x".repeat(2000));
    let err = client.task(probe, big).queue(&q).await.unwrap_err();
    assert!(matches!(err, Error::PayloadTooLarge { limit: 1024, size } if size > 2000), "{err}");
    // The default limit is 256 KiB.
    let err = env.client().task(probe, Probe::new("y".repeat(300 * 1024))).queue(&q).await.unwrap_err();
    assert!(matches!(err, Error::PayloadTooLarge { limit: 262_144, .. }), "{err}");
    assert_eq!(env.broker.stats(&q).await.unwrap().pending, 0, "nothing may be published");
}

pub async fn bulk_enqueue(env: Env) {
    let q = env.q("bulk");
    let client = env.client();
    let taken = format!("{q}-taken");
    client.task(probe, Probe::new(&taken)).queue(&q).task_id(taken.as_str()).await.unwrap();
    let mut msgs: Vec<_> =
        (0..25).map(|i| client.task(probe, Probe::new(format!("{q}-{i}"))).queue(&q).build().unwrap()).collect();
    // One task in the batch reuses an id: only that one is refused.
    let dup = client.task(probe, Probe::new(&taken)).queue(&q).task_id(taken.as_str()).build().unwrap();
    msgs.insert(7, dup);
    let results = client.enqueue_messages(&msgs).await;
    assert!(matches!(&results[7], Err(Error::DuplicateTask { .. })), "{:?}", results[7]);
    assert!(results.iter().enumerate().all(|(i, r)| i == 7 || r.is_ok()), "{results:?}");
    msgs.remove(7);
    assert_eq!(env.broker.stats(&q).await.unwrap().pending, 26);
    let w = Running::start(env.worker().queue(&q, 1));
    for m in &msgs {
        let rec = client.wait(&m.id, WAIT).await.unwrap();
        assert_eq!(rec.state, TaskState::Completed);
    }
    w.stop().await;
}
