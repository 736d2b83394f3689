//! The worker's part in operations: its entry in the worker registry, beaten every few
//! seconds, and the shared pause flags, applied every second (see `inspect::workers`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::shared::Shared;
use crate::error::Error;
use crate::inspect::workers::{WorkerInfo, BEAT, CANCEL_MAP, PAUSED_MAP, WORKERS_MAP};

/// The host name, as the kernel has it (or `HOSTNAME`).
pub(crate) fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Beats and follows the pause flags until `stop`, then removes the worker's entry.
pub(crate) async fn ops_loop(shared: Arc<Shared>, stop: CancellationToken) {
    let c = &shared.config;
    let mut info = WorkerInfo {
        id: crate::task::TaskId::random().to_string(),
        host: host(),
        pid: std::process::id(),
        queues: c.queues.clone(),
        concurrency: c.concurrency,
        running: Vec::new(),
        started_at: SystemTime::now(),
        last_beat: SystemTime::now(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let mut paused_by_flag: HashSet<String> = HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let beat_every = BEAT.as_secs().max(1);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => break,
        }
        match shared.backend.map_all(PAUSED_MAP).await {
            Ok(flags) => follow_flags(&shared, &flags, &mut paused_by_flag).await,
            Err(Error::Unsupported { .. }) => {
                tracing::info!("the result backend keeps no operations state: no worker registry or shared pause");
                return;
            }
            Err(e) => tracing::debug!(error = %e, "could not read the pause flags"),
        }
        match shared.backend.map_all(CANCEL_MAP).await {
            Ok(asked) if !asked.is_empty() => {
                let ids: Vec<crate::task::TaskId> = asked.into_iter().map(|(id, _)| id.into()).collect();
                for id in shared.inflight.cancel(&ids) {
                    tracing::warn!(task.id = %id, "task cancelled by an operator");
                    let _ = shared.backend.map_remove(CANCEL_MAP, id.as_str()).await;
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "could not read the cancels"),
        }
        if n.is_multiple_of(beat_every) {
            flush_history(&shared).await;
        }
        if n.is_multiple_of(3600) {
            for (q, _) in &shared.config.queues {
                let _ = crate::inspect::history::trim(shared.backend.as_ref(), q).await;
            }
        }
        if n.is_multiple_of(beat_every) {
            info.running = shared.inflight.running();
            info.last_beat = SystemTime::now();
            match serde_json::to_string(&info) {
                Ok(json) => {
                    if let Err(e) = shared.backend.map_set(WORKERS_MAP, &info.id, &json).await {
                        tracing::debug!(error = %e, "could not write the worker's registry entry");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "could not encode the worker's registry entry"),
            }
        }
        n += 1;
    }
    flush_history(&shared).await;
    let _ = shared.backend.map_remove(WORKERS_MAP, &info.id).await;
}

/// Adds the attempts counted since the last flush to the queues' history.
async fn flush_history(shared: &Shared) {
    use crate::inspect::history::{add, ALL_QUEUES};
    use std::sync::atomic::Ordering::Relaxed;
    let (mut all_p, mut all_f) = (0, 0);
    for ((q, _), (processed, failed)) in shared.config.queues.iter().zip(&shared.counts) {
        let (p, f) = (processed.swap(0, Relaxed), failed.swap(0, Relaxed));
        if p == 0 {
            continue;
        }
        if let Err(e) = add(shared.backend.as_ref(), q, p, f).await {
            // Counted again with the next flush.
            processed.fetch_add(p, Relaxed);
            failed.fetch_add(f, Relaxed);
            tracing::debug!(queue = %q, error = %e, "could not add to the queue's history");
        } else {
            (all_p, all_f) = (all_p + p, all_f + f);
        }
    }
    // The application's total, for dashboards: one more map, not one read per queue.
    if all_p > 0 {
        if let Err(e) = add(shared.backend.as_ref(), ALL_QUEUES, all_p, all_f).await {
            tracing::debug!(error = %e, "could not add to the application's history");
        }
    }
}

/// Pauses the worker's queues an operator paused, and resumes those no longer paused.
async fn follow_flags(shared: &Shared, flags: &[(String, String)], paused_by_flag: &mut HashSet<String>) {
    let Some(admin) = shared.broker.admin() else { return };
    for (q, _) in &shared.config.queues {
        let flagged = flags.iter().any(|(f, _)| f == q);
        if flagged && !paused_by_flag.contains(q) {
            match admin.pause(q).await {
                Ok(()) => {
                    tracing::info!(queue = %q, "queue paused by an operator");
                    paused_by_flag.insert(q.clone());
                }
                Err(e) => tracing::warn!(queue = %q, error = %e, "could not pause the queue"),
            }
        } else if !flagged && paused_by_flag.contains(q) {
            match admin.resume(q).await {
                Ok(()) => {
                    tracing::info!(queue = %q, "queue resumed by an operator");
                    paused_by_flag.remove(q);
                }
                Err(e) => tracing::warn!(queue = %q, error = %e, "could not resume the queue"),
            }
        }
    }
}
