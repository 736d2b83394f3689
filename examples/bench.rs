//! Throughput and latency benchmark for one broker.
//!
//! ```sh
//! cargo run --release --example bench -- --broker memory:// --tasks 1000000 --concurrency 64
//! ```
//!
//! 1. enqueues `--tasks` no-op tasks one by one (`--bulk`: in batches of 1000), timed;
//! 2. starts a worker with `--concurrency` and times until all ran;
//! 3. sends `--latency-tasks` tasks (default 300) at about `--rate` per second (default 100)
//!    and measures pickup latency, enqueue to handler start.
//!
//! Prints one JSON line:
//! `{"broker":…,"tasks":…,"concurrency":…,"enqueue_per_s":…,"process_per_s":…,"p50_ms":…,"p99_ms":…,"peak_rss_kb":…}`
//! (`peak_rss_kb`: the process's peak resident memory, client and worker, on Linux; `null`
//! elsewhere).
//! `--no-ops` runs the worker without its operations loop (registry beat, pause flags,
//! cancels, history), to measure what that costs.
//! `--retention SECS` sets how long results are kept (default: Conveyor's default, 24 h);
//! `--prefetch N` the worker's prefetch (default: a quarter of the concurrency).
//! `--baseline` first runs the same workload without Conveyor and prints it as broker
//! `amqp-raw` or `sqs-raw`: on raw lapin (publish with confirms one by one, consume with a
//! prefetch of the concurrency, ack each) or raw aws-sdk-sqs (send, receive and delete one
//! message at a time).

#[path = "common/no_ops.rs"]
mod no_ops;
#[path = "common/workload.rs"]
mod workload;

/// mimalloc, as we recommend for production workers: a worker allocates and frees many small
/// blocks per task, in bursts of a batch, on several threads, which glibc's malloc handles
/// slowly (20–30% of the worker's CPU with the Redis broker; mimalloc processes 15–30% more).
/// Without transparent huge pages (`no_thp`), its RSS stays near glibc's (7.5–8 MB against
/// 7 MB here, where huge pages made it 18 MB).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Duration;

use workload::Workload;

struct Args {
    broker: String,
    backend: String,
    tasks: u64,
    concurrency: usize,
    bulk: bool,
    latency_tasks: u64,
    rate: f64,
    retention: Option<Duration>,
    prefetch: Option<usize>,
    baseline: bool,
    no_ops: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        broker: std::env::var(conveyor::BROKER_ENV).unwrap_or_else(|_| "memory://".into()),
        backend: std::env::var(conveyor::BACKEND_ENV).unwrap_or_else(|_| "memory://".into()),
        tasks: 100_000,
        concurrency: 64,
        bulk: false,
        latency_tasks: 300,
        rate: 100.0,
        retention: None,
        prefetch: None,
        baseline: false,
        no_ops: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--broker" => a.broker = val()?,
            "--backend" => a.backend = val()?,
            "--tasks" => a.tasks = val()?.parse().map_err(|e| format!("--tasks: {e}"))?,
            "--concurrency" => a.concurrency = val()?.parse().map_err(|e| format!("--concurrency: {e}"))?,
            "--latency-tasks" => a.latency_tasks = val()?.parse().map_err(|e| format!("--latency-tasks: {e}"))?,
            "--rate" => a.rate = val()?.parse().map_err(|e| format!("--rate: {e}"))?,
            "--retention" => a.retention = Some(Duration::from_secs(val()?.parse().map_err(|e| format!("--retention: {e}"))?)),
            "--prefetch" => a.prefetch = Some(val()?.parse().map_err(|e| format!("--prefetch: {e}"))?),
            "--bulk" => a.bulk = true,
            "--baseline" => a.baseline = true,
            "--no-ops" => a.no_ops = true,
            "-h" | "--help" => return Err("usage: bench [--broker URL] [--backend URL] [--tasks N] [--concurrency C] [--bulk] [--latency-tasks M] [--rate R] [--retention SECS] [--prefetch N] [--baseline] [--no-ops]".into()),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if args.baseline {
        match args.broker.split(':').next() {
            #[cfg(feature = "amqp")]
            Some("amqp" | "amqps") => raw_amqp::run(&args.broker, args.tasks, args.concurrency).await?,
            #[cfg(feature = "sqs")]
            Some("sqs") => raw_sqs::run(&args.broker, args.tasks).await?,
            _ => return Err("--baseline needs an amqp:// or sqs:// broker and its feature".into()),
        }
    }
    let broker = conveyor::broker(&args.broker).await?;
    let mut backend = conveyor::backend(&args.backend).await?;
    if args.no_ops {
        backend = std::sync::Arc::new(no_ops::NoOps(backend));
    }
    let w = Workload {
        tasks: args.tasks,
        concurrency: args.concurrency,
        bulk: args.bulk,
        latency_tasks: args.latency_tasks,
        rate: args.rate,
        retention: args.retention,
        prefetch: args.prefetch,
    };
    let r = workload::run(broker.clone(), backend, &w).await?;
    println!(
        "{{\"broker\":\"{}\",\"ops\":{},\"tasks\":{},\"concurrency\":{},\"bulk\":{},\"enqueue_per_s\":{:.0},\"process_per_s\":{:.0},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"peak_rss_kb\":{}}}",
        broker.kind(),
        !args.no_ops,
        args.tasks,
        args.concurrency,
        args.bulk,
        r.enqueue_per_s,
        r.process_per_s,
        r.p50_ms,
        r.p99_ms,
        peak_rss_kb().map_or("null".to_owned(), |kb| kb.to_string())
    );
    Ok(())
}

