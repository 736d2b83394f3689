use std::time::Duration;

use conveyor_core::{
    Error, LockResult, ResultBackend, StateUpdate, TaskMessage, TaskRecord, TaskState, UNCONFIRMED_TTL,
};

use super::MemoryBackend;

#[tokio::test(start_paused = true)]
async fn records_expire_after_retention_and_duplicates_conflict() {
    let b = MemoryBackend::new();
    let t = TaskMessage::with_args("x", &1).unwrap();
    b.create(&TaskRecord::enqueued(&t)).await.unwrap();
    b.confirm(&t.id).await.unwrap();
    let err = b.create(&TaskRecord::enqueued(&t)).await.unwrap_err();
    assert!(matches!(err, Error::DuplicateTask { .. }), "{err}");
    let result = serde_json::value::to_raw_value(&42).unwrap();
    b.update(&t, StateUpdate::completed(0, result, Duration::from_secs(10))).await.unwrap();
    let r = b.wait(&t.id, Duration::from_secs(1)).await.unwrap();
    assert_eq!(r.state, TaskState::Completed);
    assert_eq!(r.result_as::<i32>().unwrap(), Some(42));
    tokio::time::advance(Duration::from_secs(11)).await;
    assert!(b.get(&t.id).await.unwrap().is_none());
}

/// The record of an enqueue whose publish was never confirmed: replaced by a second enqueue
/// with the same id, and gone after `UNCONFIRMED_TTL`; a confirmed one stays.
#[tokio::test(start_paused = true)]
async fn unconfirmed_records_are_replaced_and_lapse() {
    let b = MemoryBackend::new();
    let (t, kept) = (TaskMessage::with_args("x", &1).unwrap(), TaskMessage::with_args("x", &2).unwrap());
    b.create(&TaskRecord::enqueued(&t)).await.unwrap();
    b.create(&TaskRecord::enqueued(&t)).await.expect("an unconfirmed record is replaced");
    b.create(&TaskRecord::enqueued(&kept)).await.unwrap();
    b.confirm(&kept.id).await.unwrap();
    tokio::time::advance(UNCONFIRMED_TTL + Duration::from_secs(1)).await;
    assert!(b.get(&t.id).await.unwrap().is_none(), "lapsed");
    assert_eq!(b.get(&kept.id).await.unwrap().unwrap().state, TaskState::Pending);
}

#[tokio::test(start_paused = true)]
async fn wait_wakes_on_completion_and_times_out() {
    let b = MemoryBackend::new();
    let t = TaskMessage::with_args("x", &1).unwrap();
    b.create(&TaskRecord::enqueued(&t)).await.unwrap();
    let err = b.wait(&t.id, Duration::from_secs(2)).await.unwrap_err();
    assert!(err.is_timeout());
    let (b2, t2) = (b.clone(), t.clone());
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        b2.update(&t2, StateUpdate::archived(0, "boom".into(), Duration::from_secs(60))).await.unwrap();
    });
    let r = b.wait(&t.id, Duration::from_secs(5)).await.unwrap();
    assert_eq!(r.state, TaskState::Archived);
    assert!(matches!(r.result_as::<i32>(), Err(Error::TaskFailed { .. })));
}

#[tokio::test(start_paused = true)]
async fn locks_have_holders_and_ttls() {
    let b = MemoryBackend::new();
    assert_eq!(b.try_lock("k", "a", Duration::from_secs(5)).await.unwrap(), LockResult::Acquired);
    assert_eq!(b.try_lock("k", "b", Duration::from_secs(5)).await.unwrap(), LockResult::Held { holder: "a".into() });
    assert!(!b.unlock("k", "b").await.unwrap());
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(b.try_lock("k", "b", Duration::from_secs(5)).await.unwrap(), LockResult::Acquired);
    assert!(b.unlock("k", "b").await.unwrap());
    assert_eq!(b.incr("c", 2, None).await.unwrap(), 2);
    assert_eq!(b.incr("c", 3, Some(Duration::from_secs(1))).await.unwrap(), 5);
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(b.incr("c", 1, None).await.unwrap(), 1);
}

/// A retry written for a task whose record is missing (published by other means) is recorded,
/// not fenced off by the record filled in from the same envelope.
#[tokio::test]
async fn retry_of_a_task_without_a_record_is_recorded() {
    let b = MemoryBackend::new();
    let mut t = TaskMessage::with_args("x", &1).unwrap();
    t.retried = 1;
    b.update(&t, StateUpdate::retry(1, "boom".into())).await.unwrap();
    let r = b.get(&t.id).await.unwrap().unwrap();
    assert_eq!((r.state, r.retried, r.error.as_deref()), (TaskState::Retry, 1, Some("boom")));
}
