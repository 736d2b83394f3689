//! Chains, groups, chords and callbacks.

use std::sync::Arc;
use std::time::Duration;

use conveyor::broker::ReceiveRequest;
use conveyor::{chain, chord, group, Error, Signature, TaskExt, TaskMessage, TaskState};
use serde_json::{json, Value};

use super::wf_tasks::{add, double, fail, record, recorded, sum};
use super::{eventually, Env, Running};

const WAIT: Duration = Duration::from_secs(15);

/// Puts a signature on the test's queue.
fn on(q: &str) -> impl Fn(Signature) -> Signature + '_ {
    move |s| s.queue(q)
}

pub async fn chain_passes_results(env: Env) {
    let q = env.q("chain");
    let s = on(&q);
    let w = Running::start(env.worker().queue(&q, 1));
    let h = env
        .client()
        .enqueue_workflow(chain([s(add.with((1, 2))), s(double.piped()), s(double.piped())]))
        .await
        .unwrap();
    assert_eq!(h.get::<i64>(WAIT).await.unwrap(), 12);
    w.stop().await;
}

pub async fn chain_immutable_and_previous_result(env: Env) {
    let q = env.q("chain-imm");
    let s = on(&q);
    let w = Running::start(env.worker().queue(&q, 1));
    let flow = chain([
        s(add.with((1, 2))),
        s(record.with(format!("{q}-mutable"))), // keeps its args, sees 3 in its context
        s(add.with((10, 10)).immutable()),      // ignores the previous result
        s(record.with(format!("{q}-after-imm"))), // sees 20
    ]);
    let h = env.client().enqueue_workflow(flow).await.unwrap();
    assert_eq!(h.get::<Value>(WAIT).await.unwrap(), json!(20));
    assert_eq!(recorded(&format!("{q}-mutable")), [json!(3)]);
    // Each step names the task that launched it.
    let parent = recorded(&format!("{q}-mutable:parent"));
    assert!(parent.len() == 1 && parent[0].is_string(), "{parent:?}");
    assert_eq!(recorded(&format!("{q}-after-imm")), [json!(20)]);
    w.stop().await;
}

pub async fn chain_failure_stops_and_fires_on_error(env: Env) {
    let q = env.q("chain-fail");
    let s = on(&q);
    let w = Running::start(env.worker().queue(&q, 1));
    let after = format!("{q}-after");
    let flow = chain([s(add.with((1, 2))), s(fail.with("boom".into())), s(record.with(after.clone()))])
        .on_error(s(record.with(format!("{q}-err"))));
    env.client().enqueue_workflow(flow).await.unwrap();
    eventually(WAIT, "the error callback", || async { !recorded(&format!("{q}-err")).is_empty() }).await;
    let err = &recorded(&format!("{q}-err"))[0];
    assert_eq!(err["task_name"], "wf:fail");
    assert_eq!(err["error"], "boom");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(recorded(&after).is_empty(), "the step after a failure must not run");
    assert_eq!(recorded(&format!("{q}-err")).len(), 1);
    w.stop().await;
}

pub async fn group_results_in_order(env: Env) {
    let q = env.q("group");
    let s = on(&q);
    let w = Running::start(env.worker().queue(&q, 1).concurrency(4));
    let h = env.client().enqueue_workflow(group((0..10).map(|i| s(add.with((i, i)))))).await.unwrap();
    assert_eq!(h.get::<Vec<i64>>(WAIT).await.unwrap(), (0..10).map(|i| i * 2).collect::<Vec<_>>());
    w.stop().await;
}

pub async fn chord_body_gets_all_results(env: Env) {
    let q = env.q("chord");
    let s = on(&q);
    let w = Running::start(env.worker().queue(&q, 1).concurrency(4));
    let h = env.client().enqueue_workflow(chord((1..=5).map(|i| s(add.with((i, 0)))), s(sum.piped()))).await.unwrap();
    assert_eq!(h.get::<i64>(WAIT).await.unwrap(), 15);
    w.stop().await;
}

