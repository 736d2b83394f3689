//! Periodic tasks: once per tick with several schedulers, takeover of a dead claimer's tick,
//! dynamic entries, missed ticks.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use conveyor::broker::BoxError;
use conveyor::scheduler::{fire_task_id, history, EntryProvider, FireRecord, MissedTicks, PeriodicEntry, Scheduler};
use conveyor::{CancellationToken, TaskContext, TaskError, TaskExt};

use super::{eventually, Env, Running};

fn runs() -> &'static Mutex<HashMap<String, Vec<String>>> {
    static RUNS: OnceLock<Mutex<HashMap<String, Vec<String>>>> = OnceLock::new();
    RUNS.get_or_init(Default::default)
}

/// The task ids `tick` ran with under `key`.
fn ran(key: &str) -> Vec<String> {
    runs().lock().unwrap().get(key).cloned().unwrap_or_default()
}

/// Records the id it runs with under `key`.
#[conveyor::task(name = "periodic:tick")]
pub async fn tick(key: String, ctx: TaskContext) -> Result<(), TaskError> {
    runs().lock().unwrap().entry(key).or_default().push(ctx.id().to_string());
    Ok(())
}

fn entry(env: &Env, id: &str, spec: &str) -> PeriodicEntry {
    let key = format!("{}-{id}", env.ns);
    PeriodicEntry::new(key.clone(), spec, tick.with(key).queue(env.q("periodic"))).expect("valid entry")
}

fn scheduler(env: &Env) -> conveyor::scheduler::SchedulerBuilder {
    Scheduler::builder(env.broker.clone(), env.backend.clone())
}

fn start(s: Scheduler) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    (stop.clone(), tokio::spawn(s.run_until(stop)))
}

fn worker(env: &Env) -> Running {
    Running::start(env.worker().register(tick).queue(env.q("periodic"), 1))
}

async fn fires(env: &Env, entry: &str) -> Vec<FireRecord> {
    history(env.backend.as_ref(), entry, 1000).await.expect("history")
}

