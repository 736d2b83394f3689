//! The same workload on every broker: a table of enqueue and processing rates and pickup latency.
//!
//! ```sh
//! scripts/redis start; scripts/rabbitmq start; scripts/moto start     # the local servers
//! AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
//!     cargo run --release --features redis,amqp,sqs --example compare_brokers
//! ```
//!
//! Each broker compiled in is tried at its URL (the `scripts/` servers by default; override with
//! `--memory`, `--redis`, `--amqp`, `--sqs URL`, or leave one out with `--skip NAME`). A broker
//! that is not compiled in or not reachable gets a row saying so. All use the in-memory result
//! backend (`--backend URL` to change it), so the table compares brokers, not backends.
//!
//! `--tasks N` (default 10000) no-op tasks are enqueued one by one then processed with
//! `--concurrency C` (default 64); SQS gets `--sqs-tasks N` (default 300), since the emulator
//! answers a few dozen requests per second. Pickup latency: `--latency-tasks M` (default 200)
//! tasks at `--rate R` per second (default 100). `--json` prints one JSON line per broker too;
//! `--strict` exits with status 1 if any broker gave no figures (`scripts/test` uses it).

#[path = "common/workload.rs"]
mod workload;

use std::time::Duration;

use workload::{Report, Workload};

/// Each broker: its name, default URL, and the delivery guarantee it gives.
const BROKERS: [(&str, &str, &str); 4] = [
    ("memory", "memory://", "at-least-once while the process lives"),
    ("redis", "redis://127.0.0.1:6390", "at-least-once: leases, AOF"),
    ("amqp", "amqp://guest:guest@127.0.0.1:5690/%2f", "at-least-once: confirms, late acks, quorum queues"),
    ("sqs", "sqs://?region=us-east-1&endpoint=http://127.0.0.1:4590", "at-least-once: visibility timeout"),
];

struct Settings {
    urls: Vec<(String, String)>,
    skip: Vec<String>,
    backend: String,
    tasks: u64,
    sqs_tasks: u64,
    concurrency: usize,
    latency_tasks: u64,
    rate: f64,
    json: bool,
    strict: bool,
}

fn settings() -> Result<Settings, String> {
    let mut s = Settings {
        urls: Vec::new(),
        skip: Vec::new(),
        backend: "memory://".into(),
        tasks: 10_000,
        sqs_tasks: 300,
        concurrency: 64,
        latency_tasks: 200,
        rate: 100.0,
        json: false,
        strict: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{flag} `{v}`: {e}"));
        match flag.as_str() {
            "--memory" | "--redis" | "--amqp" | "--sqs" => s.urls.push((flag[2..].to_owned(), val()?)),
            "--skip" => s.skip.push(val()?),
            "--backend" => s.backend = val()?,
            "--tasks" => s.tasks = num(val()?)?,
            "--sqs-tasks" => s.sqs_tasks = num(val()?)?,
            "--concurrency" => s.concurrency = num(val()?)? as usize,
            "--latency-tasks" => s.latency_tasks = num(val()?)?,
            "--rate" => s.rate = val()?.parse().map_err(|e| format!("--rate: {e}"))?,
            "--json" => s.json = true,
            "--strict" => s.strict = true,
            other => return Err(format!("unknown flag {other} (see the example's docs)")),
        }
    }
    Ok(s)
}

/// Connects to `url` and runs the workload; any failure becomes the row's text.
async fn measure(url: &str, backend: &str, w: &Workload) -> Result<Report, String> {
    let connect = async {
        let b = conveyor::broker(url).await?;
        let r = conveyor::backend(backend).await?;
        conveyor::Result::Ok((b, r))
    };
    let (broker, backend) = match tokio::time::timeout(Duration::from_secs(15), connect).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e @ conveyor::Error::FeatureNotEnabled { .. })) => return Err(format!("not compiled in: {e}")),
        Ok(Err(e)) => return Err(format!("unreachable: {e}")),
        Err(_) => return Err("unreachable: no answer in 15 s".into()),
    };
    workload::run(broker, backend, w).await.map_err(|e| match e.downcast_ref::<conveyor::Error>() {
        // Brokers that connect lazily (SQS) show an unreachable server at the first call.
        Some(ce) if ce.is_transient() => format!("unreachable: {e}"),
        _ => format!("failed: {e}"),
    })
}

/// The first `n` characters of `s` (driver errors can be long).
fn clip(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[tokio::main]
async fn main() {
    let s = match settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    println!(
        "{} no-op tasks per broker ({} on SQS), concurrency {}, pickup latency over {} tasks at {}/s, backend {}",
        s.tasks, s.sqs_tasks, s.concurrency, s.latency_tasks, s.rate, s.backend
    );
    println!();
    println!("| broker | enqueue/s | process/s | pickup p50 | pickup p99 | delivery |");
    println!("|---|---:|---:|---:|---:|---|");
    let mut json = Vec::new();
    let mut missing = 0;
    for (name, default_url, guarantee) in BROKERS {
        if s.skip.iter().any(|k| k == name) {
            continue;
        }
        let url = s.urls.iter().find(|(n, _)| n == name).map_or(default_url, |(_, u)| u.as_str());
        let w = Workload {
            tasks: if name == "sqs" { s.sqs_tasks } else { s.tasks },
            concurrency: s.concurrency,
            bulk: false,
            latency_tasks: s.latency_tasks,
            rate: s.rate,
            retention: None,
            prefetch: None,
        };
        match measure(url, &s.backend, &w).await {
            Ok(r) => {
                println!(
                    "| {name} | {:.0} | {:.0} | {:.2} ms | {:.2} ms | {guarantee} |",
                    r.enqueue_per_s, r.process_per_s, r.p50_ms, r.p99_ms
                );
                json.push(format!(
                    "{{\"broker\":\"{name}\",\"tasks\":{},\"concurrency\":{},\"enqueue_per_s\":{:.0},\"process_per_s\":{:.0},\"p50_ms\":{:.3},\"p99_ms\":{:.3}}}",
                    w.tasks, w.concurrency, r.enqueue_per_s, r.process_per_s, r.p50_ms, r.p99_ms
                ));
            }
            Err(why) => {
                missing += 1;
                println!("| {name} | – | – | – | – | {} |", clip(&why, 160).replace('|', "/"));
                json.push(format!("{{\"broker\":\"{name}\",\"error\":{}}}", serde_json::json!(why)));
            }
        }
    }
    if s.json {
        println!();
        for line in json {
            println!("{line}");
        }
    }
    if s.strict && missing > 0 {
        eprintln!("--strict: {missing} broker(s) gave no figures");
        std::process::exit(1);
    }
}
