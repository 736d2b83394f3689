//! The scheduler's loop: sync entries, claim due ticks, enqueue them, record them.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{EntryProvider, FireRecord, MissedTicks, PeriodicEntry, Scheduler, SchedulerConfig};
use crate::backend::LockResult;
use crate::client::Client;
use crate::error::Result;
use crate::task::TaskId;

/// How long an entry's history is kept after its last fire (long enough for yearly entries).
const HISTORY_TTL: Duration = Duration::from_secs(400 * 24 * 3600);
/// Pause before retrying a tick whose claim or enqueue failed.
const RETRY: Duration = Duration::from_secs(1);
/// Longest a provider may take to answer.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(30);

/// The backend list holding `entry`'s fire history.
pub(crate) fn history_key(entry: &str) -> String {
    format!("periodic:{entry}:history")
}

/// The lock claiming a tick, and the task id prefix of what the tick enqueues.
pub(crate) fn tick_name(entry: &str, t: DateTime<Utc>) -> String {
    format!("periodic:{entry}:{}", t.format("%Y-%m-%dT%H:%M:%SZ"))
}

struct Slot {
    entry: Arc<PeriodicEntry>,
    /// Ticks up to here are handled; `None` until read from the history.
    cursor: Option<DateTime<Utc>>,
    /// After a failure: not before this.
    retry_at: Option<Instant>,
}

/// A tick another scheduler claimed: checked again once its claim would have lapsed.
struct Watch {
    /// The entry's id: it is looked up again when checked (it may have changed or gone).
    entry: String,
    tick: DateTime<Utc>,
    catch_up: bool,
    check_at: Instant,
}

pub(crate) struct Runner {
    client: Client,
    statics: Vec<PeriodicEntry>,
    providers: Vec<(Arc<dyn EntryProvider>, Vec<PeriodicEntry>)>,
    config: SchedulerConfig,
    instance: String,
    slots: Vec<Slot>,
    watch: Vec<Watch>,
    next_sync: Instant,
    /// False until the first sync: entries found then resume from their history.
    synced: bool,
}

impl Runner {
    pub(crate) fn new(s: Scheduler) -> Self {
        Runner {
            client: s.client,
            statics: s.entries,
            providers: s.providers.into_iter().map(|p| (p, Vec::new())).collect(),
            config: s.config,
            instance: s.instance,
            slots: Vec::new(),
            watch: Vec::new(),
            next_sync: Instant::now(),
            synced: false,
        }
    }

