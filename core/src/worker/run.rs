//! The worker's main loop: receive under the concurrency bound, heartbeat, shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::shared::{Ctx, Shared};
use crate::broker::ReceiveRequest;
use crate::error::Result;
use crate::handler::Shutdown;

/// Runs the worker until `stop`; `hard` (or the shutdown timeout) interrupts running handlers.
pub(crate) async fn run(shared: Arc<Shared>, stop: CancellationToken, hard: CancellationToken) -> Result<()> {
    let c = &shared.config;
    tracing::info!(broker = %shared.broker.describe(), backend = %shared.backend.describe(),
        concurrency = c.concurrency, queues = ?c.queues, "worker started");
    // Deliveries this worker owns (running or prefetched), and handlers running.
    let slots = Arc::new(Semaphore::new(c.concurrency + c.prefetch));
    let running = Arc::new(Semaphore::new(c.concurrency));
    // Runs until every handler has settled its task (aborted at the very end).
    let heartbeat = tokio::spawn(heartbeat(shared.clone()));
    // The registry entry and the shared pause flags (see `inspect::workers`).
    let ops_stop = CancellationToken::new();
    let ops = tokio::spawn(super::ops::ops_loop(shared.clone(), ops_stop.clone()));
    let ctx = Arc::new(Ctx {
        shared: shared.clone(),
        shutdown: Shutdown::new(stop.clone()),
        stop,
        hard,
        settling: Semaphore::new(c.concurrency),
    });
    fetch_loop(&ctx, &slots, &running).await;

    // Graceful shutdown: wait for running handlers, then interrupt the rest.
    let all = (c.concurrency + c.prefetch) as u32;
    let drained = tokio::select! {
        r = tokio::time::timeout(c.shutdown_timeout, slots.acquire_many(all)) => r.is_ok(),
        _ = ctx.hard.cancelled() => false,
    };
    if !drained {
        tracing::warn!("shutdown timeout: handing unfinished tasks back to the broker");
        ctx.hard.cancel();
        // Handlers stop at their next await and release their task; give that a moment.
        if tokio::time::timeout(Duration::from_secs(10), slots.acquire_many(all)).await.is_err() {
            tracing::error!("some handlers did not stop; their tasks return when their lease expires");
        }
    }
    // And for the outcomes still being recorded and settled (acks on their way).
    let settling = ctx.settling.acquire_many(c.concurrency as u32);
    if tokio::time::timeout(Duration::from_secs(10), settling).await.is_err() {
        tracing::error!("some outcomes were not settled; those tasks return when their lease expires");
    }
    heartbeat.abort();
    ops_stop.cancel();
    if tokio::time::timeout(Duration::from_secs(2), ops).await.is_err() {
        tracing::debug!("the worker's registry entry was not removed; it lapses");
    }
    tracing::info!("worker stopped");
    Ok(())
}

/// The longest pause between failed receives: a worker resumes within half a second of its
/// broker answering again (a restart, a failover), at the cost of two failed calls a second
/// while it is down.
const MAX_RECEIVE_BACKOFF: Duration = Duration::from_millis(500);

async fn fetch_loop(ctx: &Arc<Ctx>, slots: &Arc<Semaphore>, running: &Arc<Semaphore>) {
    let shared = &ctx.shared;
    let c = &shared.config;
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut permits = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = ctx.stop.cancelled() => return,
        };
        let extra = slots.available_permits().min(c.batch - 1) as u32;
        if extra > 0 {
            if let Ok(p) = slots.clone().try_acquire_many_owned(extra) {
                permits.merge(p);
            }
        }
        let order = shared.selector.order();
        let asked = permits.num_permits();
        let req = ReceiveRequest {
            queues: &order,
            max: asked,
            wait: c.receive_wait,
            lease: c.lease,
            max_payload: c.max_payload,
            stop: &ctx.stop,
        };
        // Not raced against `stop`: the broker returns promptly when it fires, and what it
        // claimed is handed back below rather than lost with a dropped future.
        match shared.broker.receive(&req).await {
            Ok(deliveries) if ctx.stop.is_cancelled() => {
                // All at once: each is a round trip, and the shutdown waits for them.
                let releases = deliveries.iter().map(|d| shared.broker.release(d));
                for r in futures_util::future::join_all(releases).await {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "could not hand back a task received during shutdown");
                    }
                }
                return;
            }
            Ok(deliveries) => {
                backoff = Duration::from_millis(50);
                for d in deliveries {
                    let Some(permit) = permits.split(1) else {
                        // A broker returned more than asked: hand the extra back untouched.
                        let _ = shared.broker.release(&d).await;
                        continue;
                    };
                    // Boxed: tokio allocates a task's future with its own header, 128-byte
                    // aligned; at this future's size that lands in glibc's slow path for large
                    // blocks (it consolidates the free lists) on every spawn. A box of it and a
                    // small task both stay in the fast paths.
                    tokio::spawn(Box::pin(super::exec::run_delivery(ctx.clone(), running.clone(), d, permit)));
                }
                // Let the handlers just spawned start first (on this thread, without waking
                // another): under a backlog the next receive then takes a larger batch, and
                // when idle the handler starts without waiting behind the next receive.
                tokio::task::yield_now().await;
            }
            Err(e) => {
                tracing::error!(error = %e, retry_in = ?backoff, "receive failed");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = ctx.stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(MAX_RECEIVE_BACKOFF);
            }
        }
    }
}

async fn heartbeat(shared: Arc<Shared>) {
    let lease = shared.config.lease;
    let mut tick = tokio::time::interval(lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let (receipts, watches) = shared.inflight.snapshot();
        if receipts.is_empty() {
            continue;
        }
        let sent = tokio::time::Instant::now();
        match shared.broker.extend_leases(&receipts, lease).await {
            Ok(lost) => {
                for &i in &lost {
                    if let Some(w) = watches.get(i) {
                        // The handler is dropped where it stands, and nothing is recorded for it.
                        w.lost.cancel();
                    }
                }
                if !lost.is_empty() {
                    tracing::warn!(
                        tasks = lost.len(),
                        "lease lost (this worker did not reach the broker for a whole \
                        lease): stopping those tasks, which the broker has handed to another worker"
                    );
                }
                for w in &watches {
                    if !w.lost.is_cancelled() {
                        shared.inflight.confirm(w, sent);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, tasks = receipts.len(), "lease extension failed"),
        }
    }
}

/// Resolves on SIGINT or SIGTERM (Ctrl-C where there are no Unix signals): the signals a
/// worker shuts down on, for programs that stop other things with it (an HTTP server's
/// graceful shutdown, say).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                tracing::error!("cannot install signal handlers; waiting for cancellation only");
                std::future::pending::<()>().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
