//! Workflows: a chain, a group and a chord, on the in-memory broker (or CONVEYOR_BROKER).
//!
//! ```sh
//! cargo run --example workflows
//! ```

use std::time::Duration;

use conveyor::{chain, chord, group, Client, TaskContext, TaskError, TaskExt, Worker};

/// Pretends to download a page and returns its size.
#[conveyor::task(name = "crawl:fetch")]
async fn fetch(page: u32) -> Result<u64, TaskError> {
    tokio::time::sleep(Duration::from_millis(20 * u64::from(page))).await;
    Ok(1000 + u64::from(page))
}

/// Adds up sizes (a chord body: it receives every member's result, in order).
#[conveyor::task(name = "crawl:total")]
async fn total(sizes: Vec<u64>) -> Result<u64, TaskError> {
    println!("chord callback received {sizes:?}");
    Ok(sizes.iter().sum())
}

/// Formats a report line from the previous step's result.
#[conveyor::task(name = "crawl:report")]
async fn report(bytes: u64) -> Result<String, TaskError> {
    Ok(format!("crawled {bytes} bytes"))
}

/// An error callback: receives what failed and why.
#[conveyor::task(name = "crawl:alert")]
async fn alert(who: String, ctx: TaskContext) -> Result<(), TaskError> {
    if let Some(Ok(failure)) = ctx.previous_result::<conveyor::Failure>() {
        println!("alerting {who}: {} failed: {}", failure.task_name, failure.error);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let broker = conveyor::broker_from_env_or("memory://").await?;
    let backend = conveyor::backend_from_env_or("memory://").await?;
    let client = Client::new(broker.clone(), backend.clone());
    let worker = Worker::builder(broker, backend)
        .register(fetch)
        .register(total)
        .register(report)
        .register(alert)
        .concurrency(8)
        .build()?;
    let stop = conveyor::CancellationToken::new();
    let running = tokio::spawn(worker.run_until(stop.clone()));
    let timeout = Duration::from_secs(10);

    // A chain: each step gets the previous result as its arguments (`piped`).
    let flow = chain([fetch.with(3), report.piped()]);
    println!("chain: {}", client.enqueue_workflow(flow).await?.get::<String>(timeout).await?);

    // A group: members run in parallel, results come back in order.
    let pages = client.enqueue_workflow(group((1..=4).map(|p| fetch.with(p)))).await?;
    println!("group: {:?}", pages.get::<Vec<u64>>(timeout).await?);

    // A chord inside a chain, with an error callback for the whole workflow.
    let flow = chain([chord((1..=5).map(|p| fetch.with(p)), total.piped()), report.piped().into()])
        .on_error(alert.with("ops@example.com".into()));
    println!("chord: {}", client.enqueue_workflow(flow).await?.get::<String>(timeout).await?);

    stop.cancel();
    running.await??;
    Ok(())
}
