//! A broker of one's own, kept in a directory (`file_broker/broker.rs`): written by following
//! docs/writing-a-broker.md alone, it passes the whole conformance suite
//! (`tests/conformance/file_broker.rs`). Here it runs the quickstart's loop.
//!
//! `cargo run --example file_broker [DIR]` (default: a new temporary directory).

#[path = "file_broker/broker.rs"]
mod broker;

use std::sync::Arc;
use std::time::Duration;

use conveyor::{CancellationToken, Client, TaskError, Worker};

#[conveyor::task(name = "file:add")]
async fn add(args: (i64, i64)) -> Result<i64, TaskError> {
    Ok(args.0 + args.1)
}

#[tokio::main]
async fn main() -> conveyor::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("conveyor-file-broker-{}", std::process::id())));
    let broker = Arc::new(broker::FileBroker::open(&dir)?);
    let backend = Arc::new(conveyor::memory::MemoryBackend::new());
    let client = Client::new(broker.clone(), backend.clone());
    let soon = client.enqueue(add, (2, 3)).await?;
    let later = client.task(add, (4, 5)).process_in(Duration::from_millis(300)).await?;

    let stop = CancellationToken::new();
    let worker = Worker::builder(broker, backend).register(add).build()?;
    let running = tokio::spawn(worker.run_until(stop.clone()));
    println!("2 + 3 = {}", soon.get(Duration::from_secs(5)).await?);
    println!("4 + 5 = {} (300 ms later)", later.get(Duration::from_secs(5)).await?);
    println!("the queues live in {}", dir.display());
    stop.cancel();
    running.await.expect("worker task")?;
    Ok(())
}
