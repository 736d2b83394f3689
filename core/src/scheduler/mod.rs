//! Periodic tasks: a [`Scheduler`] enqueues tasks or workflows on cron schedules.
//!
//! Run as many schedulers as you like (one per worker process, say): each tick of each entry
//! is enqueued **once**, by whichever scheduler claims it first. A tick is claimed with a lock
//! in the result backend named after the entry and the fire time, and the task it enqueues
//! gets a deterministic id (`periodic:ENTRY:FIRE_TIME`), so a tick that slips past one guard
//! is stopped by the other. A scheduler that dies after claiming a tick but before enqueueing
//! it lets its claim lapse; the others, which saw the claim, check again once it expired and
//! enqueue the tick themselves. (Known limit: one that dies in the instant between recording the
//! tick's task and publishing it loses that tick, as for workflow steps.)
//!
//! ```no_run
//! # use std::time::Duration;
//! # use conveyor_core::{scheduler::{PeriodicEntry, Scheduler, MissedTicks}, Signature};
//! # async fn demo(broker: std::sync::Arc<dyn conveyor_core::Broker>, backend: std::sync::Arc<dyn conveyor_core::ResultBackend>) -> conveyor_core::Result<()> {
//! let scheduler = Scheduler::builder(broker, backend)
//!     // Every 10 minutes (5 fields: minute hour day-of-month month day-of-week), in UTC.
//!     .entry(PeriodicEntry::new("cleanup", "*/10 * * * *", Signature::raw("cleanup", &())?)?)
//!     // At 09:30:00 on weekdays, Paris time, catching up once after downtime.
//!     .entry(
//!         PeriodicEntry::new("report", "0 30 9 * * Mon-Fri", Signature::raw("report", &"daily")?)?
//!             .time_zone("Europe/Paris")?
//!             .missed_ticks(MissedTicks::RunOnce),
//!     )
//!     .build()?;
//! scheduler.run().await // until SIGINT or SIGTERM
//! # }
//! ```
//!
//! Entries can also come from an [`EntryProvider`] (a database table, a config service),
//! synced every [`SchedulerBuilder::sync_interval`]: entries added, changed or removed there
//! take effect without a restart.
//!
//! Each fire is recorded (see [`history`]) for the dashboard and the CLI.

mod cron;
mod run;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::backend::ResultBackend;
use crate::broker::Broker;
use crate::client::Client;
use crate::error::{BoxError, Error, Result};
use crate::task::TaskId;
use crate::workflow::Canvas;

/// What to do with ticks that passed while no scheduler was running (or that could not be
/// enqueued within [`SchedulerBuilder::misfire_grace`], say because the broker was down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissedTicks {
    /// Skip them and wait for the next tick (default; what cron does).
    #[default]
    Skip,
    /// Enqueue the most recent missed tick once, as soon as a scheduler is back, however many
    /// were missed.
    RunOnce,
}

/// One periodic entry: a task or workflow and the cron schedule it is enqueued on.
///
/// Schedules:
/// - **5 fields**, as in crontab: `minute hour day-of-month month day-of-week`, e.g.
///   `"*/10 * * * *"`; days of week are `0`–`7` (Sunday is 0 or 7) or `sun`–`sat`. Fires at
///   second 0.
/// - **6 or 7 fields**, with seconds first and an optional year last, e.g. `"*/5 * * * * *"`
///   (every 5 seconds) or `"0 30 9 * * Mon-Fri"`. This is the `cron` crate's form, where
///   numeric days of week run `1`–`7` from Sunday: prefer names.
/// - `@yearly`, `@monthly`, `@weekly`, `@daily` (or `@midnight`), `@hourly`.
///
/// When both day-of-month and day-of-week are restricted, a day must match both. Times are
/// read in UTC unless [`PeriodicEntry::time_zone`] says otherwise; across daylight-saving
/// changes a local time that does not exist is skipped and one that occurs twice fires once.
#[derive(Debug, Clone)]
pub struct PeriodicEntry {
    id: String,
    spec: String,
    schedule: cron::CronSchedule,
    canvas: Canvas,
    missed: MissedTicks,
}