/// Many chords whose members finish at the same time on two workers: every body fires once.
pub async fn chord_fires_exactly_once_under_concurrency(env: Env) {
    let q = env.q("chord-race");
    let s = on(&q);
    let client = env.client();
    const CHORDS: usize = 60;
    const MEMBERS: i64 = 6;
    let mut handles = Vec::new();
    for c in 0..CHORDS {
        let body = s(record.with(format!("{q}-{c}")));
        handles.push(client.enqueue_workflow(chord((0..MEMBERS).map(|i| s(add.with((i, 0)))), body)).await.unwrap());
    }
    let w1 = Running::start(env.worker().queue(&q, 1).concurrency(8));
    let w2 = Running::start(env.worker().queue(&q, 1).concurrency(8));
    for h in &handles {
        h.get::<Value>(WAIT).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for c in 0..CHORDS {
        let fired = recorded(&format!("{q}-{c}"));
        assert_eq!(fired.len(), 1, "chord {c} fired {} times", fired.len());
        assert_eq!(fired[0], json!([0, 1, 2, 3, 4, 5]));
    }
    w1.stop().await;
    w2.stop().await;
}

/// A member delivered again after it completed (a worker died before its ack) reports again;
/// the chord body still fires once.
pub async fn redelivered_member_does_not_fire_twice(env: Env) {
    let q = env.q("chord-redeliver");
    let s = on(&q);
    let key = format!("{q}-body");
    let flow = chord([s(add.with((1, 0))), s(add.with((2, 0)))], s(record.with(key.clone())));
    let h = env.client().enqueue_workflow(flow).await.unwrap();
    // Take member 0 as a receiver that dies: its lease runs out, and it is delivered again.
    let stop = conveyor::CancellationToken::new();
    let lease = Duration::from_secs(1);
    let req = ReceiveRequest { queues: &[q.as_str()], max: 1, wait: WAIT, lease, max_payload: usize::MAX, stop: &stop };
    let taken = env.broker.receive(&req).await.unwrap();
    let copy: Arc<TaskMessage> = taken[0].task().unwrap().clone();
    let w = Running::start(env.worker().queue(&q, 1));
    assert_eq!(h.get::<Value>(WAIT).await.unwrap(), json!([1, 2]));
    // Its ack may land just after its result (a broker that keeps live ids refuses a copy
    // until then).
    eventually(WAIT, "the members acked", || async {
        let st = env.broker.stats(&q).await.unwrap();
        (st.pending, st.active) == (0, 0)
    })
    .await;
    // And once more, as if a worker had finished it but died before acking.
    env.broker.publish(&copy).await.unwrap();
    eventually(WAIT, "the duplicate processed", || async { env.broker.stats(&q).await.unwrap().pending == 0 }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(recorded(&key).len(), 1, "the body fired {:?}", recorded(&key));
    w.stop().await;
}

pub async fn chord_member_failure_fires_error_once(env: Env) {
    let q = env.q("chord-fail");
    let s = on(&q);
    let (body, err) = (format!("{q}-body"), format!("{q}-err"));
    let flow = chord(
        [s(add.with((1, 0))), s(fail.with("m1".into())), s(fail.with("m2".into()))],
        s(record.with(body.clone())),
    )
    .on_error(s(record.with(err.clone())));
    let h = env.client().enqueue_workflow(flow).await.unwrap();
    let w = Running::start(env.worker().queue(&q, 1).concurrency(4));
    eventually(WAIT, "the chord error callback", || async { !recorded(&err).is_empty() }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(recorded(&err).len(), 1, "fired {:?}", recorded(&err));
    assert!(recorded(&body).is_empty(), "the body must not fire");
    let e = h.get::<Value>(WAIT).await.unwrap_err();
    assert!(matches!(&e, Error::TaskFailed { error, .. } if error.contains("m1") || error.contains("m2")), "{e}");
    w.stop().await;
}

pub async fn composition(env: Env) {
    let q = env.q("compose");
    let s = on(&q);
    let w = Running::start(env.worker().queue(&q, 1).concurrency(4));
    let client = env.client();
    // A chain of groups: the group's results go to the next step as an array.
    let flow =
        chain([group([s(add.with((1, 1))), s(add.with((2, 2)))]), s(sum.piped()).into(), s(double.piped()).into()]);
    assert_eq!(client.enqueue_workflow(flow).await.unwrap().get::<i64>(WAIT).await.unwrap(), 12);
    // A chord inside a chain: members get the previous result, the body's result goes on.
    let flow = chain([
        Into::<conveyor::Canvas>::into(s(add.with((2, 3)))),
        chord([s(double.piped()), s(double.piped())], s(sum.piped())),
        s(double.piped()).into(),
    ]);
    assert_eq!(client.enqueue_workflow(flow).await.unwrap().get::<i64>(WAIT).await.unwrap(), 40);
    // Groups of chains.
    let flow =
        group([chain([s(add.with((1, 0))), s(double.piped())]), chain([s(add.with((5, 0))), s(double.piped())])]);
    assert_eq!(client.enqueue_workflow(flow).await.unwrap().get::<Vec<i64>>(WAIT).await.unwrap(), [2, 10]);
    // A signature's own on-success callback gets its result.
    let cb = format!("{q}-cb");
    let h = client.enqueue_workflow(s(add.with((4, 4))).on_success(s(record.with(cb.clone())))).await.unwrap();
    assert_eq!(h.get::<i64>(WAIT).await.unwrap(), 8);
    eventually(WAIT, "the success callback", || async { recorded(&cb) == [json!(8)] }).await;
    w.stop().await;
}

pub async fn unknown_step_is_archived_and_fires_on_error(env: Env) {
    let q = env.q("chain-unknown");
    let s = on(&q);
    let w = Running::start(env.worker().queue(&q, 1));
    let err = format!("{q}-err");
    let missing = Signature::piped_raw("no:such:step").queue(&q);
    let missing_id = missing.id.clone();
    let flow = chain([s(add.with((1, 2))), missing]).on_error(s(record.with(err.clone())));
    env.client().enqueue_workflow(flow).await.unwrap();
    eventually(WAIT, "the error callback", || async { !recorded(&err).is_empty() }).await;
    assert_eq!(recorded(&err)[0]["error"], "no handler registered for task `no:such:step`");
    let rec = env.client().get(&missing_id).await.unwrap().unwrap();
    assert_eq!(rec.state, TaskState::Archived);
    w.stop().await;
}

pub async fn invalid_workflows_publish_nothing(env: Env) {
    let q = env.q("invalid");
    let s = on(&q);
    let client = env.client();
    let empty: Vec<Signature> = Vec::new();
    for (flow, expected) in [
        (group(empty.clone()), "has no members"),
        (chain(empty.clone()), "a chain has no steps"),
        (chord(empty, s(sum.piped())), "has no members"),
    ] {
        let err = client.enqueue_workflow(flow).await.err().unwrap();
        assert!(matches!(&err, Error::InvalidWorkflow(m) if m.contains(expected)), "{err}");
    }
    let reused = s(add.with((1, 1)));
    let err = client.enqueue_workflow(chain([reused.clone(), reused])).await.err().unwrap();
    assert!(matches!(&err, Error::InvalidWorkflow(m) if m.contains("appears twice")), "{err}");
    assert_eq!(env.broker.stats(&q).await.unwrap().pending, 0);
}

/// Error callbacks stay in their scope: an inner chain's `on_error` fires only for its steps,
/// a chord's covers its body, and a failed chain reports the failure to its handle.
pub async fn error_scopes(env: Env) {
    let q = env.q("scopes");
    let s = on(&q);
    let w = Running::start(env.worker().queue(&q, 1).concurrency(4));
    let client = env.client();
    let k = |n: &str| format!("{q}-{n}");
    // The outer step fails: the inner chain's callback must not fire, the outer one must.
    let flow = chain([
        chain([s(add.with((1, 1))), s(double.piped())]).on_error(s(record.with(k("inner1")))),
        s(fail.with("outer".into())).into(),
    ])
    .on_error(s(record.with(k("outer1"))));
    let h = client.enqueue_workflow(flow).await.unwrap();
    let err = h.get::<Value>(WAIT).await.unwrap_err();
    assert!(matches!(&err, Error::TaskFailed { error, .. } if error.contains("outer")), "{err}");
    eventually(WAIT, "outer callback", || async { recorded(&k("outer1")).len() == 1 }).await;
    // An inner step fails: both callbacks fire, the step after the inner chain does not run.
    let flow = chain([
        chain([s(add.with((1, 1))), s(fail.with("inner".into()))]).on_error(s(record.with(k("inner2")))),
        s(record.with(k("never"))).into(),
    ])
    .on_error(s(record.with(k("outer2"))));
    client.enqueue_workflow(flow).await.unwrap();
    eventually(WAIT, "both callbacks", || async {
        recorded(&k("inner2")).len() == 1 && recorded(&k("outer2")).len() == 1
    })
    .await;
    // A chord whose body fails fires the chord's callback.
    let flow = chord([s(add.with((1, 0)))], s(fail.with("body".into()))).on_error(s(record.with(k("chord"))));
    client.enqueue_workflow(flow).await.unwrap();
    eventually(WAIT, "chord callback for its body", || async { recorded(&k("chord")).len() == 1 }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(recorded(&k("inner1")).is_empty(), "the inner chain's callback fired for an outer step");
    assert!(recorded(&k("never")).is_empty());
    assert_eq!(recorded(&k("outer1")).len(), 1);
    w.stop().await;
}

/// Groups inside groups, chords inside groups, and a worker that keeps no results.
pub async fn nested_groups_and_no_retention(env: Env) {
    let q = env.q("nested");
    let s = on(&q);
    let w = Running::start(env.worker().queue(&q, 1).concurrency(4).retention(Duration::ZERO));
    let client = env.client();
    let flow = group([group([s(add.with((1, 0))), s(add.with((2, 0)))]), s(add.with((3, 0))).into()]);
    let got = client.enqueue_workflow(flow).await.unwrap().get::<Value>(WAIT).await.unwrap();
    assert_eq!(got, json!([[1, 2], 3]));
    let flow = group([chord([s(add.with((1, 0))), s(add.with((2, 0)))], s(sum.piped())), s(add.with((5, 0))).into()]);
    assert_eq!(client.enqueue_workflow(flow).await.unwrap().get::<Vec<i64>>(WAIT).await.unwrap(), [3, 5]);
    w.stop().await;
}
