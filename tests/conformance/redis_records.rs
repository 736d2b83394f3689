//! The Redis result backend's task records, as stored in Redis.

use std::time::Duration;

use conveyor::backend::{StateUpdate, UNCONFIRMED_TTL};
use conveyor::{TaskMessage, TaskRecord, TaskState};

/// A record written by an enqueue lapses unless the publish is confirmed (or a worker writes
/// to it); an unconfirmed one never blocks a second enqueue with the same id.
#[tokio::test]
async fn unconfirmed_records_lapse_and_are_replaced() {
    let prefix = format!("r{}", uuid::Uuid::new_v4().simple());
    let url = format!("{}/?prefix={prefix}", crate::redis::url().trim_end_matches('/'));
    let backend = conveyor::backend(&url).await.expect("Redis reachable (scripts/redis start)");
    let client = redis::Client::open(crate::redis::url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let ttl = |conn: &mut redis::aio::MultiplexedConnection, t: &TaskMessage| {
        let key = format!("{prefix}:task:{}", t.id);
        let mut conn = conn.clone();
        async move { redis::cmd("PTTL").arg(key).query_async::<i64>(&mut conn).await.unwrap() }
    };

    let t = TaskMessage::with_args("x", &1).unwrap();
    backend.create(&TaskRecord::enqueued(&t)).await.unwrap();
    let left = ttl(&mut conn, &t).await;
    assert!(left > 0 && left <= UNCONFIRMED_TTL.as_millis() as i64, "unconfirmed: lapses ({left} ms)");
    backend.create(&TaskRecord::enqueued(&t)).await.expect("an unconfirmed record is replaced");
    backend.confirm(&t.id).await.unwrap();
    assert_eq!(ttl(&mut conn, &t).await, -1, "confirmed: kept");
    let err = backend.create(&TaskRecord::enqueued(&t)).await.unwrap_err();
    assert!(err.is_duplicate(), "{err}");

    // A worker's first write confirms the record too.
    let t2 = TaskMessage::with_args("x", &2).unwrap();
    backend.create(&TaskRecord::enqueued(&t2)).await.unwrap();
    backend.update(&t2, StateUpdate::to(TaskState::Active, 0)).await.unwrap();
    assert_eq!(ttl(&mut conn, &t2).await, -1);
    assert!(backend.create(&TaskRecord::enqueued(&t2)).await.unwrap_err().is_duplicate());

    // A task that finished before the client confirmed its enqueue keeps its retention.
    let t3 = TaskMessage::with_args("x", &3).unwrap();
    backend.create(&TaskRecord::enqueued(&t3)).await.unwrap();
    let done = serde_json::value::to_raw_value(&3).unwrap();
    backend.update(&t3, StateUpdate::completed(0, done, Duration::from_secs(60))).await.unwrap();
    backend.confirm(&t3.id).await.unwrap();
    let left = ttl(&mut conn, &t3).await;
    assert!(left > 0 && left <= 60_000, "the retention stands ({left} ms)");
}

/// With `list_completed=true`, a completed record joins its queue's index in the same round
/// trip, also when the server forgot the scripts (restarted, `SCRIPT FLUSH`); what lapsed is
/// neither counted nor listed; the newest 20 attempts are kept. Without it, completed tasks
/// are neither counted nor listed, and the error says how to turn it on.
#[tokio::test]
async fn completed_index_and_attempts_survive_a_script_flush() {
    // A server of its own: flushing the shared one's scripts would disturb the other tests.
    let (_server, server) = crate::redis_faults::own_server(6397, "records");
    let prefix = format!("r{}", uuid::Uuid::new_v4().simple());
    let backend = conveyor::backend(&format!("{server}/?prefix={prefix}&list_completed=true"))
        .await
        .expect("Redis reachable (scripts/redis start)");
    let client = redis::Client::open(server.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let done = serde_json::value::to_raw_value(&1).unwrap();

    let mut t = TaskMessage::with_args("x", &1).unwrap();
    t.queue = "q".into();
    let started = std::time::SystemTime::now();
    for n in 0..25 {
        let a = conveyor::Attempt::ended(n, started, TaskState::Retry, Some(format!("e{n}|with a bar")));
        backend.update(&t, StateUpdate::retry(n + 1, format!("e{n}")).after(Some(a))).await.unwrap();
    }
    redis::cmd("SCRIPT").arg("FLUSH").query_async::<()>(&mut conn).await.unwrap();
    let a = conveyor::Attempt::ended(25, started, TaskState::Completed, None).on("host:1");
    let update = StateUpdate::completed(25, done.clone(), Duration::from_secs(60)).after(Some(a));
    backend.update(&t, update).await.unwrap();
    let rec = backend.get(&t.id).await.unwrap().unwrap();
    let numbers: Vec<u32> = rec.attempts.iter().map(|a| a.number).collect();
    assert_eq!(numbers, (6..=25).collect::<Vec<_>>(), "the newest 20");
    assert_eq!(rec.attempts[0].error.as_deref(), Some("e6|with a bar"));
    assert_eq!((rec.attempts[19].outcome, rec.attempts[19].worker.as_deref()), (TaskState::Completed, Some("host:1")));
    assert_eq!(backend.completed_count("q").await.unwrap(), 1);
    assert_eq!(backend.completed("q", 0, 10).await.unwrap()[0].id, t.id);

    // A record that lapsed is neither counted nor listed.
    let mut short = TaskMessage::with_args("x", &2).unwrap();
    short.queue = "q".into();
    backend.update(&short, StateUpdate::completed(0, done.clone(), Duration::from_millis(50))).await.unwrap();
    assert_eq!(backend.completed_count("q").await.unwrap(), 2);
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(backend.completed_count("q").await.unwrap(), 1, "lapsed: not counted");
    assert_eq!(backend.completed("q", 0, 10).await.unwrap().len(), 1, "lapsed: not listed");

    // Off by default.
    let plain = conveyor::backend(&format!("{server}/?prefix={prefix}")).await.unwrap();
    let err = plain.completed_count("q").await.unwrap_err();
    assert!(err.to_string().contains("list_completed=true"), "{err}");
    let bad = conveyor::backend(&format!("{server}/?list_completed=yes")).await.err().expect("refused");
    assert!(bad.to_string().contains("true or false"), "{bad}");
}
