//! The inspector: queues found without naming them, counts, tasks listed by state and paged,
//! and the operator's actions (run now, archive, delete; one task or all of a state), each
//! atomic: two operators running one archived task run it once.

use std::time::Duration;

use conveyor::inspect::{Inspector, Page, OPERATOR_ARCHIVED};
use conveyor::{Error, TaskId, TaskState};

use super::tasks::{log, probe, Probe};
use super::{eventually, Env, Running};

const WAIT: Duration = Duration::from_secs(10);

fn inspector(env: &Env) -> Inspector {
    Inspector::new(env.broker.clone(), env.backend.clone())
}

/// Enqueues `n` probe tasks on `q` (no worker runs them) and returns their ids.
async fn pending(env: &Env, q: &str, n: usize) -> Vec<TaskId> {
    let client = env.client();
    let mut ids = Vec::new();
    for i in 0..n {
        let h = client.task(probe, Probe::new(format!("{q}-{i}"))).queue(q).await.unwrap();
        ids.push(h.id().clone());
    }
    ids
}

/// Waits until `q` has `n` tasks in `state`.
async fn count(ins: &Inspector, q: &str, state: TaskState, n: usize) {
    eventually(WAIT, &format!("{n} {state} task(s) in {q}"), || async {
        ins.tasks(q, state, Page::first(1000)).await.unwrap().len() == n
    })
    .await;
}

/// Enqueues a task that fails on its first attempt with no retries left, and waits for it in
/// the archive.
async fn archived_task(env: &Env, q: &str) -> TaskId {
    let ins = inspector(env);
    let w = Running::start(env.worker().queue(q, 1));
    let h = env.client().task(probe, Probe { fail_times: 1, ..Probe::new(q) }).queue(q).max_retry(0).await.unwrap();
    assert!(h.get(WAIT).await.is_err());
    count(&ins, q, TaskState::Archived, 1).await;
    w.stop().await;
    h.id().clone()
}

pub async fn queues_are_found_with_their_counts(env: Env) {
    let (a, b) = (env.q("found-a"), env.q("found-b"));
    let ins = inspector(&env);
    pending(&env, &a, 2).await;
    env.client().task(probe, Probe::new(&b)).queue(&b).process_in(Duration::from_secs(3600)).await.unwrap();
    let queues = ins.queues().await.unwrap();
    assert!(queues.contains(&a) && queues.contains(&b), "{queues:?}");
    let sa = ins.queue(&a).await.unwrap();
    assert_eq!((sa.pending, sa.scheduled, sa.archived), (2, 0, 0));
    assert!(sa.latency.is_some(), "a queue with pending tasks has a latency");
    let sb = ins.queue(&b).await.unwrap();
    assert_eq!((sb.pending, sb.scheduled, sb.retry), (0, 1, 0));
    assert!(ins.stats().await.unwrap().iter().any(|s| s.queue == a && s.pending == 2));
    let unknown = env.q("never-used");
    assert!(matches!(ins.queue(&unknown).await, Err(Error::UnknownQueue { queue }) if queue == unknown));
}

pub async fn tasks_are_listed_by_state_and_paged(env: Env) {
    let q = env.q("pages");
    let ins = inspector(&env);
    let ids = pending(&env, &q, 5).await;
    let mut seen = Vec::new();
    for offset in [0, 2, 4] {
        let page = ins.tasks(&q, TaskState::Pending, Page::new(offset, 2)).await.unwrap();
        assert_eq!(page.len(), if offset == 4 { 1 } else { 2 });
        for t in page {
            assert_eq!((t.state, t.name(), t.queue.as_str()), (TaskState::Pending, "conformance:probe", q.as_str()));
            seen.push(t.id);
        }
    }
    seen.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(seen, want, "the pages hold every task once");
    let later = env.client().task(probe, Probe::new(&q)).queue(&q).process_in(Duration::from_secs(3600)).await.unwrap();
    let scheduled = ins.tasks(&q, TaskState::Scheduled, Page::first(10)).await.unwrap();
    assert_eq!(scheduled.len(), 1);
    assert_eq!(scheduled[0].id, *later.id());
    assert!(scheduled[0].next_run_at.is_some());
    assert_eq!(ins.tasks_named(&q, TaskState::Pending, "conformance:probe", Page::first(10)).await.unwrap().len(), 5);
    assert!(ins.tasks_named(&q, TaskState::Pending, "other", Page::first(10)).await.unwrap().is_empty());
    let detail = ins.task(&ids[0]).await.unwrap();
    assert_eq!(detail.state(), TaskState::Pending);
    assert_eq!(detail.record.expect("a record").state, TaskState::Pending);
}

