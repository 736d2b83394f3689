//! The big Redis of the operations benchmarks (`inspect_bench`, the dashboard's
//! `dashboard_bench`): 100 queues in a namespace of their own, `big` with a backlog of
//! `backlog` pending tasks, `q01` … `q99` with 100 each, `q01`'s archived by hand.

use std::sync::Arc;
use std::time::Instant;

use conveyor::inspect::Inspector;
use conveyor::{Broker, ResultBackend, TaskMessage, TaskState};

/// Fills a new namespace on the Redis at `base`; its broker and backend.
pub async fn fill(base: &str, backlog: usize) -> conveyor::Result<(Arc<dyn Broker>, Arc<dyn ResultBackend>)> {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    let url = format!("{}/?prefix=opsbench{stamp}", base.trim_end_matches('/'));
    let broker = conveyor::broker(&url).await?;
    let backend = conveyor::backend(&url).await?;
    let fill = Instant::now();
    let task = |q: &str| {
        let mut m = TaskMessage::with_args("bench:noop", &0u8).expect("encodes");
        m.queue = q.to_owned();
        m
    };
    // The backlog straight through the broker (no records): the inspector reads the broker.
    let mut left = backlog;
    while left > 0 {
        let batch: Vec<TaskMessage> = (0..left.min(5000)).map(|_| task("big")).collect();
        for r in broker.publish_many(&batch).await {
            r?;
        }
        left -= batch.len();
    }
    for i in 1..100 {
        let q = format!("q{i:02}");
        let batch: Vec<TaskMessage> = (0..100).map(|_| task(&q)).collect();
        for r in broker.publish_many(&batch).await {
            r?;
        }
    }
    Inspector::new(broker.clone(), backend.clone()).archive_all("q01", TaskState::Pending).await?;
    println!("filled 100 queues ({backlog} + 99 × 100 pending) in {:.1} s", fill.elapsed().as_secs_f64());
    Ok((broker, backend))
}
