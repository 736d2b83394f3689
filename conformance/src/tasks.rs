//! The task the suite runs, and what it records.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use conveyor::{TaskContext, TaskError};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// What the probe task does on each attempt.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Probe {
    /// Log key (unique per test).
    pub key: String,
    /// Fail this many attempts first.
    #[serde(default)]
    pub fail_times: u32,
    /// Panic on this many attempts first.
    #[serde(default)]
    pub panic_times: u32,
    /// Failures are skip-retry.
    #[serde(default)]
    pub skip_retry: bool,
    /// Failures ask for this retry delay.
    #[serde(default)]
    pub retry_after_ms: Option<u64>,
    /// Sleep this long on every attempt.
    #[serde(default)]
    pub sleep_ms: u64,
    /// Sleep this long on the first attempt only.
    #[serde(default)]
    pub sleep_first_ms: u64,
    /// On the first attempt, wait for the worker's shutdown and return `interrupted`.
    #[serde(default)]
    pub interrupt_on_shutdown: bool,
}

impl Probe {
    pub fn new(key: impl Into<String>) -> Self {
        Probe { key: key.into(), ..Default::default() }
    }
}

/// What happened to one key's attempts.
#[derive(Debug, Clone, Default)]
pub struct Log {
    pub starts: Vec<Instant>,
    pub retried_seen: Vec<u32>,
    pub finished: usize,
    pub running: usize,
    pub max_running: usize,
}

fn logs() -> &'static Mutex<HashMap<String, Log>> {
    static LOGS: OnceLock<Mutex<HashMap<String, Log>>> = OnceLock::new();
    LOGS.get_or_init(Default::default)
}

/// A copy of `key`'s log.
pub fn log(key: &str) -> Log {
    logs().lock().unwrap().get(key).cloned().unwrap_or_default()
}

struct Running<'a>(&'a str);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut l = logs().lock().unwrap();
        let e = l.entry(self.0.to_owned()).or_default();
        e.running -= 1;
        e.finished += 1;
    }
}

/// Records an attempt, sleeps and fails as told, and returns the attempt number.
#[conveyor::task(name = "conformance:probe")]
pub async fn probe(p: Probe, ctx: TaskContext) -> Result<u32, TaskError> {
    let attempt = {
        let mut l = logs().lock().unwrap();
        let e = l.entry(p.key.clone()).or_default();
        e.starts.push(Instant::now());
        e.retried_seen.push(ctx.retried());
        e.running += 1;
        e.max_running = e.max_running.max(e.running);
        e.starts.len() as u32
    };
    let _running = Running(&p.key);
    if attempt == 1 && p.interrupt_on_shutdown {
        ctx.shutdown().wait().await;
        return Err(TaskError::interrupted());
    }
    if attempt == 1 && p.sleep_first_ms > 0 {
        tokio::time::sleep(Duration::from_millis(p.sleep_first_ms)).await;
    }
    if p.sleep_ms > 0 {
        tokio::time::sleep(Duration::from_millis(p.sleep_ms)).await;
    }
    if attempt <= p.panic_times {
        panic!("probe panic on attempt {attempt}");
    }
    if attempt <= p.fail_times {
        let msg = format!("probe failure on attempt {attempt}");
        return Err(if p.skip_retry {
            TaskError::skip_retry(msg)
        } else if let Some(ms) = p.retry_after_ms {
            TaskError::retry_after(Duration::from_millis(ms), msg)
        } else {
            TaskError::msg(msg)
        });
    }
    Ok(attempt)
}