/// The process's peak resident set size in KiB (`VmHWM`), where `/proc` has it.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The raw lapin baseline: the same workload without Conveyor.
#[cfg(feature = "amqp")]
mod raw_amqp {
    use std::time::Instant;

    use futures_util::StreamExt;
    use lapin::options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
        QueueDeclareOptions, QueueDeleteOptions,
    };
    use lapin::types::{AMQPValue, FieldTable, LongString};
    use lapin::{BasicProperties, Connection, ConnectionProperties};

    pub async fn run(url: &str, tasks: u64, concurrency: usize) -> Result<(), Box<dyn std::error::Error>> {
        let url = url.split('?').next().unwrap_or(url);
        let conn = Connection::connect(url, ConnectionProperties::default()).await?;
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        let queue = format!("bench-raw-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("quorum")));
        let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
        ch.queue_declare(queue.as_str().into(), durable, args).await?;
        // About the size of a Conveyor envelope of a no-op task.
        let body = vec![b'x'; 220];
        let start = Instant::now();
        for _ in 0..tasks {
            let props = BasicProperties::default().with_delivery_mode(2);
            ch.basic_publish("".into(), queue.as_str().into(), BasicPublishOptions::default(), &body, props)
                .await?
                .await?;
        }
        let enqueue_per_s = tasks as f64 / start.elapsed().as_secs_f64();
        let cch = conn.create_channel().await?;
        cch.basic_qos(concurrency.min(65_535) as u16, BasicQosOptions::default()).await?;
        let mut consumer = cch
            .basic_consume(queue.as_str().into(), "raw".into(), BasicConsumeOptions::default(), FieldTable::default())
            .await?;
        let start = Instant::now();
        let mut n = 0;
        while n < tasks {
            let Some(d) = consumer.next().await else { break };
            d?.acker.ack(BasicAckOptions::default()).await?;
            n += 1;
        }
        let process_per_s = n as f64 / start.elapsed().as_secs_f64();
        ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await?;
        println!(
            "{{\"broker\":\"amqp-raw\",\"tasks\":{tasks},\"concurrency\":{concurrency},\"enqueue_per_s\":{enqueue_per_s:.0},\"process_per_s\":{process_per_s:.0}}}"
        );
        Ok(())
    }
}

/// The raw aws-sdk-sqs baseline: one message per call, no framework.
#[cfg(feature = "sqs")]
mod raw_sqs {
    use std::time::Instant;

    use aws_config::{self, BehaviorVersion, Region};
    use aws_sdk_sqs::Client;

    pub async fn run(url: &str, tasks: u64) -> Result<(), Box<dyn std::error::Error>> {
        let parsed = url::Url::parse(url)?;
        let q: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(q.get("region").cloned().unwrap_or_else(|| "us-east-1".into())));
        if let Some(e) = q.get("endpoint") {
            loader = loader.endpoint_url(e);
        }
        let client = Client::new(&loader.load().await);
        let name = format!("bench-raw-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let queue = client.create_queue().queue_name(&name).send().await?.queue_url().unwrap_or_default().to_owned();
        let body = "x".repeat(220);
        let start = Instant::now();
        for _ in 0..tasks {
            client.send_message().queue_url(&queue).message_body(&body).send().await?;
        }
        let enqueue_per_s = tasks as f64 / start.elapsed().as_secs_f64();
        let start = Instant::now();
        let mut n = 0;
        while n < tasks {
            let out = client
                .receive_message()
                .queue_url(&queue)
                .max_number_of_messages(1)
                .wait_time_seconds(1)
                .send()
                .await?;
            for m in out.messages() {
                client
                    .delete_message()
                    .queue_url(&queue)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await?;
                n += 1;
            }
        }
        let process_per_s = n as f64 / start.elapsed().as_secs_f64();
        client.delete_queue().queue_url(&queue).send().await?;
        println!("{{\"broker\":\"sqs-raw\",\"tasks\":{tasks},\"enqueue_per_s\":{enqueue_per_s:.0},\"process_per_s\":{process_per_s:.0}}}");
        Ok(())
    }
}
