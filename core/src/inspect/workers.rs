//! The worker registry and the shared pause flags, kept in the result backend's operations
//! maps ([`ResultBackend::map_set`](crate::ResultBackend::map_set)).
//!
//! Every running worker writes its [`WorkerInfo`] every [`BEAT`] (one write, whatever its
//! load), and removes it when it stops; one that stopped beating (killed) is left out of the
//! list after [`GONE_AFTER`]. Every second, each worker reads the pause flags and pauses or
//! resumes its queues to match, so a pause reaches every process within about a second, on
//! brokers whose own pause is per process (RabbitMQ, SQS) too.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

pub use crate::worker::RunningTask;

/// The operations map of the worker registry.
pub const WORKERS_MAP: &str = "workers";
/// The operations map of the queues paused by an operator (queue name → when).
pub const PAUSED_MAP: &str = "paused";
/// The operations map of the running tasks an operator cancelled (task id → when); the worker
/// running one removes it once cancelled.
pub const CANCEL_MAP: &str = "cancel";
/// How often a worker writes its entry.
pub const BEAT: Duration = Duration::from_secs(5);
/// How long after its last beat a worker counts as gone.
pub const GONE_AFTER: Duration = Duration::from_secs(15);

/// A running worker process, as it registers itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// Its id (random, per run).
    pub id: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// The queues it takes tasks from, with their weights.
    pub queues: Vec<(String, u32)>,
    /// How many handlers it runs at once at most.
    pub concurrency: usize,
    /// The tasks its handlers run now.
    pub running: Vec<RunningTask>,
    /// When it started.
    #[serde(with = "crate::time::millis")]
    pub started_at: SystemTime,
    /// When it last wrote this entry.
    #[serde(with = "crate::time::millis")]
    pub last_beat: SystemTime,
    /// The version of Conveyor it runs.
    pub version: String,
}

impl WorkerInfo {
    /// Whether it stopped beating (see [`GONE_AFTER`]).
    pub fn is_gone(&self) -> bool {
        SystemTime::now().duration_since(self.last_beat).is_ok_and(|d| d > GONE_AFTER)
    }
}