/// The operator's story: a task fails until archived; the archive shows it with its error; run
/// again, it completes.
pub async fn archived_task_runs_again_and_completes(env: Env) {
    let q = env.q("rerun");
    let ins = inspector(&env);
    let id = archived_task(&env, &q).await;
    let listed = ins.tasks(&q, TaskState::Archived, Page::first(10)).await.unwrap();
    assert_eq!(listed[0].id, id);
    assert!(listed[0].reason.as_deref().unwrap_or("").contains("probe failure on attempt 1"), "{listed:?}");
    ins.run(&id).await.unwrap();
    let w = Running::start(env.worker().queue(&q, 1));
    eventually(WAIT, "the task completed", || async {
        env.backend.get(&id).await.unwrap().is_some_and(|r| r.state == TaskState::Completed)
    })
    .await;
    w.stop().await;
    assert_eq!(log(&q).starts.len(), 2, "the failed attempt, then the rerun");
    assert_eq!(ins.queue(&q).await.unwrap().archived, 0);
    // The attempt history: the archived run, then the rerun, numbered on.
    let rec = ins.task(&id).await.unwrap().record.expect("record");
    let ran: Vec<_> = rec.attempts.iter().map(|a| (a.number, a.outcome)).collect();
    assert_eq!(ran, [(0, TaskState::Archived), (1, TaskState::Completed)], "{rec:?}");
    assert!(rec.attempts[0].error.as_deref().unwrap_or("").contains("probe failure on attempt 1"), "{rec:?}");
    assert_eq!(rec.attempts[1].error, None);
    assert!(rec.attempts[0].ended_at <= rec.attempts[1].started_at, "{rec:?}");
    assert!(rec.attempts.iter().all(|a| a.worker.as_deref().is_some_and(|w| w.contains(':'))), "{rec:?}");
}

