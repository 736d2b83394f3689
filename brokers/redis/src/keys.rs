//! Key names. Every key of one queue shares the hash tag `{prefix:queue}`, so each script
//! touches a single Redis Cluster slot.

use std::sync::Mutex;

pub(crate) struct QueueKeys {
    /// What every key of the queue starts with; the scripts derive stream and task keys from it.
    pub(crate) base: String,
    /// Set of the stream suffixes in use (`s0`..`s9` ready tasks, `f0`..`f9` handed back).
    pub(crate) streams: String,
    pub(crate) delayed: String,
    /// Hash of the ids of live tasks (ready, scheduled, running), for refusing duplicates.
    pub(crate) ids: String,
    pub(crate) archived: String,
    /// Set for 200 ms after a claim looked for lost leases.
    pub(crate) recovery: String,
    pub(crate) signal: String,
    pub(crate) paused: String,
    /// Prefix of the per-task hashes (scheduled and archived tasks): `task_prefix + id`.
    pub(crate) task_prefix: String,
    /// The queue's only stream, as the last claim found it: claims read it with a plain
    /// `XREADGROUP` (see `claim.rs`).
    plain: Mutex<Option<String>>,
}

impl QueueKeys {
    pub(crate) fn new(prefix: &str, queue: &str) -> Self {
        let base = format!("{prefix}:{{{prefix}:{queue}}}");
        QueueKeys {
            streams: format!("{base}:streams"),
            delayed: format!("{base}:delayed"),
            ids: format!("{base}:ids"),
            archived: format!("{base}:archived"),
            recovery: format!("{base}:recovery"),
            signal: format!("{base}:signal"),
            paused: format!("{base}:paused"),
            task_prefix: format!("{base}:t:"),
            base,
            plain: Mutex::new(None),
        }
    }

    /// The stream suffix claims read with a plain `XREADGROUP`, if any.
    pub(crate) fn plain_read(&self) -> Option<String> {
        self.plain.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_plain_read(&self, suffix: Option<String>) {
        *self.plain.lock().unwrap_or_else(|e| e.into_inner()) = suffix;
    }

    pub(crate) fn task(&self, id: &str) -> String {
        format!("{}{id}", self.task_prefix)
    }

    /// The stream key of a suffix (`s0`, `f3`, ...).
    pub(crate) fn stream(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.base)
    }
}
