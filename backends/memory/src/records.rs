//! Task records, sharded by id, with expiry and waiters.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conveyor_core::{Error, Result, StateUpdate, TaskId, TaskMessage, TaskRecord, TaskState, UNCONFIRMED_TTL};
use tokio::sync::Notify;
use tokio::time::Instant;

const SHARDS: usize = 16;

pub(crate) struct Records {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
}

#[derive(Default)]
struct Shard {
    map: HashMap<TaskId, Slot, RandomState>,
    expiry: BinaryHeap<Reverse<(Instant, TaskId)>>,
}

struct Slot {
    record: TaskRecord,
    expires: Option<Instant>,
    waiters: Option<Arc<Notify>>,
    /// Created by an enqueue, and neither confirmed nor updated since (see `create`).
    unconfirmed: bool,
}

impl Default for Records {
    fn default() -> Self {
        Records { shards: (0..SHARDS).map(|_| Mutex::default()).collect(), hasher: RandomState::default() }
    }
}

impl Shard {
    fn purge(&mut self, now: Instant) {
        while let Some(Reverse((at, _))) = self.expiry.peek() {
            if *at > now {
                break;
            }
            let Reverse((at, id)) = self.expiry.pop().expect("peeked");
            if self.map.get(&id).is_some_and(|s| s.expires == Some(at)) {
                self.map.remove(&id);
            }
        }
    }
}

impl Records {
    fn shard(&self, id: &TaskId) -> std::sync::MutexGuard<'_, Shard> {
        let i = (self.hasher.hash_one(id) as usize) % SHARDS;
        let mut g = self.shards[i].lock().unwrap_or_else(|e| e.into_inner());
        g.purge(Instant::now());
        g
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).map.len()).sum()
    }

    pub(crate) fn create(&self, record: &TaskRecord) -> Result<()> {
        let mut shard = self.shard(&record.id);
        // An unconfirmed record (of an enqueue that failed) is replaced; its waiters stay.
        let waiters = match shard.map.remove(&record.id) {
            Some(old) if !old.unconfirmed => {
                shard.map.insert(record.id.clone(), old);
                return Err(Error::DuplicateTask { id: record.id.to_string() });
            }
            old => old.and_then(|o| o.waiters),
        };
        let at = Instant::now() + UNCONFIRMED_TTL;
        shard.expiry.push(Reverse((at, record.id.clone())));
        let slot = Slot { record: record.clone(), expires: Some(at), waiters, unconfirmed: true };
        shard.map.insert(record.id.clone(), slot);
        Ok(())
    }

    pub(crate) fn confirm(&self, id: &TaskId) {
        if let Some(slot) = self.shard(id).map.get_mut(id).filter(|s| s.unconfirmed) {
            slot.unconfirmed = false;
            slot.expires = None;
        }
    }

    pub(crate) fn update(&self, task: &TaskMessage, update: StateUpdate) {
        let mut guard = self.shard(&task.id);
        let shard = &mut *guard;
        let terminal = update.state.is_terminal();
        let retain = update.retain;
        // One lookup when the record exists (nearly always: the enqueue created it).
        let existed = shard.map.contains_key(&task.id);
        let slot = match shard.map.get_mut(&task.id) {
            Some(slot) => slot,
            None => shard.map.entry(task.id.clone()).or_insert(Slot {
                record: TaskRecord::enqueued(task),
                expires: None,
                waiters: None,
                unconfirmed: false,
            }),
        };
        // A record just filled in (from the envelope, which a retry has already counted) has
        // nothing to fence.
        if existed && !slot.record.accepts(&update) {
            return;
        }
        slot.record.apply(update);
        slot.unconfirmed = false;
        if !terminal {
            slot.expires = None;
            return;
        }
        if let Some(w) = slot.waiters.take() {
            w.notify_waiters();
        }
        match retain {
            Some(d) if d.is_zero() => {
                shard.map.remove(&task.id);
            }
            Some(d) => {
                let at = Instant::now() + d;
                slot.expires = Some(at);
                shard.expiry.push(Reverse((at, task.id.clone())));
            }
            None => slot.expires = None,
        }
    }

    pub(crate) fn get(&self, id: &TaskId) -> Option<TaskRecord> {
        self.shard(id).map.get(id).map(|s| s.record.clone())
    }

    /// The completed records of `queue`, newest first. A scan of every record: this backend
    /// serves one process, tests and development, where records are few.
    pub(crate) fn completed(&self, queue: &str) -> Vec<TaskRecord> {
        let now = Instant::now();
        let mut out: Vec<TaskRecord> = Vec::new();
        for shard in self.shards.iter() {
            let mut g = shard.lock().unwrap_or_else(|e| e.into_inner());
            g.purge(now);
            let done = g.map.values().filter(|s| s.record.state == TaskState::Completed && s.record.queue == queue);
            out.extend(done.map(|s| s.record.clone()));
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.updated_at));
        out
    }

    /// How many [`completed`](Self::completed) records `queue` has (a scan too).
    pub(crate) fn completed_count(&self, queue: &str) -> usize {
        let now = Instant::now();
        let mut n = 0;
        for shard in self.shards.iter() {
            let mut g = shard.lock().unwrap_or_else(|e| e.into_inner());
            g.purge(now);
            n += g.map.values().filter(|s| s.record.state == TaskState::Completed && s.record.queue == queue).count();
        }
        n
    }

    pub(crate) fn delete(&self, id: &TaskId) -> bool {
        self.shard(id).map.remove(id).is_some()
    }

    pub(crate) async fn wait(&self, id: &TaskId, timeout: Duration) -> Result<TaskRecord> {
        let deadline = Instant::now() + timeout;
        loop {
            let notify = {
                let mut shard = self.shard(id);
                let Some(slot) = shard.map.get_mut(id) else {
                    return Err(Error::NotFound { id: id.to_string() });
                };
                if slot.record.state.is_terminal() {
                    return Ok(slot.record.clone());
                }
                slot.waiters.get_or_insert_with(Default::default).clone()
            };
            let notified = notify.notified();
            tokio::pin!(notified);
            // Registered before re-checking, so a completion in between is not missed.
            notified.as_mut().enable();
            match self.get(id) {
                None => return Err(Error::NotFound { id: id.to_string() }),
                Some(r) if r.state.is_terminal() => return Ok(r),
                Some(_) => {}
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(Error::Timeout(timeout));
            }
        }
    }
}
