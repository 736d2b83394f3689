//! The deliveries this worker holds, for the lease heartbeat: each one's receipt, and what the
//! worker knows of its lease (lost, or when the broker last confirmed it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::broker::Receipt;
use crate::task::TaskMessage;

/// What the worker knows of one delivery's lease.
pub(crate) struct LeaseWatch {
    /// Fires once the broker said the lease is lost: the task may be running elsewhere, so
    /// this copy stops and writes nothing.
    pub(crate) lost: CancellationToken,
    /// When the broker last confirmed the lease (the receive, or an extension that was sent
    /// then), in microseconds since the worker's epoch.
    confirmed_us: AtomicU64,
    /// When its handler started, in microseconds since the worker's epoch plus one (0: not yet).
    started_us: AtomicU64,
    /// Fires when an operator cancels the task: the handler is dropped where it stands and the
    /// task archived as cancelled.
    pub(crate) cancel: CancellationToken,
}

/// A slab: a delivery's place is an index, reused once it is settled. Every delivery enters
/// and leaves it, so both are O(1) with no hashing; the heartbeat reads it every lease / 3.
pub(crate) struct InFlight {
    slab: Mutex<Slab>,
    epoch: Instant,
    /// The wall-clock time of `epoch`.
    epoch_wall: std::time::SystemTime,
}

impl Default for InFlight {
    fn default() -> Self {
        InFlight { slab: Mutex::default(), epoch: Instant::now(), epoch_wall: std::time::SystemTime::now() }
    }
}

/// One delivery held: its receipt, lease watch, and task (if it decoded).
type Item = (Receipt, Arc<LeaseWatch>, Option<Arc<TaskMessage>>);

#[derive(Default)]
struct Slab {
    items: Vec<Option<Item>>,
    free: Vec<usize>,
}

/// A task whose handler is running (for the worker registry).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunningTask {
    /// The task's id.
    pub id: crate::task::TaskId,
    /// Its name.
    pub name: String,
    /// When its handler started.
    #[serde(with = "crate::time::millis")]
    pub started_at: std::time::SystemTime,
}

impl InFlight {
    /// Every delivery held now, with its lease watch.
    pub(crate) fn snapshot(&self) -> (Vec<Receipt>, Vec<Arc<LeaseWatch>>) {
        let slab = self.slab.lock().unwrap_or_else(|e| e.into_inner());
        slab.items.iter().flatten().map(|(r, w, _)| (r.clone(), w.clone())).unzip()
    }

    /// Records that `watch`'s handler starts now.
    pub(crate) fn started(&self, watch: &LeaseWatch) {
        let us = Instant::now().saturating_duration_since(self.epoch).as_micros() as u64;
        watch.started_us.store(us + 1, Ordering::Relaxed);
    }

    /// Cancels the running tasks among `ids`; those it cancelled.
    pub(crate) fn cancel(&self, ids: &[crate::task::TaskId]) -> Vec<crate::task::TaskId> {
        let slab = self.slab.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for (_, w, t) in slab.items.iter().flatten() {
            if let Some(t) = t.as_ref().filter(|t| ids.contains(&t.id) && w.started_us.load(Ordering::Relaxed) > 0) {
                w.cancel.cancel();
                out.push(t.id.clone());
            }
        }
        out
    }

    /// The tasks whose handler runs now.
    pub(crate) fn running(&self) -> Vec<RunningTask> {
        let slab = self.slab.lock().unwrap_or_else(|e| e.into_inner());
        slab.items
            .iter()
            .flatten()
            .filter_map(|(_, w, t)| {
                let us = w.started_us.load(Ordering::Relaxed);
                let t = t.as_ref().filter(|_| us > 0)?;
                let started_at = self.epoch_wall + Duration::from_micros(us - 1);
                Some(RunningTask { id: t.id.clone(), name: t.name.clone(), started_at })
            })
            .collect()
    }

    /// Records that the broker confirmed `watch`'s lease as of `at` (when the request was sent).
    pub(crate) fn confirm(&self, watch: &LeaseWatch, at: Instant) {
        let us = at.saturating_duration_since(self.epoch).as_micros() as u64;
        watch.confirmed_us.fetch_max(us, Ordering::Relaxed);
    }

    /// How long ago the broker last confirmed `watch`'s lease.
    pub(crate) fn since_confirmed(&self, watch: &LeaseWatch) -> Duration {
        let at = self.epoch + Duration::from_micros(watch.confirmed_us.load(Ordering::Relaxed));
        Instant::now().saturating_duration_since(at)
    }
}

/// Keeps a delivery's lease renewed while it lives; removed on drop, even on a panic.
pub(crate) struct Leased<'a> {
    set: &'a InFlight,
    key: usize,
    pub(crate) watch: Arc<LeaseWatch>,
}

impl<'a> Leased<'a> {
    /// Adds a delivery received just now (its lease counts as confirmed now).
    pub(crate) fn new(set: &'a InFlight, r: Receipt, task: Option<Arc<TaskMessage>>) -> Self {
        let watch = Arc::new(LeaseWatch {
            lost: CancellationToken::new(),
            confirmed_us: AtomicU64::new(0),
            started_us: AtomicU64::new(0),
            cancel: CancellationToken::new(),
        });
        set.confirm(&watch, Instant::now());
        let mut slab = set.slab.lock().unwrap_or_else(|e| e.into_inner());
        let item = Some((r, watch.clone(), task));
        let key = match slab.free.pop() {
            Some(i) => {
                slab.items[i] = item;
                i
            }
            None => {
                slab.items.push(item);
                slab.items.len() - 1
            }
        };
        Leased { set, key, watch }
    }
}

impl Drop for Leased<'_> {
    fn drop(&mut self) {
        let item = {
            let mut slab = self.set.slab.lock().unwrap_or_else(|e| e.into_inner());
            let r = slab.items[self.key].take();
            if r.is_some() {
                slab.free.push(self.key);
            }
            r
        };
        // Dropped outside the lock: it may be the receipt's last reference.
        drop(item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_reused_and_receipts_listed() {
        let set = InFlight::default();
        let a = Leased::new(&set, Receipt::new(1u32), None);
        let b = Leased::new(&set, Receipt::new(2u32), None);
        assert_eq!(set.snapshot().0.len(), 2);
        drop(a);
        assert_eq!(set.snapshot().0.len(), 1);
        let c = Leased::new(&set, Receipt::new(3u32), None);
        assert_eq!(c.key, 0, "the freed place is reused");
        drop((b, c));
        assert!(set.snapshot().0.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn confirmations_only_move_forward() {
        let set = InFlight::default();
        let a = Leased::new(&set, Receipt::new(1u32), None);
        let received = Instant::now();
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(set.since_confirmed(&a.watch), Duration::from_secs(3));
        set.confirm(&a.watch, Instant::now());
        // A slow extension sent earlier answers late: it does not move the confirmation back.
        set.confirm(&a.watch, received);
        assert_eq!(set.since_confirmed(&a.watch), Duration::ZERO);
    }
}
