//! Message group and deduplication ids on FIFO queues.

use conveyor_core::{time, TaskMessage};

/// The deduplication id of a task's publish on a FIFO queue: one per logical enqueue (task id,
/// attempt and creation time), so that an enqueue retried after a lost answer is not queued
/// twice, while a later enqueue of the same id (a new envelope) is never dropped. Uniqueness
/// of tasks is the unique lock's job, never SQS's.
pub(crate) fn publish_dedup(t: &TaskMessage) -> String {
    format!("{}-{}-{}", t.id, t.retried, time::to_millis(t.created_at))
}

/// A deduplication (and message group) id used once.
pub(crate) fn unique_id(what: &str) -> String {
    format!("{what}-{}", uuid::Uuid::new_v4().simple())
}

/// `s` as an SQS FIFO id (up to 128 ASCII letters, digits and punctuation): as it is when it
/// fits, else a hash of it (FNV-1a, the same in every process).
pub(crate) fn fifo_id(s: &str) -> String {
    if s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()) {
        return s.to_owned();
    }
    let h = s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("h{h:016x}-{}", s.len())
}
