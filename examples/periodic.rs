//! Periodic tasks: a scheduler inside a worker enqueues tasks on cron schedules.
//!
//! ```sh
//! cargo run --example periodic                   # in-memory broker, runs for 5 seconds
//! cargo run --example periodic -- --for 60       # longer
//! CONVEYOR_BROKER=redis://127.0.0.1:6390 CONVEYOR_BACKEND=redis://127.0.0.1:6390 \
//!     cargo run --features redis --example periodic -- --for 0   # until Ctrl-C; start several:
//!                                                               # each tick still runs once
//! ```

use std::time::Duration;

use conveyor::scheduler::{history, MissedTicks, PeriodicEntry, Scheduler};
use conveyor::{TaskContext, TaskError, TaskExt, Worker};

/// Sends a heartbeat (here: logs one).
#[conveyor::task(name = "ops:heartbeat")]
async fn heartbeat(service: String, ctx: TaskContext) -> Result<(), TaskError> {
    tracing::info!(task_id = %ctx.id(), "heartbeat from {service}");
    Ok(())
}

/// Removes expired sessions (here: pretends to).
#[conveyor::task(name = "db:cleanup", queue = "low")]
async fn cleanup(table: String) -> Result<u64, TaskError> {
    tracing::info!("cleaning up {table}");
    Ok(0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_target(false).init();
    let seconds: u64 = std::env::args().skip_while(|a| a != "--for").nth(1).map_or(Ok(5), |s| s.parse())?;

    let broker = conveyor::broker_from_env_or("memory://").await?;
    let backend = conveyor::backend_from_env_or("memory://").await?;

    let scheduler = Scheduler::builder(broker.clone(), backend.clone())
        // 6 fields, seconds first: every 2 seconds.
        .entry(PeriodicEntry::new("heartbeat", "*/2 * * * * *", heartbeat.with("api".into()))?)
        // 5 fields, as in crontab: at minute 0 of every hour, Paris time (a fixed offset unless
        // built with the `tz` feature); after downtime, run the missed tick once.
        .entry(
            PeriodicEntry::new("hourly-cleanup", "0 * * * *", cleanup.with("sessions".into()))?
                .time_zone(if cfg!(feature = "tz") { "Europe/Paris" } else { "+01:00" })?
                .missed_ticks(MissedTicks::RunOnce),
        )
        .build()?;
    println!("scheduler {} started", scheduler.instance());

    // A bad expression is refused when the entry is made, naming it.
    if let Err(e) = PeriodicEntry::new("broken", "*/61 * * * *", cleanup.with("x".into())) {
        println!("refused: {e}");
    }

    let worker = Worker::builder(broker, backend.clone())
        .register(heartbeat)
        .register(cleanup)
        .queue("default", 3)
        .queue("low", 1)
        .scheduler(scheduler)
        .build()?;
    let stop = conveyor::CancellationToken::new();
    let running = tokio::spawn(worker.run_until(stop.clone()));
    if seconds == 0 {
        tokio::signal::ctrl_c().await?;
    } else {
        tokio::time::sleep(Duration::from_secs(seconds)).await;
    }
    stop.cancel();
    running.await??;

    for fire in history(backend.as_ref(), "heartbeat", 10).await? {
        let late = fire.enqueued_at.duration_since(fire.fire_time).unwrap_or_default();
        println!("heartbeat fired: task {} enqueued {late:?} after its tick", fire.task_id);
    }
    Ok(())
}
