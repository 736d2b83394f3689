//! One queue of the memory broker: ready tasks by priority, scheduled tasks, leases, archive.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use conveyor_core::{ArchivedTask, Payload, QueueStats, TaskId, MAX_PRIORITY};
use tokio::time::Instant;

/// A stored message.
pub(crate) struct Entry {
    pub(crate) payload: Payload,
    pub(crate) redelivered: bool,
    /// Leases on this entry that expired (its receiver died).
    pub(crate) lost_leases: u32,
    /// For a body published raw (not by a client, which checks sizes): its size and first KiB,
    /// so that a receiver with a lower limit gets it as too large.
    pub(crate) raw: Option<(usize, Vec<u8>)>,
    /// When it last became ready (for the queue's latency).
    pub(crate) ready_since: Instant,
}

impl Entry {
    pub(crate) fn new(payload: Payload) -> Self {
        Entry { payload, redelivered: false, lost_leases: 0, raw: None, ready_since: Instant::now() }
    }

    /// The task's id, if it decoded.
    pub(crate) fn id(&self) -> Option<&TaskId> {
        match &self.payload {
            Payload::Task(t) => Some(&t.id),
            Payload::Undecodable { .. } => None,
        }
    }

    /// Waiting to be retried after a failed attempt (rather than enqueued with a delay).
    pub(crate) fn is_retry(&self) -> bool {
        matches!(&self.payload, Payload::Task(t) if t.retried > 0)
    }

    fn priority(&self) -> usize {
        match &self.payload {
            Payload::Task(t) => usize::from(t.priority.min(MAX_PRIORITY)),
            Payload::Undecodable { .. } => 0,
        }
    }
}

pub(crate) struct Leased {
    pub(crate) entry: Entry,
    until: Instant,
}

pub(crate) struct Scheduled {
    pub(crate) at: Instant,
    seq: u64,
    pub(crate) entry: Entry,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // Reversed: BinaryHeap is a max-heap, we want the earliest first.
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

pub(crate) struct Queue {
    pub(crate) name: Arc<str>,
    pub(crate) paused: bool,
    /// Ready tasks, one deque per priority (index = priority).
    pub(crate) ready: Vec<VecDeque<Entry>>,
    pub(crate) ready_len: usize,
    pub(crate) scheduled: BinaryHeap<Scheduled>,
    /// Of `scheduled`, the tasks waiting to be retried.
    pub(crate) retrying: usize,
    sched_seq: u64,
    pub(crate) active: HashMap<u64, Leased, foldhash::fast::RandomState>,
    /// Lease deadlines, possibly stale (checked against `active`).
    leases: BinaryHeap<Reverse<(Instant, u64)>>,
    pub(crate) archive: VecDeque<ArchivedTask>,
}

impl Queue {
    pub(crate) fn new(name: Arc<str>) -> Self {
        Queue {
            name,
            paused: false,
            ready: (0..=MAX_PRIORITY).map(|_| VecDeque::new()).collect(),
            ready_len: 0,
            scheduled: BinaryHeap::new(),
            retrying: 0,
            sched_seq: 0,
            active: HashMap::default(),
            leases: BinaryHeap::new(),
            archive: VecDeque::new(),
        }
    }

    /// Appends a ready entry (or puts it first, for hand-backs).
    pub(crate) fn push_ready(&mut self, mut entry: Entry, front: bool) {
        let p = entry.priority();
        self.ready_len += 1;
        entry.ready_since = Instant::now();
        if front {
            entry.redelivered = true;
            self.ready[p].push_front(entry);
        } else {
            self.ready[p].push_back(entry);
        }
    }

    pub(crate) fn pop_ready(&mut self) -> Option<Entry> {
        if self.ready_len == 0 {
            return None;
        }
        let e = self.ready.iter_mut().rev().find_map(VecDeque::pop_front)?;
        self.ready_len -= 1;
        Some(e)
    }

    pub(crate) fn schedule(&mut self, at: Instant, entry: Entry) {
        self.sched_seq += 1;
        self.retrying += usize::from(entry.is_retry());
        self.scheduled.push(Scheduled { at, seq: self.sched_seq, entry });
    }

    pub(crate) fn activate(&mut self, seq: u64, entry: Entry, until: Instant) {
        self.active.insert(seq, Leased { entry, until });
        self.leases.push(Reverse((until, seq)));
    }