    pub(crate) async fn run(mut self, stop: CancellationToken) {
        tracing::info!(instance = %self.instance, backend = self.client.backend().kind(), "scheduler started");
        loop {
            if Instant::now() >= self.next_sync {
                self.sync().await;
                self.next_sync = Instant::now() + self.config.sync_interval;
            }
            for i in 0..self.slots.len() {
                self.handle_slot(i).await;
            }
            self.check_watched().await;
            let wake = self.next_wake();
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
        tracing::info!(instance = %self.instance, "scheduler stopped");
    }

    /// Reads the providers and rebuilds the entry list, keeping the progress of entries that
    /// stay (changed or not).
    async fn sync(&mut self) {
        for (provider, last) in &mut self.providers {
            match tokio::time::timeout(PROVIDER_TIMEOUT, provider.entries()).await {
                Ok(Ok(entries)) => *last = entries,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "periodic entry provider failed; keeping its previous entries")
                }
                Err(_) => tracing::warn!("periodic entry provider timed out; keeping its previous entries"),
            }
        }
        let mut seen = HashSet::new();
        let mut slots = Vec::new();
        let wanted = self.statics.iter().chain(self.providers.iter().flat_map(|(_, e)| e.iter()));
        for entry in wanted {
            if !seen.insert(entry.id.clone()) {
                tracing::warn!(entry = %entry.id, "two periodic entries share this id; the first one is used");
                continue;
            }
            let old = self.slots.iter().position(|s| s.entry.id == entry.id).map(|i| self.slots.swap_remove(i));
            match old {
                Some(old) => {
                    if !old.entry.same_as(entry) {
                        tracing::info!(entry = %entry.id, spec = %entry.spec, "periodic entry changed");
                    }
                    slots.push(Slot { entry: Arc::new(entry.clone()), ..old });
                }
                None => {
                    tracing::info!(entry = %entry.id, spec = %entry.spec, zone = %entry.zone(), "periodic entry added");
                    // At start-up an entry resumes after its last fire (a restart loses no tick);
                    // one added later starts now (re-adding a removed entry fires no backlog).
                    let cursor = self.synced.then(Utc::now);
                    slots.push(Slot { entry: Arc::new(entry.clone()), cursor, retry_at: None });
                }
            }
        }
        let backend = self.client.backend().clone();
        for gone in &self.slots {
            tracing::info!(entry = %gone.entry.id, "periodic entry removed");
            let _ = backend.map_remove(crate::inspect::cron::CRON_MAP, &gone.entry.id).await;
        }
        self.slots = slots;
        self.synced = true;
        // Registered for the inspector (`conveyor cron ls`); a backend without operations
        // state answers Unsupported, and the entries run all the same.
        for slot in &self.slots {
            let info = crate::inspect::cron::CronEntry::new(&slot.entry, &self.instance, self.config.sync_interval);
            if let Ok(json) = serde_json::to_string(&info) {
                if let Err(e) = backend.map_set(crate::inspect::cron::CRON_MAP, &slot.entry.id, &json).await {
                    tracing::debug!(entry = %slot.entry.id, error = %e, "could not register the periodic entry");
                }
            }
        }
    }

    /// Enqueues the due ticks of one entry, in order; stops at the first failure (retried).
    async fn handle_slot(&mut self, i: usize) {
        if self.slots[i].retry_at.is_some_and(|t| t > Instant::now()) {
            return;
        }
        let entry = self.slots[i].entry.clone();
        let cursor = match self.slots[i].cursor {
            Some(c) => c,
            None => match self.start_cursor(&entry).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(entry = %entry.id, error = %e, "cannot read the entry's history; retrying");
                    self.slots[i].retry_at = Some(Instant::now() + RETRY);
                    return;
                }
            },
        };
        self.slots[i].cursor = Some(cursor);
        let now = Utc::now();
        let (ticks, skip_to) = due_ticks(&entry, cursor, now, self.config.misfire_grace);
        if let Some(to) = skip_to {
            self.slots[i].cursor = Some(to);
        }
        for (tick, catch_up) in ticks {
            if let Err(e) = self.fire(&entry, tick, catch_up).await {
                tracing::warn!(entry = %entry.id, tick = %tick, error = %e, "cannot enqueue periodic task; retrying");
                self.slots[i].retry_at = Some(Instant::now() + RETRY);
                return;
            }
            self.slots[i].cursor = Some(tick);
        }
        self.slots[i].retry_at = None;
    }

    /// Where a new entry starts: after its last recorded fire (by any scheduler), or now.
    async fn start_cursor(&self, entry: &PeriodicEntry) -> Result<DateTime<Utc>> {
        // The newest few: a tick taken over late is recorded after later ones.
        let recent = super::history(self.client.backend().as_ref(), &entry.id, 5).await?;
        Ok(recent.iter().map(|r| DateTime::<Utc>::from(r.fire_time)).max().unwrap_or_else(Utc::now))
    }

    /// Claims `tick` and enqueues it, unless another scheduler claimed it (then it is watched).
    async fn fire(&mut self, entry: &PeriodicEntry, tick: DateTime<Utc>, catch_up: bool) -> Result<()> {
        let name = tick_name(&entry.id, tick);
        match self.client.backend().try_lock(&name, &self.instance, self.config.claim_ttl).await? {
            LockResult::Acquired => self.enqueue_claimed(entry, tick, catch_up, &name).await,
            LockResult::Held { holder } => {
                if holder != self.instance {
                    let check_at = Instant::now() + self.config.claim_ttl + Duration::from_millis(500);
                    self.watch.push(Watch { entry: entry.id.clone(), tick, catch_up, check_at });
                }
                Ok(())
            }
        }
    }

    /// Enqueues a tick this scheduler holds the claim of, then marks it done and records it.
    /// The claim is renewed while the enqueue runs, so a slow broker cannot make it lapse and
    /// let another scheduler enqueue the tick too.
    async fn enqueue_claimed(
        &self,
        entry: &PeriodicEntry,
        tick: DateTime<Utc>,
        catch_up: bool,
        name: &str,
    ) -> Result<()> {
        let backend = self.client.backend();
        let mut canvas = entry.canvas.clone();
        canvas.assign_ids(name);
        let task_id = canvas.first_task_id().clone();
        let enqueue = self.client.enqueue_workflow(canvas);
        tokio::pin!(enqueue);
        let mut renew = tokio::time::interval(self.config.claim_ttl / 3);
        renew.tick().await;
        let enqueued = loop {
            tokio::select! {
                r = &mut enqueue => break r,
                _ = renew.tick() => {
                    if let Err(e) = backend.try_lock(name, &self.instance, self.config.claim_ttl).await {
                        tracing::warn!(entry = %entry.id, error = %e, "cannot renew the claim on a tick");
                    }
                }
            }
        };
        if let Err(e) = enqueued {
            if !e.is_duplicate() {
                let _ = backend.unlock(name, &self.instance).await;
                return Err(e);
            }
        }
        // The claim becomes a "done" mark, outliving every scheduler's interest in the tick.
        let done = self.config.misfire_grace + self.config.claim_ttl + Duration::from_secs(300);
        match backend.try_lock(name, &self.instance, done).await {
            Ok(LockResult::Acquired) => {}
            Ok(LockResult::Held { holder }) => {
                // Our claim lapsed and `holder` took the tick over: it records the fire.
                tracing::warn!(entry = %entry.id, tick = %tick, %holder, "another scheduler took this tick over");
                return Ok(());
            }
            Err(e) => {
                tracing::warn!(entry = %entry.id, error = %e, "cannot mark the tick done (its task id still deduplicates it)")
            }
        }
        let record = FireRecord {
            entry: entry.id.clone(),
            fire_time: tick.into(),
            task_id: task_id.clone(),
            enqueued_at: SystemTime::now(),
            scheduler: self.instance.clone(),
            catch_up,
        };
        let json = serde_json::to_string(&record).unwrap_or_default();
        if let Err(e) = backend.list_push(&history_key(&entry.id), &json, self.config.history_len, HISTORY_TTL).await {
            tracing::warn!(entry = %entry.id, error = %e, "cannot record the fire in the entry's history");
        }
        tracing::debug!(entry = %entry.id, tick = %tick, task_id = %task_id, catch_up, "periodic task enqueued");
        Ok(())
    }

    /// Takes over watched ticks whose claimer let its claim lapse without enqueueing.
    async fn check_watched(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<Watch>, Vec<Watch>) =
            std::mem::take(&mut self.watch).into_iter().partition(|w| w.check_at <= now);
        self.watch = later;
        for w in due {
            // The entry as it is now; a removed entry's ticks are dropped.
            let Some(entry) = self.slots.iter().find(|s| s.entry.id == w.entry).map(|s| s.entry.clone()) else {
                continue;
            };
            let name = tick_name(&w.entry, w.tick);
            let taken = match self.client.backend().try_lock(&name, &self.instance, self.config.claim_ttl).await {
                Ok(LockResult::Held { .. }) => Ok(()),
                Ok(LockResult::Acquired) => {
                    tracing::info!(entry = %w.entry, tick = %w.tick, "the scheduler that claimed this tick did not enqueue it; enqueueing it");
                    self.enqueue_claimed(&entry, w.tick, w.catch_up, &name).await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = taken {
                tracing::warn!(entry = %w.entry, tick = %w.tick, error = %e, "cannot check a claimed tick; retrying");
                self.watch.push(Watch { check_at: Instant::now() + RETRY, ..w });
            }
        }
    }

    /// When something is next due: a tick, a retry, a watched claim, or the next sync.
    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        let wall = Utc::now();
        let mut wake = self.next_sync;
        for s in &self.slots {
            let at = match (s.retry_at, s.cursor) {
                (Some(t), _) => t,
                (None, None) => now,
                (None, Some(c)) => match s.entry.schedule.next_after(c) {
                    // A millisecond late, so that the tick is due on the wall clock too.
                    Some(t) => now + (t - wall).to_std().unwrap_or_default() + Duration::from_millis(1),
                    None => continue,
                },
            };
            wake = wake.min(at);
        }
        self.watch.iter().map(|w| w.check_at).fold(wake, Instant::min)
    }
}