pub async fn two_operators_running_one_archived_task_run_it_once(env: Env) {
    let q = env.q("race");
    let ins = inspector(&env);
    let id = archived_task(&env, &q).await;
    let (a, b) = tokio::join!(ins.run(&id), ins.run(&id));
    let oks = [&a, &b].iter().filter(|r| r.is_ok()).count();
    assert_eq!(oks, 1, "{a:?} {b:?}");
    for r in [a, b].into_iter().filter_map(Result::err) {
        assert!(matches!(r, Error::NotFound { .. } | Error::InvalidTaskState { .. }), "{r}");
    }
    assert_eq!(ins.queue(&q).await.unwrap().pending, 1, "queued once");
    let w = Running::start(env.worker().queue(&q, 1));
    eventually(WAIT, "the task completed", || async {
        env.backend.get(&id).await.unwrap().is_some_and(|r| r.state == TaskState::Completed)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    w.stop().await;
    assert_eq!(log(&q).starts.len(), 2, "the failed attempt, then one rerun");
}

pub async fn operator_archives_runs_and_deletes(env: Env) {
    let q = env.q("ops");
    let ins = inspector(&env);
    let ids = pending(&env, &q, 2).await;
    ins.archive(&ids[0]).await.unwrap();
    let archived = ins.tasks(&q, TaskState::Archived, Page::first(10)).await.unwrap();
    assert_eq!((archived.len(), archived[0].reason.as_deref()), (1, Some(OPERATOR_ARCHIVED)));
    assert_eq!(env.backend.get(&ids[0]).await.unwrap().unwrap().state, TaskState::Archived);
    ins.delete(&ids[0]).await.unwrap();
    assert!(matches!(ins.task(&ids[0]).await, Err(Error::NotFound { .. })));
    ins.delete(&ids[1]).await.unwrap();
    let later = env.client().task(probe, Probe::new(&q)).queue(&q).process_in(Duration::from_secs(3600)).await.unwrap();
    ins.run(later.id()).await.unwrap();
    let now = ins.tasks(&q, TaskState::Pending, Page::first(10)).await.unwrap();
    assert_eq!(now.iter().map(|t| &t.id).collect::<Vec<_>>(), vec![later.id()]);
    let s = ins.queue(&q).await.unwrap();
    assert_eq!((s.pending, s.scheduled, s.archived), (1, 0, 0));
}

pub async fn actions_that_do_not_apply_are_refused(env: Env) {
    let q = env.q("refused");
    let ins = inspector(&env);
    let ids = pending(&env, &q, 1).await;
    let e = ins.run(&ids[0]).await.unwrap_err();
    assert!(matches!(&e, Error::InvalidTaskState { state: TaskState::Pending, action: "run", .. }), "{e}");
    assert!(e.to_string().contains(ids[0].as_str()), "{e}");
    let ghost = TaskId::from(format!("{q}-ghost"));
    assert!(matches!(ins.run(&ghost).await, Err(Error::NotFound { .. })));
    assert!(matches!(ins.delete(&ghost).await, Err(Error::NotFound { .. })));
    ins.archive(&ids[0]).await.unwrap();
    let e = ins.archive(&ids[0]).await.unwrap_err();
    assert!(matches!(e, Error::InvalidTaskState { state: TaskState::Archived, .. }), "{e}");
    assert!(matches!(ins.run_all(&q, TaskState::Pending).await, Err(Error::InvalidTaskState { .. })));
    assert_eq!(ins.queue(&q).await.unwrap().archived, 1, "nothing else changed");
}

pub async fn bulk_actions_move_every_task_of_a_state(env: Env) {
    let q = env.q("bulk");
    let ins = inspector(&env);
    let client = env.client();
    let mut ids = Vec::new();
    for i in 0..3 {
        let p = Probe::new(format!("{q}-{i}"));
        ids.push(client.task(probe, p).queue(&q).process_in(Duration::from_secs(3600)).await.unwrap().id().clone());
    }
    assert_eq!(ins.run_all(&q, TaskState::Scheduled).await.unwrap(), 3);
    assert_eq!(ins.queue(&q).await.unwrap().pending, 3);
    assert_eq!(ins.archive_all(&q, TaskState::Pending).await.unwrap(), 3);
    assert_eq!(ins.queue(&q).await.unwrap().archived, 3);
    for id in &ids {
        let r = env.backend.get(id).await.unwrap().expect("record");
        assert_eq!((r.state, r.error.as_deref()), (TaskState::Archived, Some(OPERATOR_ARCHIVED)), "{r:?}");
    }
    assert_eq!(ins.run_all(&q, TaskState::Archived).await.unwrap(), 3);
    let s = ins.queue(&q).await.unwrap();
    assert_eq!((s.pending, s.archived), (3, 0));
    assert_eq!(ins.delete_all(&q, TaskState::Pending).await.unwrap(), 3);
    let s = ins.queue(&q).await.unwrap();
    assert_eq!((s.pending, s.scheduled, s.archived), (0, 0, 0));
    assert!(env.backend.get(&ids[0]).await.unwrap().is_none(), "the records went with them");
}

pub async fn retrying_tasks_are_told_apart_and_run_now(env: Env) {
    let q = env.q("retrying");
    let ins = inspector(&env);
    let w = Running::start(
        env.worker()
            .queue(&q, 1)
            .retry_policy(|_: u32, _: &conveyor::TaskError, _: &conveyor::TaskMessage| Duration::from_secs(3600)),
    );
    let h = env.client().task(probe, Probe { fail_times: 1, ..Probe::new(&q) }).queue(&q).await.unwrap();
    count(&ins, &q, TaskState::Retry, 1).await;
    let s = ins.queue(&q).await.unwrap();
    assert_eq!((s.scheduled, s.retry), (1, 1), "a retry counts among the scheduled");
    assert!(ins.tasks(&q, TaskState::Scheduled, Page::first(10)).await.unwrap().is_empty());
    ins.run(h.id()).await.unwrap();
    h.get(WAIT).await.unwrap();
    w.stop().await;
    assert_eq!(log(&q).starts.len(), 2);
}

pub async fn queues_are_found(env: Env) {
    let (a, b) = (env.q("seen-a"), env.q("seen-b"));
    let ins = inspector(&env);
    pending(&env, &a, 1).await;
    pending(&env, &b, 1).await;
    let queues = ins.queues().await.unwrap();
    assert!(queues.contains(&a) && queues.contains(&b), "{queues:?}");
    assert!(ins.stats().await.unwrap().iter().any(|s| s.queue == a));
}

pub async fn archived_tasks_are_deleted_one_or_all(env: Env) {
    let q = env.q("purge");
    let ins = inspector(&env);
    let w = Running::start(env.worker().queue(&q, 1));
    let client = env.client();
    let mut ids = Vec::new();
    for i in 0..3 {
        let p = Probe { fail_times: 1, ..Probe::new(format!("{q}-{i}")) };
        ids.push(client.task(probe, p).queue(&q).max_retry(0).await.unwrap().id().clone());
    }
    count(&ins, &q, TaskState::Archived, 3).await;
    w.stop().await;
    ins.delete(&ids[0]).await.unwrap();
    assert!(env.backend.get(&ids[0]).await.unwrap().is_none(), "its record went with it");
    assert!(matches!(ins.delete(&ids[0]).await, Err(Error::NotFound { .. })));
    count(&ins, &q, TaskState::Archived, 2).await;
    assert_eq!(ins.delete_all(&q, TaskState::Archived).await.unwrap(), 2);
    count(&ins, &q, TaskState::Archived, 0).await;
    for id in &ids[1..] {
        assert!(env.backend.get(id).await.unwrap().is_none(), "the records went with them");
    }
}

pub async fn running_task_is_cancelled(env: Env) {
    let q = env.q("cancel");
    let ins = inspector(&env);
    let w = Running::start(env.worker().queue(&q, 1));
    let h = env.client().task(probe, Probe { sleep_ms: 30_000, ..Probe::new(&q) }).queue(&q).await.unwrap();
    let id = h.id().clone();
    eventually(WAIT, "the task is recorded running", || async {
        env.backend.get(&id).await.unwrap().is_some_and(|r| r.state == TaskState::Active)
    })
    .await;
    ins.cancel(&id).await.unwrap();
    let err = h.get(WAIT).await.unwrap_err();
    assert!(err.to_string().contains(conveyor::inspect::OPERATOR_CANCELLED), "{err}");
    assert_eq!(env.backend.get(&id).await.unwrap().unwrap().state, TaskState::Archived);
    w.stop().await;
    assert_eq!(log(&q).starts.len(), 1, "cancelled, not retried");
    // Only a running task can be cancelled.
    let idle = env.q("cancel-idle");
    let waiting = pending(&env, &idle, 1).await;
    let e = ins.cancel(&waiting[0]).await.unwrap_err();
    assert!(matches!(e, Error::InvalidTaskState { state: TaskState::Pending, action: "cancel", .. }), "{e}");
}

pub async fn history_counts_processed_and_failed(env: Env) {
    let q = env.q("history");
    let ins = inspector(&env);
    let w = Running::start(env.worker().queue(&q, 1));
    let client = env.client();
    for i in 0..2 {
        client.task(probe, Probe::new(format!("{q}-{i}"))).queue(&q).await.unwrap().get(WAIT).await.unwrap();
    }
    let failing = Probe { fail_times: 1, ..Probe::new(format!("{q}-f")) };
    assert!(client.task(probe, failing).queue(&q).max_retry(0).await.unwrap().get(WAIT).await.is_err());
    // A worker adds its counts every few seconds, and as it stops.
    w.stop().await;
    let h = ins.history(&q).await.unwrap();
    let sum = |points: &[conveyor::inspect::history::Point]| {
        points.iter().fold((0, 0), |(p, f), x| (p + x.processed, f + x.failed))
    };
    assert_eq!(sum(&h.minutes), (3, 1), "{h:?}");
    assert_eq!(sum(&h.days), (3, 1), "{h:?}");
    // All queues together (this test's backend is its own).
    let total = ins.history_total().await.unwrap();
    assert_eq!((sum(&total.minutes), sum(&total.days)), ((3, 1), (3, 1)), "{total:?}");
}

pub async fn completed_tasks_are_listed_and_counted(env: Env) {
    let q = env.q("done");
    let ins = inspector(&env);
    let client = env.client();
    let w = Running::start(env.worker().queue(&q, 1));
    let mut ids = Vec::new();
    for i in 0..3 {
        let h = client.task(probe, Probe::new(format!("{q}-{i}"))).queue(&q).await.unwrap();
        h.get(WAIT).await.unwrap();
        ids.push(h.id().clone());
        // Apart by more than the backends' clock resolution (Redis: milliseconds).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    w.stop().await;
    assert_eq!(ins.queue(&q).await.unwrap().completed, Some(3));
    let first = ins.completed(&q, Page::first(2)).await.unwrap();
    let listed: Vec<&TaskId> = first.iter().map(|r| &r.id).collect();
    assert_eq!(listed, [&ids[2], &ids[1]], "newest first");
    assert!(first.iter().all(|r| r.state == TaskState::Completed && r.result.is_some() && r.attempts.len() == 1));
    let rest = ins.completed(&q, Page::new(2, 2)).await.unwrap();
    assert_eq!(rest.iter().map(|r| &r.id).collect::<Vec<_>>(), [&ids[0]]);
    assert_eq!(ins.completed_named(&q, "conformance:probe", Page::first(10)).await.unwrap().len(), 3);
    assert!(ins.completed_named(&q, "other", Page::first(10)).await.unwrap().is_empty());
    // A completed task is deleted with its record, and leaves the list and the count.
    ins.delete(&ids[1]).await.unwrap();
    assert!(matches!(ins.task(&ids[1]).await, Err(Error::NotFound { .. })));
    assert_eq!(ins.completed(&q, Page::first(10)).await.unwrap().len(), 2);
    assert_eq!(ins.queue(&q).await.unwrap().completed, Some(2));
    // Nothing else applies to it.
    assert!(matches!(ins.run(&ids[0]).await, Err(Error::InvalidTaskState { state: TaskState::Completed, .. })));
}

pub async fn counts_stay_exact_after_operator_actions(env: Env) {
    let q = env.q("exact");
    let ins = inspector(&env);
    // Tasks a worker ran first (on Redis, acked entries stay in the stream a while).
    let w = Running::start(env.worker().queue(&q, 1));
    for i in 0..2 {
        env.client().task(probe, Probe::new(format!("{q}-r{i}"))).queue(&q).await.unwrap().get(WAIT).await.unwrap();
    }
    w.stop().await;
    let ids = pending(&env, &q, 3).await;
    assert_eq!(ins.queue(&q).await.unwrap().pending, 3);
    ins.archive(&ids[0]).await.unwrap();
    assert_eq!(ins.queue(&q).await.unwrap().pending, 2, "archived by id: one pending less");
    ins.delete(&ids[1]).await.unwrap();
    let s = ins.queue(&q).await.unwrap();
    assert_eq!((s.pending, s.archived), (1, 1), "{s:?}");
    ins.run(&ids[0]).await.unwrap();
    assert_eq!(ins.queue(&q).await.unwrap().pending, 2, "run again: back to pending");
}