    pub(crate) fn take_active(&mut self, seq: u64) -> Option<Entry> {
        self.active.remove(&seq).map(|l| l.entry)
    }

    /// Extends an active delivery's lease; false if it is not active (any more).
    pub(crate) fn extend(&mut self, seq: u64, until: Instant) -> bool {
        let held = match self.active.get_mut(&seq) {
            Some(l) => {
                l.until = until;
                self.leases.push(Reverse((until, seq)));
                true
            }
            None => false,
        };
        self.compact_leases();
        held
    }

    /// Moves due scheduled tasks to ready, and tasks whose lease expired back to ready (one
    /// attempt used, as the worker that held them is presumed dead).
    pub(crate) fn maintain(&mut self, now: Instant) {
        while self.scheduled.peek().is_some_and(|s| s.at <= now) {
            let s = self.scheduled.pop().expect("peeked");
            self.retrying -= usize::from(s.entry.is_retry());
            self.push_ready(s.entry, false);
        }
        while let Some(&Reverse((until, seq))) = self.leases.peek() {
            if until > now {
                break;
            }
            self.leases.pop();
            let expired = self.active.get(&seq).is_some_and(|l| l.until <= now);
            if expired {
                let mut entry = self.active.remove(&seq).expect("checked").entry;
                entry.lost_leases += 1;
                entry.redelivered = true;
                self.push_ready(entry, false);
            }
        }
        self.compact_leases();
    }

    /// Drops stale lease records (of settled or extended deliveries) so they cannot pile up.
    fn compact_leases(&mut self) {
        if self.leases.len() > 64 && self.leases.len() > 4 * self.active.len() {
            self.leases = self.active.iter().map(|(s, l)| Reverse((l.until, *s))).collect();
        }
    }

    /// The earliest time something changes by itself (a scheduled task due, a lease expiring).
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        let s = self.scheduled.peek().map(|s| s.at);
        let l = self.leases.peek().map(|r| r.0 .0);
        match (s, l) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(crate) fn archive(&mut self, payload: Payload, reason: String, limit: usize) {
        self.archive.push_front(ArchivedTask::new(payload, reason, SystemTime::now()));
        self.archive.truncate(limit);
    }

    pub(crate) fn archived(&self, offset: usize, limit: usize) -> Vec<ArchivedTask> {
        self.archive.iter().skip(offset).take(limit).cloned().collect()
    }

    pub(crate) fn stats(&self) -> QueueStats {
        let mut s = QueueStats::default();
        s.queue = self.name.to_string();
        s.pending = self.ready_len as u64;
        s.scheduled = self.scheduled.len() as u64;
        s.retry = self.retrying as u64;
        s.latency = self.ready.iter().filter_map(|d| d.front()).map(|e| e.ready_since.elapsed()).max();
        s.active = self.active.len() as u64;
        s.archived = self.archive.len() as u64;
        s.paused = self.paused;
        s
    }
}

/// Removing one task by id, for the inspector.
impl Queue {
    /// Takes the ready task `id` out.
    pub(crate) fn remove_ready(&mut self, id: &TaskId) -> Option<Entry> {
        for d in self.ready.iter_mut() {
            if let Some(i) = d.iter().position(|e| e.id() == Some(id)) {
                self.ready_len -= 1;
                return d.remove(i);
            }
        }
        None
    }

    /// Takes the scheduled (or retry) task `id` out.
    pub(crate) fn remove_scheduled(&mut self, id: &TaskId) -> Option<Entry> {
        if !self.scheduled.iter().any(|s| s.entry.id() == Some(id)) {
            return None;
        }
        let mut found = None;
        let kept: BinaryHeap<Scheduled> = std::mem::take(&mut self.scheduled)
            .into_iter()
            .filter_map(|s| {
                if found.is_none() && s.entry.id() == Some(id) {
                    found = Some(s.entry);
                    None
                } else {
                    Some(s)
                }
            })
            .collect();
        self.scheduled = kept;
        if let Some(e) = &found {
            self.retrying -= usize::from(e.is_retry());
        }
        found
    }

    /// Takes the archived task `id` out.
    pub(crate) fn remove_archived(&mut self, id: &TaskId) -> Option<ArchivedTask> {
        let i = self.archive.iter().position(|a| matches!(&a.payload, Payload::Task(t) if t.id == *id))?;
        self.archive.remove(i)
    }
}