/// A due tick, and whether it is a missed one caught up.
type Due = (DateTime<Utc>, bool);

/// The ticks of `entry` due after `cursor` at `now`, oldest first, each with whether it is a
/// catch-up; and where to move the cursor first when missed ticks were skipped.
///
/// Ticks later than `now - grace` are due; older ones are missed: skipped, or the most recent
/// of them enqueued once under [`MissedTicks::RunOnce`].
fn due_ticks(
    entry: &PeriodicEntry,
    cursor: DateTime<Utc>,
    now: DateTime<Utc>,
    grace: Duration,
) -> (Vec<Due>, Option<DateTime<Utc>>) {
    let horizon = now - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    let mut ticks = Vec::new();
    let mut from = cursor;
    let mut skip_to = None;
    if cursor < horizon {
        let missed = entry.schedule.last_before(horizon).filter(|t| *t > cursor);
        if let Some(t) = missed {
            match entry.missed {
                MissedTicks::RunOnce => ticks.push((t, true)),
                MissedTicks::Skip => {
                    tracing::info!(entry = %entry.id, last_missed = %t, "skipping ticks missed while no scheduler ran");
                    skip_to = Some(t);
                }
            }
        }
        from = horizon - chrono::Duration::nanoseconds(1);
    }
    while let Some(t) = entry.schedule.next_after(from).filter(|t| *t <= now) {
        ticks.push((t, false));
        from = t;
        if ticks.len() >= 10_000 {
            break;
        }
    }
    (ticks, skip_to)
}

