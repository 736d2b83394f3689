//! Processed and failed counts per queue, per minute for the last 24 hours and per day for the
//! last 90 days, kept in the result backend's operations maps (`history:m:QUEUE`,
//! `history:d:QUEUE`; fields `MINUTE:p` / `MINUTE:f`, the minute or day since the Unix epoch).
//!
//! Each worker counts in memory and adds its counts every [`BEAT`](super::workers::BEAT) and
//! when it stops: at most four increments per queue it ran tasks of, per beat, whatever its
//! load. An attempt that ended (completed, failed and retried, or archived) is processed; one
//! that failed is also failed. Fields older than the window are dropped by the workers, once an
//! hour, and by every read.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::backend::ResultBackend;
use crate::error::Result;

/// The name under which the history of all queues together is kept (not a valid queue name,
/// so it cannot clash with one).
pub const ALL_QUEUES: &str = "*";

/// How far back minutes are kept.
pub const MINUTES_KEPT: u64 = 24 * 60;
/// How far back days are kept.
pub const DAYS_KEPT: u64 = 90;

/// One interval's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Point {
    /// When the interval starts.
    pub at: SystemTime,
    /// Attempts that ended.
    pub processed: u64,
    /// Of those, the failed ones.
    pub failed: u64,
}

/// A queue's history: the minutes and days that saw an attempt end, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct History {
    /// Per minute, the last 24 hours.
    pub minutes: Vec<Point>,
    /// Per day, the last 90 days.
    pub days: Vec<Point>,
}

pub(crate) fn minute_map(queue: &str) -> String {
    format!("history:m:{queue}")
}

pub(crate) fn day_map(queue: &str) -> String {
    format!("history:d:{queue}")
}

/// Minutes and days since the Unix epoch, now.
pub(crate) fn now_slots() -> (u64, u64) {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    (secs / 60, secs / 86_400)
}

/// Adds a worker's counts for one queue.
pub(crate) async fn add(backend: &dyn ResultBackend, queue: &str, processed: u64, failed: u64) -> Result<()> {
    let (minute, day) = now_slots();
    for (map, slot) in [(minute_map(queue), minute), (day_map(queue), day)] {
        backend.map_incr(&map, &format!("{slot}:p"), processed as i64).await?;
        if failed > 0 {
            backend.map_incr(&map, &format!("{slot}:f"), failed as i64).await?;
        }
    }
    Ok(())
}

/// Reads one map into points, dropping (and removing) the fields older than `kept` slots.
async fn read(backend: &dyn ResultBackend, map: &str, now: u64, kept: u64, unit: u64) -> Result<Vec<Point>> {
    let mut slots: std::collections::BTreeMap<u64, (u64, u64)> = Default::default();
    for (field, value) in backend.map_all(map).await? {
        let Some((slot, kind)) = field.split_once(':') else { continue };
        let Ok(slot) = slot.parse::<u64>() else { continue };
        if slot + kept <= now {
            let _ = backend.map_remove(map, &field).await;
            continue;
        }
        let n = value.parse::<u64>().unwrap_or(0);
        let e = slots.entry(slot).or_default();
        match kind {
            "p" => e.0 += n,
            "f" => e.1 += n,
            _ => {}
        }
    }
    Ok(slots
        .into_iter()
        .map(|(slot, (processed, failed))| Point {
            at: UNIX_EPOCH + Duration::from_secs(slot * unit),
            processed,
            failed,
        })
        .collect())
}

/// A queue's history (see the module docs).
pub async fn history(backend: &dyn ResultBackend, queue: &str) -> Result<History> {
    let (minute, day) = now_slots();
    Ok(History {
        minutes: read(backend, &minute_map(queue), minute, MINUTES_KEPT, 60).await?,
        days: read(backend, &day_map(queue), day, DAYS_KEPT, 86_400).await?,
    })
}

/// Drops the fields older than the window (a worker does it once an hour).
pub(crate) async fn trim(backend: &dyn ResultBackend, queue: &str) -> Result<()> {
    history(backend, queue).await.map(drop)
}