impl PeriodicEntry {
    /// An entry called `id` (unique among the scheduler's entries; it names the entry's locks,
    /// task ids and history) enqueuing `canvas` on the cron schedule `spec`.
    ///
    /// A bad expression is [`Error::InvalidSchedule`], naming it; a bad workflow is
    /// [`Error::InvalidWorkflow`].
    pub fn new(id: impl Into<String>, spec: &str, canvas: impl Into<Canvas>) -> Result<Self> {
        let id = id.into();
        if id.is_empty() || id.len() > 200 || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::InvalidOption {
                option: "id",
                reason: format!("periodic entry id `{id}` must be 1-200 characters with no spaces"),
            });
        }
        let canvas = canvas.into();
        canvas.validate()?;
        let schedule = cron::CronSchedule::parse(spec)?;
        Ok(PeriodicEntry { id, spec: spec.to_owned(), schedule, canvas, missed: MissedTicks::default() })
    }

    /// Reads the schedule in the time zone `name` (default UTC): `"UTC"`, a fixed offset such as
    /// `"+02:00"`, or, with the `tz` feature (which embeds the IANA database), a name such as
    /// `"Europe/Paris"`. Anything else is [`Error::InvalidTimeZone`].
    pub fn time_zone(mut self, name: &str) -> Result<Self> {
        self.schedule = self.schedule.in_zone(name)?;
        Ok(self)
    }

    /// Sets what happens to ticks missed while no scheduler ran (default [`MissedTicks::Skip`]).
    pub fn missed_ticks(mut self, policy: MissedTicks) -> Self {
        self.missed = policy;
        self
    }

    /// The entry's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The cron expression as given.
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// The time zone the schedule is read in.
    pub fn zone(&self) -> String {
        self.schedule.zone()
    }

    /// The first fire time strictly after `t`.
    pub fn next_fire_after(&self, t: SystemTime) -> Option<SystemTime> {
        self.schedule.next_after(t.into()).map(SystemTime::from)
    }

    /// What the entry enqueues.
    pub fn canvas(&self) -> &Canvas {
        &self.canvas
    }

    /// Whether two versions of an entry differ in anything but their generated task ids.
    fn same_as(&self, other: &PeriodicEntry) -> bool {
        let shape = |e: &PeriodicEntry| {
            let mut c = e.canvas.clone();
            c.assign_ids("x");
            serde_json::to_string(&c).ok()
        };
        self.spec == other.spec
            && self.zone() == other.zone()
            && self.missed == other.missed
            && shape(self) == shape(other)
    }
}

/// A source of periodic entries that may change while the scheduler runs (a database table,
/// a configuration service), read every [`SchedulerBuilder::sync_interval`].
///
/// If [`entries`](EntryProvider::entries) fails, the failure is logged, the provider's
/// previous entries are kept, and it is asked again at the next sync.
#[async_trait]
pub trait EntryProvider: Send + Sync + 'static {
    /// The entries as they are now.
    async fn entries(&self) -> std::result::Result<Vec<PeriodicEntry>, BoxError>;
}

#[async_trait]
impl<P: EntryProvider> EntryProvider for Arc<P> {
    async fn entries(&self) -> std::result::Result<Vec<PeriodicEntry>, BoxError> {
        P::entries(self).await
    }
}

/// The id of the task that the tick `fire_time` of entry `entry` enqueues (for a workflow, of
/// its first task): `periodic:ENTRY:YYYY-MM-DDTHH:MM:SSZ`. Use it to look a tick's run up.
pub fn fire_task_id(entry: &str, fire_time: SystemTime) -> TaskId {
    run::tick_name(entry, fire_time.into()).into()
}

/// One enqueued tick, as kept in an entry's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FireRecord {
    /// The entry's id.
    pub entry: String,
    /// The tick (the scheduled time, not when it was enqueued).
    #[serde(with = "crate::time::millis")]
    pub fire_time: SystemTime,
    /// The enqueued task (for a workflow: its first task).
    pub task_id: TaskId,
    /// When it was enqueued.
    #[serde(with = "crate::time::millis")]
    pub enqueued_at: SystemTime,
    /// The scheduler instance that enqueued it.
    pub scheduler: String,
    /// True when it was a missed tick caught up under [`MissedTicks::RunOnce`].
    #[serde(default)]
    pub catch_up: bool,
}

/// An entry's schedule rebuilt from its spec and zone (for the inspector's `cron` view): `None`
/// if either no longer parses.
pub(crate) fn schedule_of(spec: &str, zone: &str) -> Option<ScheduleOnly> {
    cron::CronSchedule::parse(spec).and_then(|s| s.in_zone(zone)).ok().map(ScheduleOnly)
}

/// A schedule without an entry around it.
pub(crate) struct ScheduleOnly(cron::CronSchedule);

impl ScheduleOnly {
    pub(crate) fn next_fire_after(&self, t: SystemTime) -> Option<SystemTime> {
        self.0.next_after(t.into()).map(SystemTime::from)
    }
}

/// The newest `limit` fires of `entry`, newest first (at most the scheduler's
/// [`history_len`](SchedulerBuilder::history_len), kept 400 days after the entry's last fire).
pub async fn history(backend: &dyn ResultBackend, entry: &str, limit: usize) -> Result<Vec<FireRecord>> {
    let items = backend.list_recent(&run::history_key(entry), limit).await?;
    items
        .iter()
        .map(|s| serde_json::from_str(s).map_err(|source| Error::Decode { what: "fire record", source }))
        .collect()
}

/// Settings of a [`Scheduler`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SchedulerConfig {
    /// How often providers are read.
    pub sync_interval: Duration,
    /// How late a tick may still be enqueued; older ticks count as missed.
    pub misfire_grace: Duration,
    /// How long a scheduler's claim on a tick lasts before others may take the tick over.
    pub claim_ttl: Duration,
    /// Fires kept in each entry's history.
    pub history_len: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            sync_interval: Duration::from_secs(60),
            misfire_grace: Duration::from_secs(60),
            claim_ttl: Duration::from_secs(15),
            history_len: 100,
        }
    }
}

