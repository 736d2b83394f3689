//! Key names. Every key of one queue shares the hash tag `{prefix:queue}`, so each script
//! touches a single Redis Cluster slot.

pub(crate) struct QueueKeys {
    pub(crate) pending: String,
    pub(crate) delayed: String,
    pub(crate) active: String,
    pub(crate) archived: String,
    pub(crate) seq: String,
    pub(crate) front: String,
    pub(crate) tokens: String,
    /// Hash: task id -> token of its current delivery.
    pub(crate) leases: String,
    pub(crate) signal: String,
    pub(crate) paused: String,
    /// Prefix of the per-task hashes: `task_prefix + id`.
    pub(crate) task_prefix: String,
}

impl QueueKeys {
    pub(crate) fn new(prefix: &str, queue: &str) -> Self {
        let base = format!("{prefix}:{{{prefix}:{queue}}}");
        QueueKeys {
            pending: format!("{base}:pending"),
            delayed: format!("{base}:delayed"),
            active: format!("{base}:active"),
            archived: format!("{base}:archived"),
            seq: format!("{base}:seq"),
            front: format!("{base}:front"),
            tokens: format!("{base}:tokens"),
            leases: format!("{base}:leases"),
            signal: format!("{base}:signal"),
            paused: format!("{base}:paused"),
            task_prefix: format!("{base}:t:"),
        }
    }

    pub(crate) fn task(&self, id: &str) -> String {
        format!("{}{id}", self.task_prefix)
    }
}