/// Three schedulers on an every-second entry for several ticks: each tick is enqueued, run and
/// recorded exactly once, with no tick missing.
pub async fn once_per_tick_with_three_schedulers(env: Env) {
    let e = entry(&env, "every-second", "* * * * * *");
    let key = e.id().to_owned();
    let w = worker(&env);
    let all: Vec<_> = (0..3).map(|_| start(scheduler(&env).entry(e.clone()).build().unwrap())).collect();
    tokio::time::sleep(Duration::from_millis(5_200)).await;
    for (stop, h) in all {
        stop.cancel();
        h.await.unwrap();
    }
    let records = fires(&env, &key).await;
    // Every fire time once, consecutive seconds.
    let mut times: Vec<u64> =
        records.iter().map(|r| r.fire_time.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()).collect();
    times.sort_unstable();
    assert!(times.len() >= 3, "only {} ticks fired in 5.2 s: {records:?}", times.len());
    assert!(times.windows(2).all(|w| w[1] == w[0] + 1), "ticks missing or doubled: {times:?}");
    // Every tick's task ran exactly once.
    let ids: Vec<String> = records.iter().map(|r| r.task_id.to_string()).collect();
    eventually(Duration::from_secs(10), "every fired task runs", || {
        let ids = ids.clone();
        let key = key.clone();
        async move { ids.iter().all(|id| ran(&key).contains(id)) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut seen = ran(&key);
    seen.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(seen, want, "each tick's task runs once");
    w.stop().await;
}

/// A tick claimed by a scheduler that then died (its claim never becomes "done") is enqueued
/// by another scheduler once the claim lapses.
pub async fn dead_claimer_tick_is_taken_over(env: Env) {
    let e = entry(&env, "taken-over", "*/2 * * * * *");
    let key = e.id().to_owned();
    let now = SystemTime::now();
    // Far enough ahead that the scheduler is surely running before the tick.
    let next = e.next_fire_after(now + Duration::from_secs(3)).unwrap();
    let claim = fire_task_id(&key, next).to_string();
    // Held from now until a second after the tick.
    let ttl = next.duration_since(now).unwrap() + Duration::from_secs(1);
    let got = env.backend.try_lock(&claim, "dead-scheduler", ttl).await.unwrap();
    assert_eq!(got, conveyor::backend::LockResult::Acquired);
    let s = scheduler(&env).entry(e).claim_ttl(Duration::from_secs(1)).misfire_grace(Duration::from_secs(30));
    let (stop, h) = start(s.build().unwrap());
    eventually(Duration::from_secs(20), "the dead claimer's tick is enqueued", || async {
        fires(&env, &key).await.iter().any(|r| r.fire_time == next)
    })
    .await;
    stop.cancel();
    h.await.unwrap();
    let same: Vec<_> = fires(&env, &key).await.into_iter().filter(|r| r.fire_time == next).collect();
    assert_eq!(same.len(), 1, "{same:?}");
    assert_eq!(same[0].task_id.as_str(), claim);
    assert!(same[0].enqueued_at >= next + Duration::from_secs(1), "enqueued only once the claim lapsed: {same:?}");
}

/// Entries from a provider: added, changed and removed while the scheduler runs; a failing
/// provider keeps its previous entries.
struct Dynamic {
    entries: Mutex<Result<Vec<PeriodicEntry>, String>>,
}

#[conveyor::async_trait]
impl EntryProvider for Dynamic {
    async fn entries(&self) -> Result<Vec<PeriodicEntry>, BoxError> {
        self.entries.lock().unwrap().clone().map_err(Into::into)
    }
}

pub async fn dynamic_entries_take_effect_without_restart(env: Env) {
    let a = entry(&env, "dyn-a", "* * * * * *");
    let b = entry(&env, "dyn-b", "* * * * * *");
    let provider = Arc::new(Dynamic { entries: Mutex::new(Ok(vec![a.clone()])) });
    let s = scheduler(&env).provider(provider.clone()).sync_interval(Duration::from_millis(200));
    let (stop, h) = start(s.build().unwrap());
    let count = |id: String| {
        let env = &env;
        async move { fires(env, &id).await.len() }
    };
    eventually(Duration::from_secs(5), "entry a fires", || async { count(a.id().into()).await >= 1 }).await;
    // The provider fails: a keeps firing.
    *provider.entries.lock().unwrap() = Err("database down".into());
    let before = count(a.id().into()).await;
    eventually(Duration::from_secs(5), "a still fires", || async { count(a.id().into()).await > before }).await;
    // a removed, b added.
    *provider.entries.lock().unwrap() = Ok(vec![b.clone()]);
    eventually(Duration::from_secs(5), "entry b fires", || async { count(b.id().into()).await >= 1 }).await;
    let a_done = count(a.id().into()).await;
    // a changed back in, to every 2 seconds with another argument: b stops, a resumes.
    let a2 =
        PeriodicEntry::new(a.id(), "*/2 * * * * *", tick.with(format!("{}-changed", a.id())).queue(env.q("periodic")))
            .unwrap();
    *provider.entries.lock().unwrap() = Ok(vec![a2]);
    // a fires twice (2 s apart), long after b was removed at the next sync (200 ms).
    eventually(Duration::from_secs(10), "a fires again", || async { count(a.id().into()).await > a_done + 1 }).await;
    let b_done = count(b.id().into()).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(count(b.id().into()).await, b_done, "removed entry b stopped");
    stop.cancel();
    h.await.unwrap();
    // The changed entry's fires land on even seconds.
    let recent = fires(&env, a.id()).await;
    let secs = |r: &FireRecord| r.fire_time.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    assert!(recent.iter().take(2).all(|r| secs(r) % 2 == 0), "{recent:?}");
}

/// A scheduler back after downtime: under `RunOnce`, the latest missed tick is enqueued once;
/// under `Skip`, none is.
pub async fn missed_ticks_policy(env: Env) {
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    let mut by_policy = BTreeMap::new();
    for (name, policy) in [("run-once", MissedTicks::RunOnce), ("skip", MissedTicks::Skip)] {
        // Every 10 minutes; last fired about an hour ago (as a previous scheduler left it).
        let e = entry(&env, name, "*/10 * * * *").missed_ticks(policy);
        let last = e.next_fire_after(hour_ago - Duration::from_secs(600)).unwrap();
        let ms = last.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as u64;
        let old = serde_json::json!({"entry": e.id(), "fire_time": ms, "task_id": "old", "enqueued_at": ms,
            "scheduler": "gone"});
        let json = old.to_string();
        env.backend
            .list_push(&format!("periodic:{}:history", e.id()), &json, 10, Duration::from_secs(60))
            .await
            .unwrap();
        by_policy.insert(name, e);
    }
    let s = by_policy.values().fold(scheduler(&env), |s, e| s.entry(e.clone()));
    let started = SystemTime::now();
    let (stop, h) = start(s.build().unwrap());
    let run_once = by_policy["run-once"].id().to_owned();
    let caught_up = |id: String| {
        let env = &env;
        async move { fires(env, &id).await.into_iter().filter(|r| r.catch_up).collect::<Vec<_>>() }
    };
    eventually(Duration::from_secs(5), "the missed tick is caught up", || async {
        !caught_up(run_once.clone()).await.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    h.await.unwrap();
    let caught = caught_up(run_once.clone()).await;
    assert_eq!(caught.len(), 1, "{caught:?}");
    // The latest tick at least a minute (the misfire grace) old: at most ten minutes before that.
    let t = caught[0].fire_time;
    let ok = t + Duration::from_secs(660) >= started && t + Duration::from_secs(60) <= SystemTime::now();
    assert!(ok, "{caught:?}");
    assert!(caught_up(by_policy["skip"].id().to_owned()).await.is_empty(), "skip enqueues no missed tick");
}

/// The publish of a tick's task fails once, and so does undoing its launch: the scheduler
/// tries the tick again and enqueues it, so every recorded fire ran (the tick used to be
/// recorded as fired with nothing queued).
pub async fn tick_enqueued_after_a_failed_publish(env: Env) {
    use super::faulty::{FaultyBroker, NoCleanup};
    let e = entry(&env, "flaky-publish", "* * * * * *");
    let key = e.id().to_owned();
    let w = worker(&env);
    let broker = FaultyBroker::new(env.broker.clone(), "periodic:tick", 1, false);
    let backend = Arc::new(NoCleanup(env.backend.clone()));
    let (stop, h) = start(Scheduler::builder(broker.clone(), backend).entry(e).build().unwrap());
    eventually(Duration::from_secs(15), "the failed tick enqueued and run", || async {
        broker.failed_all() && !fires(&env, &key).await.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stop.cancel();
    h.await.unwrap();
    let fired: Vec<String> = fires(&env, &key).await.into_iter().map(|f| f.task_id.to_string()).collect();
    eventually(Duration::from_secs(10), "every recorded fire ran", || async {
        fired.iter().all(|id| ran(&key).contains(id))
    })
    .await;
    w.stop().await;
}

/// `Inspector::cron` lists the entries the schedulers registered, with their next and last
/// fire; `cron_history` their fires.
pub async fn entries_are_listed_for_operators(env: Env) {
    let e = entry(&env, "listed", "* * * * * *");
    let id = e.id().to_owned();
    let (stop, h) = start(scheduler(&env).entry(e).build().unwrap());
    let ins = conveyor::Inspector::new(env.broker.clone(), env.backend.clone());
    eventually(Duration::from_secs(10), "a fire recorded", || async {
        ins.cron().await.unwrap().iter().any(|c| c.id == id && c.last_fire.is_some())
    })
    .await;
    let listed = ins.cron().await.unwrap().into_iter().find(|c| c.id == id).expect("the entry is listed");
    assert_eq!((listed.spec.as_str(), listed.zone.as_str()), ("* * * * * *", "UTC"));
    assert!(listed.next_fire.is_some_and(|t| t > SystemTime::now()));
    assert!(!ins.cron_history(&id, 10).await.unwrap().is_empty());
    stop.cancel();
    h.await.unwrap();
}
