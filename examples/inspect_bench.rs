//! How fast the inspector answers on a big Redis: 100 queues, one of them with a backlog of
//! 1,000,000 pending tasks, the others 100 each. Prints, as medians of 5 runs (with the
//! range): `stats` for every queue, the first page of 100 pending tasks of the big queue, a
//! page deep in it, and a page of 100 archived tasks.
//!
//! ```text
//! cargo run --release --all-features --example inspect_bench -- --redis redis://127.0.0.1:6390 [--backlog 1000000]
//! ```
//!
//! It fills a namespace of its own (`prefix=opsbench<time>`) and deletes nothing: run it on a
//! test server (`scripts/redis start`), which `scripts/redis stop` empties.

#[path = "common/big_redis.rs"]
mod big_redis;

use std::time::Instant;

use conveyor::inspect::{Inspector, Page};
use conveyor::TaskState;

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
    let (broker, backend) = big_redis::fill(&base, backlog).await?;
    let ins = Inspector::new(broker, backend);
    let (big, q) = ("big", "q01");

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
