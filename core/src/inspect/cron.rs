//! The periodic entries of the application's schedulers, as they register them in the result
//! backend's `cron` operations map at every sync (each entry's id, spec, time zone, the
//! scheduler that holds it, when it was last seen), for `conveyor cron ls`. An entry no
//! scheduler has synced for three sync intervals is gone (removed, or its schedulers stopped).

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::backend::ResultBackend;
use crate::error::Result;
use crate::scheduler::FireRecord;

/// The operations map of the periodic entries.
pub const CRON_MAP: &str = "cron";

/// A periodic entry as its scheduler registered it, with its next and last fire.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CronEntry {
    /// The entry's id.
    pub id: String,
    /// Its cron expression.
    pub spec: String,
    /// The time zone it is read in.
    pub zone: String,
    /// The scheduler instance that last synced it.
    pub scheduler: String,
    /// When that was.
    #[serde(with = "crate::time::millis")]
    pub seen_at: SystemTime,
    /// That scheduler's sync interval, in milliseconds.
    pub sync_interval_ms: u64,
    /// Its next tick after now (computed when read).
    #[serde(skip)]
    pub next_fire: Option<SystemTime>,
    /// Its last enqueued tick, from its fire history (read with it).
    #[serde(skip)]
    pub last_fire: Option<FireRecord>,
}

impl CronEntry {
    pub(crate) fn new(e: &crate::scheduler::PeriodicEntry, scheduler: &str, sync_interval: Duration) -> Self {
        CronEntry {
            id: e.id().to_owned(),
            spec: e.spec().to_owned(),
            zone: e.zone(),
            scheduler: scheduler.to_owned(),
            seen_at: SystemTime::now(),
            sync_interval_ms: sync_interval.as_millis() as u64,
            next_fire: None,
            last_fire: None,
        }
    }

    fn is_gone(&self) -> bool {
        let limit = Duration::from_millis(self.sync_interval_ms.saturating_mul(3).max(10_000));
        SystemTime::now().duration_since(self.seen_at).is_ok_and(|d| d > limit)
    }
}

/// Every periodic entry of the application, by id, with its next and last fire.
pub async fn entries(backend: &dyn ResultBackend) -> Result<Vec<CronEntry>> {
    let mut out = Vec::new();
    for (id, json) in backend.map_all(CRON_MAP).await? {
        let mut e = match serde_json::from_str::<CronEntry>(&json) {
            Ok(e) if !e.is_gone() => e,
            _ => {
                let _ = backend.map_remove(CRON_MAP, &id).await;
                continue;
            }
        };
        let schedule = crate::scheduler::schedule_of(&e.spec, &e.zone);
        e.next_fire = schedule.and_then(|s| s.next_fire_after(SystemTime::now()));
        e.last_fire = crate::scheduler::history(backend, &e.id, 1).await?.into_iter().next();
        out.push(e);
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}
