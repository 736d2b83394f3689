//! How fast the dashboard's pages answer on a big Redis: 100 queues, one of them with a
//! backlog of 1,000,000 pending tasks (see `examples/common/big_redis.rs`). Each page is asked
//! of the router in process (no network), 5 times; prints the median and range. Then it leaves
//! the dashboard idle for 10 s and counts the Redis commands processed meanwhile: none come
//! from a dashboard no browser looks at.
//!
//! ```text
//! cargo run --release -p conveyor-dashboard --example dashboard_bench -- --redis redis://127.0.0.1:6390 [--backlog 1000000]
//! ```

#[path = "../../examples/common/big_redis.rs"]
mod big_redis;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use conveyor::inspect::{Inspector, Page};
use conveyor::TaskState;
use conveyor_dashboard::Dashboard;
use tower::ServiceExt;

fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args().skip_while(|a| a != name);
    args.next().and(args.next())
}

async fn commands(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO").arg("stats").query_async(conn).await.expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> conveyor::Result<()> {
    let base = arg("--redis").unwrap_or_else(|| "redis://127.0.0.1:6390".into());
    let backlog: usize = arg("--backlog").map_or(1_000_000, |b| b.parse().expect("--backlog is a number"));
    let (broker, backend) = big_redis::fill(&base, backlog).await?;
    let ins = Inspector::new(broker, backend);
    let some = ins.tasks("big", TaskState::Pending, Page::first(1)).await?.remove(0).id;
    let archived = ins.tasks("q01", TaskState::Archived, Page::first(1)).await?.remove(0).id;
    let router = Dashboard::new(ins).router();

    let pages = [
        ("overview (100 queues, charts)", "/".to_owned()),
        ("queue page, big (pending tab)", "/queues/big".into()),
        ("queue page, big, page 1000", "/queues/big?state=pending&page=1000".into()),
        ("queue page, q01 archived", "/queues/q01?state=archived".into()),
        ("failures by reason, q01", "/queues/q01/failures".into()),
        ("task page, a pending task of big", format!("/tasks/{some}")),
        ("task page, an archived task", format!("/tasks/{archived}")),
        ("workers", "/workers".into()),
    ];
    for (what, path) in &pages {
        let mut ms = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let res = router.clone().oneshot(Request::get(path.as_str()).body(Body::empty()).unwrap()).await.unwrap();
            assert!(res.status().is_success(), "{path}: {}", res.status());
            axum::body::to_bytes(res.into_body(), 1 << 26).await.unwrap();
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        ms.sort_by(f64::total_cmp);
        println!("{what:<36} {:>8.1} ms  [{:.1} – {:.1}]", ms[2], ms[0], ms[4]);
    }

    // Served on a port, with no browser: it must cost Redis nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    tokio::spawn(async move { axum::serve(listener, router).await });
    let client = redis::Client::open(base.as_str()).expect("URL");
    let mut conn = client.get_multiplexed_async_connection().await.expect("Redis");
    let before = commands(&mut conn).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = commands(&mut conn).await;
    // The two INFO calls count themselves (one each).
    println!("idle for 10 s, served, no browser: {} Redis commands (INFO itself: 1)", after - before);
    Ok(())
}
