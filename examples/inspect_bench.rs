//! How fast the inspector answers on a big Redis: 100 queues, one of them with a backlog of
//! 1,000,000 pending tasks, the others 100 each. Prints, as medians of 5 runs (with the
//! range): `stats` for every queue, the first page of 100 pending tasks of the big queue, a
//! page deep in it, and a page of 100 archived tasks.
//!
//! ```text
//! cargo run --release --all-features --example inspect_bench -- --redis redis://127.0.0.1:6390 [--backlog 1000000]
//! ```
//!
//! It fills a namespace of its own (`prefix=inspectbench<time>`) and deletes nothing: run it on a
//! test server (`scripts/redis start`), which `scripts/redis stop` empties.

use std::time::Instant;

use conveyor::inspect::{Inspector, Page};
use conveyor::{TaskMessage, TaskState};

fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args().skip_while(|a| a != name);
    args.next().and(args.next())
}

/// Runs `f` 5 times; the median and range, in milliseconds.
async fn timed<F, Fut, T>(mut f: F) -> (f64, f64, f64)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = conveyor::Result<T>>,
{
    let mut ms = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        f().await.expect("the inspector answers");
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    (ms[2], ms[0], ms[4])
}

#[tokio::main]
async fn main() -> conveyor::Result<()> {
    let base = arg("--redis").unwrap_or_else(|| "redis://127.0.0.1:6390".into());
    let backlog: usize = arg("--backlog").map_or(1_000_000, |b| b.parse().expect("--backlog is a number"));
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    let url = format!("{}/?prefix=inspectbench{stamp}", base.trim_end_matches('/'));
    let broker = conveyor::broker(&url).await?;
    let backend = conveyor::backend(&url).await?;

    let fill = Instant::now();
    let task = |q: &str| {
        let mut m = TaskMessage::with_args("bench:noop", &0u8).expect("encodes");
        m.queue = q.to_owned();
        m
    };
    // The backlog straight through the broker (no records): the inspector reads the broker.
    let big = "big";
    let mut left = backlog;
    while left > 0 {
        let batch: Vec<TaskMessage> = (0..left.min(5000)).map(|_| task(big)).collect();
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
    let ins = Inspector::new(broker.clone(), backend);
    // 100 archived tasks in one queue, archived by hand.
    let q = "q01";
    ins.archive_all(q, TaskState::Pending).await?;
    println!("filled 100 queues ({backlog} + 99 × 100 pending) in {:.1} s", fill.elapsed().as_secs_f64());

    let report = |what: &str, (med, lo, hi): (f64, f64, f64)| println!("{what:<44} {med:>8.1} ms  [{lo:.1} – {hi:.1}]");
    report("stats, every queue (100)", timed(|| ins.stats()).await);
    report("stats, the big queue", timed(|| ins.queue(big)).await);
    report(
        "first page of 100 pending, big queue",
        timed(|| ins.tasks(big, TaskState::Pending, Page::first(100))).await,
    );
    let deep = Page::new(backlog / 2, 100);
    report("page of 100 pending at half the backlog", timed(|| ins.tasks(big, TaskState::Pending, deep)).await);
    report("first page of 100 archived", timed(|| ins.tasks(q, TaskState::Archived, Page::first(100))).await);
    Ok(())
}
