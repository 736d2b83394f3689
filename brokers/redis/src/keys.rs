//! Key names. Every key of one queue shares the hash tag `{prefix:queue}`, so each script
//! touches a single Redis Cluster slot.

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
        }
    }

    pub(crate) fn task(&self, id: &str) -> String {
        format!("{}{id}", self.task_prefix)
    }

    /// The stream key of a suffix (`s0`, `f3`, ...).
    pub(crate) fn stream(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.base)
    }
}
