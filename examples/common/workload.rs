//! The benchmark workload shared by the `bench` and `compare_brokers` examples.
//!
//! 1. enqueue `tasks` no-op tasks one by one (`bulk`: in batches of 1000), timed;
//! 2. start a worker with `concurrency` and time until all ran;
//! 3. send `latency_tasks` tasks at about `rate` per second and measure pickup latency,
//!    enqueue to handler start.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use conveyor::{Broker, Client, ResultBackend, TaskError, Worker};

static DONE: AtomicU64 = AtomicU64::new(0);
static LATENCIES: Mutex<Vec<f64>> = Mutex::new(Vec::new());

/// Longest the workers may go without finishing a task before the run is called stalled.
const STALL: Duration = Duration::from_secs(60);

#[conveyor::task(name = "bench:noop")]
async fn noop(_args: ()) -> Result<(), TaskError> {
    DONE.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Records the time since `sent_us` (µs since the epoch).
#[conveyor::task(name = "bench:ping")]
async fn ping(sent_us: u64) -> Result<(), TaskError> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as u64;
    LATENCIES.lock().unwrap().push(now.saturating_sub(sent_us) as f64 / 1000.0);
    Ok(())
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Workload {
    pub tasks: u64,
    pub concurrency: usize,
    pub bulk: bool,
    pub latency_tasks: u64,
    pub rate: f64,
    pub retention: Option<Duration>,
    pub prefetch: Option<usize>,
}

/// What it measured.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    pub enqueue_per_s: f64,
    pub process_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Runs `w` on a fresh queue of `broker`, recording in `backend`. One run at a time per process.
pub async fn run(
    broker: Arc<dyn Broker>,
    backend: Arc<dyn ResultBackend>,
    w: &Workload,
) -> Result<Report, Box<dyn std::error::Error>> {
    DONE.store(0, Ordering::Relaxed);
    LATENCIES.lock().unwrap().clear();
    let client = Client::new(broker.clone(), backend.clone());
    let queue = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let build = || {
        let t = client.task(noop, ()).queue(queue.as_str());
        match w.retention {
            Some(r) => t.retention(r),
            None => t,
        }
    };

    // 1. Enqueue.
    let start = Instant::now();
    if w.bulk {
        let mut i = 0;
        while i < w.tasks {
            let n = 1000.min(w.tasks - i);
            let batch: Vec<_> = (i..i + n).map(|_| build().build()).collect::<Result<_, _>>()?;
            for r in client.enqueue_messages(&batch).await {
                r?;
            }
            i += n;
        }
    } else {
        for _ in 0..w.tasks {
            build().send().await?;
        }
    }
    let enqueue_per_s = w.tasks as f64 / start.elapsed().as_secs_f64();

    // 2. Process.
    let mut worker = Worker::builder(broker.clone(), backend.clone())
        .register(noop)
        .register(ping)
        .queue(queue.as_str(), 1)
        .concurrency(w.concurrency)
        // One claim may take every free slot, up to 512 (+5-8% processed/s on Redis at
        // concurrency 512 against 256, in interleaved runs).
        .batch(w.concurrency.min(512));
    if let Some(r) = w.retention {
        worker = worker.retention(r);
    }
    if let Some(p) = w.prefetch {
        worker = worker.prefetch(p);
    }
    let stop = conveyor::CancellationToken::new();
    let start = Instant::now();
    let running = tokio::spawn(worker.build()?.run_until(stop.clone()));
    let (mut seen, mut progress) = (0, Instant::now());
    while DONE.load(Ordering::Relaxed) < w.tasks {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let done = DONE.load(Ordering::Relaxed);
        if done > seen {
            (seen, progress) = (done, Instant::now());
        } else if progress.elapsed() > STALL {
            stop.cancel();
            return Err(format!("stalled: {done} of {} tasks ran, none in the last {STALL:?}", w.tasks).into());
        }
    }
    let process_per_s = w.tasks as f64 / start.elapsed().as_secs_f64();

    // 3. Pickup latency at a steady rate.
    let gap = Duration::from_secs_f64(1.0 / w.rate.max(0.001));
    let mut tick = tokio::time::interval(gap);
    for _ in 0..w.latency_tasks {
        tick.tick().await;
        let now_us = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros() as u64;
        let mut t = client.task(ping, now_us).queue(queue.as_str());
        if let Some(r) = w.retention {
            t = t.retention(r);
        }
        t.send().await?;
    }
    let deadline = Instant::now() + STALL;
    while (LATENCIES.lock().unwrap().len() as u64) < w.latency_tasks && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.cancel();
    running.await??;

    let mut lat = LATENCIES.lock().unwrap().clone();
    lat.sort_by(f64::total_cmp);
    Ok(Report { enqueue_per_s, process_per_s, p50_ms: percentile(&lat, 0.50), p99_ms: percentile(&lat, 0.99) })
}