/// Builds a [`Scheduler`].
pub struct SchedulerBuilder {
    client: Client,
    entries: Vec<PeriodicEntry>,
    providers: Vec<Arc<dyn EntryProvider>>,
    config: SchedulerConfig,
}

impl SchedulerBuilder {
    /// Adds a static entry.
    pub fn entry(mut self, entry: PeriodicEntry) -> Self {
        self.entries.push(entry);
        self
    }

    /// Adds a provider of dynamic entries.
    pub fn provider(mut self, provider: impl EntryProvider) -> Self {
        self.providers.push(Arc::new(provider));
        self
    }

    /// How often providers are read (default 60 s).
    pub fn sync_interval(mut self, d: Duration) -> Self {
        self.config.sync_interval = d;
        self
    }

    /// How late a tick may still be enqueued (default 60 s): a scheduler that restarts within
    /// it, or a broker that comes back within it, loses no tick. Older ticks are missed ticks,
    /// handled by each entry's [`MissedTicks`] policy.
    pub fn misfire_grace(mut self, d: Duration) -> Self {
        self.config.misfire_grace = d;
        self
    }

    /// How long a claim on a tick lasts before other schedulers may take the tick over
    /// (default 15 s); the claimer enqueues within it or loses the tick to another scheduler.
    pub fn claim_ttl(mut self, d: Duration) -> Self {
        self.config.claim_ttl = d;
        self
    }

    /// Fires kept in each entry's history (default 100).
    pub fn history_len(mut self, n: usize) -> Self {
        self.config.history_len = n;
        self
    }

    /// Checks the settings and builds the scheduler. Two static entries with one id are an
    /// [`Error::Config`]; a setting out of its range is an [`Error::InvalidOption`] naming it.
    pub fn build(self) -> Result<Scheduler> {
        let mut ids = HashSet::new();
        if let Some(dup) = self.entries.iter().find(|e| !ids.insert(e.id.as_str())) {
            return Err(Error::Config(format!("two periodic entries are called `{}`", dup.id)));
        }
        let c = &self.config;
        if c.claim_ttl < Duration::from_secs(1) || c.claim_ttl >= c.misfire_grace {
            let reason = format!(
                "the claim TTL ({:?}) must be at least 1s and shorter than the misfire grace ({:?})",
                c.claim_ttl, c.misfire_grace
            );
            return Err(Error::InvalidOption { option: "claim_ttl", reason });
        }
        const DAY: Duration = Duration::from_secs(24 * 3600);
        if c.sync_interval < Duration::from_millis(100) || c.sync_interval > DAY {
            let reason = "the sync interval must be 100ms to 1 day".into();
            return Err(Error::InvalidOption { option: "sync_interval", reason });
        }
        if c.misfire_grace > 7 * DAY || c.claim_ttl > DAY {
            let reason = "the misfire grace must be at most 7 days, the claim TTL at most 1 day".into();
            return Err(Error::InvalidOption { option: "misfire_grace", reason });
        }
        if c.history_len == 0 || c.history_len > 100_000 {
            let reason = "the history length must be 1 to 100000".into();
            return Err(Error::InvalidOption { option: "history_len", reason });
        }
        Ok(Scheduler {
            client: self.client,
            entries: self.entries,
            providers: self.providers,
            config: self.config,
            instance: format!("scheduler-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        })
    }
}

/// Enqueues periodic entries on their cron schedules, once per tick however many schedulers
/// run. See the [module docs](self).
pub struct Scheduler {
    client: Client,
    entries: Vec<PeriodicEntry>,
    providers: Vec<Arc<dyn EntryProvider>>,
    config: SchedulerConfig,
    instance: String,
}

impl Scheduler {
    /// A builder for a scheduler enqueuing to `broker`, with claims and history in `backend`.
    pub fn builder(broker: Arc<dyn Broker>, backend: Arc<dyn ResultBackend>) -> SchedulerBuilder {
        SchedulerBuilder {
            client: Client::new(broker, backend),
            entries: Vec::new(),
            providers: Vec::new(),
            config: SchedulerConfig::default(),
        }
    }

    /// This scheduler's instance name (in logs and fire records).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The scheduler's settings.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Runs until SIGINT or SIGTERM.
    pub async fn run(self) -> Result<()> {
        let stop = CancellationToken::new();
        let s = stop.clone();
        let signals = tokio::spawn(async move {
            crate::shutdown_signal().await;
            s.cancel();
        });
        self.run_until(stop).await;
        signals.abort();
        Ok(())
    }

    /// Runs until `stop` is cancelled. Broker and backend errors are logged and retried; they
    /// never end the run.
    pub async fn run_until(self, stop: CancellationToken) {
        run::Runner::new(self).run(stop).await
    }
}
