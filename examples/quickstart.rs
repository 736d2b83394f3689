//! Quickstart: two tasks, a few enqueued with options, one worker, results printed.
//!
//! ```sh
//! cargo run --example quickstart                 # in-memory broker, nothing to install
//! CONVEYOR_BROKER=memory:// cargo run --example quickstart
//! ```

use std::time::Duration;

use conveyor::{Client, TaskContext, TaskError, Worker};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Welcome {
    user_id: u64,
    email: String,
}

/// Sends a welcome email (here: pretends to). Fails on its first attempt for user 2, to show a
/// retry.
#[conveyor::task(name = "email:welcome", queue = "emails", max_retry = 3, timeout = "30s")]
async fn send_welcome(args: Welcome, ctx: TaskContext) -> Result<String, TaskError> {
    if args.user_id == 2 && ctx.retried() == 0 {
        return Err(TaskError::msg("SMTP server busy"));
    }
    Ok(format!("welcome email sent to {} (attempt {})", args.email, ctx.retried() + 1))
}

#[derive(Serialize, Deserialize)]
struct Report {
    rows: u64,
}

/// Builds a report (here: sums some numbers).
#[conveyor::task(name = "report:build")]
async fn build_report(args: Report) -> Result<u64, TaskError> {
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok((1..=args.rows).sum())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_target(false).init();

    // The broker and backend come from CONVEYOR_BROKER / CONVEYOR_BACKEND (unset: in this process).
    let broker = conveyor::broker_from_env_or("memory://").await?;
    let backend = conveyor::backend_from_env_or("memory://").await?;
    let client = Client::new(broker.clone(), backend.clone());

    // Enqueue: with the task's defaults, with options, delayed.
    let first = client.enqueue(send_welcome, Welcome { user_id: 1, email: "ada@example.com".into() }).await?;
    let flaky = client.enqueue(send_welcome, Welcome { user_id: 2, email: "alan@example.com".into() }).await?;
    let report = client.task(build_report, Report { rows: 1000 }).retention(Duration::from_secs(3600)).await?;
    let delayed = client
        .task(send_welcome, Welcome { user_id: 3, email: "grace@example.com".into() })
        .process_in(Duration::from_secs(2))
        .await?;
    println!("enqueued 4 tasks; the last one is {} until its delay is over", delayed.enqueued_state());

    // A worker for both tasks, in the background.
    let worker = Worker::builder(broker, backend)
        .register(send_welcome)
        .register(build_report)
        .layer(conveyor::middleware::Logging)
        .concurrency(4)
        .retry_policy(|_: u32, _: &TaskError, _: &conveyor::TaskMessage| Duration::from_millis(500))
        .build()?;
    let stop = conveyor::CancellationToken::new();
    let running = tokio::spawn(worker.run_until(stop.clone()));

    let timeout = Duration::from_secs(30);
    println!("{}", first.get(timeout).await?);
    println!("{}", flaky.get(timeout).await?);
    println!("report total: {}", report.get(timeout).await?);
    println!("{}", delayed.get(timeout).await?);

    stop.cancel();
    running.await??;
    Ok(())
}