impl crate::workflow::Canvas {
    /// The id of the task that runs first.
    pub(crate) fn first_task_id(&self) -> &TaskId {
        match self {
            crate::workflow::Canvas::Task(s) => &s.id,
            crate::workflow::Canvas::Chain { steps, .. } => steps[0].first_task_id(),
            crate::workflow::Canvas::Group { members, .. } => members[0].first_task_id(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::Signature;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn entry(spec: &str, missed: MissedTicks) -> PeriodicEntry {
        PeriodicEntry::new("e", spec, Signature::raw("t", &()).unwrap()).unwrap().missed_ticks(missed)
    }

    #[test]
    fn due_ticks_within_grace_fire_in_order() {
        let e = entry("*/10 * * * * *", MissedTicks::Skip);
        let (ticks, skip) =
            due_ticks(&e, at("2026-01-01T00:00:00Z"), at("2026-01-01T00:00:35Z"), Duration::from_secs(60));
        let want: Vec<_> =
            ["00:00:10", "00:00:20", "00:00:30"].iter().map(|t| (at(&format!("2026-01-01T{t}Z")), false)).collect();
        assert_eq!((ticks, skip), (want, None));
    }

    #[test]
    fn missed_ticks_are_skipped_or_run_once() {
        let cursor = at("2026-01-01T00:00:00Z");
        let now = at("2026-01-01T01:00:05Z");
        let e = entry("*/10 * * * *", MissedTicks::Skip);
        let (ticks, skip) = due_ticks(&e, cursor, now, Duration::from_secs(60));
        assert_eq!(ticks, vec![(at("2026-01-01T01:00:00Z"), false)]);
        assert_eq!(skip, Some(at("2026-01-01T00:50:00Z")));
        let e = entry("*/10 * * * *", MissedTicks::RunOnce);
        let (ticks, skip) = due_ticks(&e, cursor, now, Duration::from_secs(60));
        assert_eq!(ticks, vec![(at("2026-01-01T00:50:00Z"), true), (at("2026-01-01T01:00:00Z"), false)]);
        assert_eq!(skip, None);
        // Nothing missed: the cursor is within the grace.
        let (ticks, _) = due_ticks(&e, at("2026-01-01T01:00:00Z"), now, Duration::from_secs(60));
        assert!(ticks.is_empty());
    }

    #[test]
    fn assigned_ids_are_deterministic_and_distinct() {
        let c = crate::workflow::chain([
            Signature::raw("a", &1).unwrap().into(),
            crate::workflow::group([Signature::raw("b", &2).unwrap(), Signature::raw("c", &3).unwrap()]),
        ]);
        let (mut x, mut y) = (c.clone(), c);
        x.assign_ids("periodic:e:T");
        y.assign_ids("periodic:e:T");
        assert_eq!(serde_json::to_string(&x).unwrap(), serde_json::to_string(&y).unwrap());
        assert_eq!(x.first_task_id().as_str(), "periodic:e:T");
        x.validate().unwrap();
    }
}
