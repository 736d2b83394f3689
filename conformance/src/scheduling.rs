//! Delays and retries.

use std::time::{Duration, SystemTime};

use conveyor::TaskState;
use tokio::time::Instant;

use super::tasks::{log, probe, Probe};
use super::{Env, Running};

const WAIT: Duration = Duration::from_secs(10);

pub async fn delay_is_never_early(env: Env) {
    let q = env.q("delay");
    let client = env.client();
    let w = Running::start(env.worker().queue(&q, 1));
    let delay = Duration::from_millis(1500);
    let enqueued = Instant::now();
    let h = client.task(probe, Probe::new(&q)).queue(&q).process_in(delay).await.unwrap();
    assert_eq!(h.enqueued_state(), TaskState::Scheduled);
    // A task at an absolute time, too.
    let key2 = format!("{q}-at");
    let h2 = client.task(probe, Probe::new(&key2)).queue(&q).process_at(SystemTime::now() + delay).await.unwrap();
    assert_eq!(env.broker.stats(&q).await.unwrap().scheduled, 2);
    h.get(WAIT).await.unwrap();
    h2.get(WAIT).await.unwrap();
    for key in [&q, &key2] {
        let started = log(key).starts[0];
        assert!(started - enqueued >= delay, "{key} ran {:?} after enqueue, before its delay", started - enqueued);
    }
    w.stop().await;
}

pub async fn retry_uses_backoff_then_succeeds(env: Env) {
    let q = env.q("retry");
    let client = env.client();
    let w = Running::start(env.worker().queue(&q, 1).retry_policy(
        |n: u32, _: &conveyor::TaskError, _: &conveyor::TaskMessage| Duration::from_millis(200 * u64::from(n)),
    ));
    let h = client.task(probe, Probe { fail_times: 2, ..Probe::new(&q) }).queue(&q).await.unwrap();
    assert_eq!(h.get(WAIT).await.unwrap(), 3);
    let l = log(&q);
    assert_eq!(l.retried_seen, [0, 1, 2]);
    assert!(l.starts[1] - l.starts[0] >= Duration::from_millis(200), "{l:?}");
    assert!(l.starts[2] - l.starts[1] >= Duration::from_millis(400), "{l:?}");
    let rec = h.status().await.unwrap();
    assert_eq!((rec.state, rec.retried), (TaskState::Completed, 2));
    assert_eq!(rec.error.as_deref(), Some("probe failure on attempt 2"));
    // Each attempt in the record's history, with its own error.
    let ran: Vec<_> = rec.attempts.iter().map(|a| (a.number, a.outcome, a.error.as_deref())).collect();
    assert_eq!(
        ran,
        [
            (0, TaskState::Retry, Some("probe failure on attempt 1")),
            (1, TaskState::Retry, Some("probe failure on attempt 2")),
            (2, TaskState::Completed, None)
        ],
        "{rec:?}"
    );
    assert!(rec.attempts.windows(2).all(|w| w[0].ended_at <= w[1].started_at), "{rec:?}");
    w.stop().await;
}

pub async fn retry_after_from_handler(env: Env) {
    let q = env.q("retry-after");
    let client = env.client();
    let w = Running::start(env.worker().queue(&q, 1));
    let p = Probe { fail_times: 1, retry_after_ms: Some(700), ..Probe::new(&q) };
    let h = client.task(probe, p).queue(&q).await.unwrap();
    assert_eq!(h.get(WAIT).await.unwrap(), 2);
    let l = log(&q);
    assert!(l.starts[1] - l.starts[0] >= Duration::from_millis(700), "{l:?}");
    w.stop().await;
}
