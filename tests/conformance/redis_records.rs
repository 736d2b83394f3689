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
