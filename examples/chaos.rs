//! The chaos run: does any accepted task get lost when workers are SIGKILLed and the broker
//! is killed and restarted? Built on the public API only. `scripts/chaos BROKER [N]` runs it
//! with a server of its own; by hand:
//!
//! ```text
//! cargo run --all-features --example chaos -- run --broker URL --backend URL --tasks N \
//!     --dir DIR [--rate PER_S] [--kill-broker 'CMD' --start-broker 'CMD']
//! ```
//!
//! - One producer process enqueues N tasks with fixed ids, one by one (16 at a time, paced at
//!   `--rate` per second, default N / 10), and
//!   retries a failed enqueue with the same id until it is accepted (`Ok`, or `DuplicateTask`,
//!   which means the task is queued), as users are told to.
//! - Three worker processes run them; each run appends the task id to the worker's own file.
//!   Every 2-4 s one worker is killed with SIGKILL and replaced.
//! - Once half the tasks are accepted, the broker is killed (`--kill-broker`) and started again
//!   (`--start-broker`), if given.
//! - At the end: accepted, lost (accepted and never run) and duplicated (run more than once)
//!   tasks, as one JSON line. Exit status 1 if any accepted task was lost.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conveyor::{Client, Error, Request, TaskMessage, TaskResult, Worker};
use futures_util::StreamExt;

const TASK: &str = "chaos:task";
const QUEUE: &str = "chaos";

fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args().skip_while(|a| a != name);
    args.next().and(args.next())
}

fn required(name: &str) -> String {
    arg(name).unwrap_or_else(|| {
        eprintln!("chaos: {name} is required");
        std::process::exit(2)
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_target(false)
        .with_max_level(tracing::Level::WARN)
        .with_writer(std::io::stderr)
        .init();
    match std::env::args().nth(1).as_deref() {
        Some("run") => run().await,
        Some("produce") => produce().await,
        Some("work") => work().await,
        _ => {
            eprintln!("usage: chaos run --broker URL --backend URL --tasks N --dir DIR [--kill-broker CMD --start-broker CMD]");
            std::process::exit(2)
        }
    }
}

/// Enqueues `--tasks` tasks `chaos-<i>`, each retried with its id until accepted, and writes
/// each accepted id to `--out`.
async fn produce() -> Result<(), Box<dyn std::error::Error>> {
    let (broker, backend) = connect().await;
    let client = Client::new(broker, backend);
    let n: usize = required("--tasks").parse()?;
    let out = Arc::new(Mutex::new(std::fs::File::create(required("--out"))?));
    let retries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Paced, so that kills and the broker restart fall in the middle of the run.
    let rate: f64 = arg("--rate").map_or(Ok(n as f64 / 10.0), |r| r.parse())?.max(1.0);
    let start = tokio::time::Instant::now();
    futures_util::stream::iter(0..n)
        .map(|i| {
            let (client, out, retries) = (client.clone(), out.clone(), retries.clone());
            async move {
                tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
                let mut m = TaskMessage::with_args(TASK, &i).expect("an integer encodes");
                m.id = format!("chaos-{i}").into();
                m.queue = QUEUE.into();
                m.max_retry = 1000;
                let mut pause = Duration::from_millis(50);
                loop {
                    match client.enqueue_message(m.clone()).await {
                        Ok(_) | Err(Error::DuplicateTask { .. }) => break,
                        Err(e) => {
                            retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            tracing::debug!(task = i, error = %e, "enqueue failed; retrying with the same id");
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(Duration::from_millis(250));
                        }
                    }
                }
                let mut f = out.lock().unwrap();
                writeln!(f, "chaos-{i} {}", unix_ms()).expect("the accepted file is writable");
            }
        })
        .buffer_unordered(16)
        .collect::<()>()
        .await;
    eprintln!("producer: {n} accepted, {} enqueue retries", retries.load(std::sync::atomic::Ordering::Relaxed));
    Ok(())
}

/// Runs tasks until SIGTERM, appending each run's task id to `--out`.
async fn work() -> Result<(), Box<dyn std::error::Error>> {
    let (broker, backend) = connect().await;
    let out = Arc::new(Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(required("--out"))?));
    let worker = Worker::builder(broker, backend)
        .register_handler(TASK, move |req: Request| {
            let out = out.clone();
            async move {
                // A little work, so that kills catch tasks in flight.
                tokio::time::sleep(Duration::from_millis(fastrand_ms())).await;
                let line = format!("{} {}\n", req.task.id, unix_ms());
                out.lock().unwrap().write_all(line.as_bytes()).expect("the runs file is writable");
                TaskResult::Ok(serde_json::value::to_raw_value(&()).expect("unit encodes"))
            }
        })
        .queue(QUEUE, 1)
        .concurrency(32)
        .lease(Duration::from_secs(2))
        .build()?;
    worker.run().await?;
    Ok(())
}

/// Now, in milliseconds since the Unix epoch: the time stamp of each line the processes write.
fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

fn fastrand_ms() -> u64 {
    (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos() % 50) as u64
}

async fn connect() -> (Arc<dyn conveyor::Broker>, Arc<dyn conveyor::ResultBackend>) {
    let (broker, backend) = (required("--broker"), required("--backend"));
    loop {
        match tokio::try_join!(conveyor::broker(&broker), conveyor::backend(&backend)) {
            Ok(pair) => return pair,
            // The broker may be restarting as this process starts.
            Err(e) => {
                tracing::warn!(error = %e, "cannot connect yet; trying again");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect()
}

fn spawn(role: &str, out: &Path) -> Child {
    let exe = std::env::current_exe().expect("own path");
    let mut cmd = Command::new(exe);
    cmd.arg(role).arg("--out").arg(out);
    for name in ["--broker", "--backend", "--tasks", "--rate"] {
        if let Some(v) = arg(name) {
            cmd.arg(name).arg(v);
        }
    }
    cmd.spawn().expect("a child process starts")
}

fn shell(cmd: &str) {
    let status = Command::new("sh").arg("-c").arg(cmd).status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("chaos: `{cmd}` failed");
    }
}

/// The orchestrator.
async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(required("--dir"));
    std::fs::create_dir_all(&dir)?;
    let n: usize = required("--tasks").parse()?;
    let started = Instant::now();
    let accepted_file = dir.join("accepted");
    let mut producer = spawn("produce", &accepted_file);
    let mut worker_no = 0;
    let mut new_worker = |dir: &Path| {
        worker_no += 1;
        spawn("work", &dir.join(format!("runs-{worker_no}")))
    };
    let mut workers: Vec<Child> = (0..3).map(|_| new_worker(&dir)).collect();
    let (mut kills, mut restarted) = (0, false);
    // When the killed broker first accepted a connection again (Unix ms).
    let mut back_ms: Option<u64> = None;
    let mut produced_at = None;
    // Kill a worker every 2-4 s until every accepted task ran (or the run times out).
    let deadline = Duration::from_secs(120 + n as u64 / 200);
    loop {
        tokio::time::sleep(Duration::from_millis(2000 + (started.elapsed().subsec_millis() as u64 * 2))).await;
        let accepted = lines(&accepted_file).len();
        if !restarted && accepted >= n / 2 {
            if let (Some(kill), Some(start)) = (arg("--kill-broker"), arg("--start-broker")) {
                eprintln!("chaos: killing the broker at {accepted} accepted");
                shell(&kill);
                // Started in the background while this task watches the broker's port: the
                // start command returns only once its own checks pass, which can be seconds
                // after the broker took its first connection again.
                let starting = tokio::task::spawn_blocking(move || {
                    std::thread::sleep(Duration::from_secs(1));
                    shell(&start);
                });
                back_ms = Some(answers_again(&broker_addr()).await);
                let _ = starting.await;
                eprintln!("chaos: broker started again");
            }
            restarted = true;
        }
        if produced_at.is_none() && producer.try_wait()?.is_some() {
            produced_at = Some(started.elapsed());
        }
        // Read again: the broker's restart above can take a while.
        let accepted = lines(&accepted_file).len();
        let ran = ran(&dir).len();
        if produced_at.is_some() && ran >= accepted {
            break;
        }
        if started.elapsed() > deadline {
            eprintln!("chaos: timed out with {ran} of {accepted} accepted tasks run");
            break;
        }
        let victim = kills % workers.len();
        let _ = workers[victim].kill();
        let _ = workers[victim].wait();
        workers[victim] = new_worker(&dir);
        kills += 1;
    }
    let _ = producer.kill();
    for w in &mut workers {
        // SIGTERM: a graceful stop, so that the last runs are acked.
        shell(&format!("kill -TERM {}", w.id()));
    }
    for w in &mut workers {
        let _ = w.wait();
    }
    let accepted: Vec<String> = lines(&accepted_file).iter().map(|l| first_word(l).to_owned()).collect();
    let runs = ran(&dir);
    // From the broker answering again to the first task run, and the first task accepted, after it.
    let resumed_ms = back_ms.and_then(|back| first_after(&run_times(&dir), back).map(|t| t - back));
    let enqueue_resumed_ms = back_ms.and_then(|back| first_after(&times(&accepted_file), back).map(|t| t - back));
    let lost = accepted.iter().filter(|id| !runs.contains_key(*id)).count();
    let duplicated = runs.values().filter(|n| **n > 1).count();
    println!(
        "{{\"broker\":\"{}\",\"tasks\":{n},\"accepted\":{},\"ran\":{},\"lost\":{lost},\"duplicated\":{duplicated},\"worker_kills\":{kills},\"broker_restarted\":{},\"resumed_ms\":{},\"enqueue_resumed_ms\":{},\"seconds\":{:.1}}}",
        conveyor::redact_url(&required("--broker")),
        accepted.len(),
        runs.len(),
        restarted && arg("--kill-broker").is_some(),
        resumed_ms.map_or("null".to_owned(), |ms| ms.to_string()),
        enqueue_resumed_ms.map_or("null".to_owned(), |ms| ms.to_string()),
        started.elapsed().as_secs_f64()
    );
    if lost > 0 || accepted.len() < n {
        std::process::exit(1);
    }
    Ok(())
}

/// How many times each task ran, from every worker's file.
fn ran(dir: &Path) -> HashMap<String, usize> {
    let mut runs = HashMap::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with("runs-") {
            for line in lines(&entry.path()) {
                *runs.entry(first_word(&line).to_owned()).or_insert(0) += 1;
            }
        }
    }
    runs
}

/// The time stamps of every run, from every worker's file.
fn run_times(dir: &Path) -> Vec<u64> {
    let files = std::fs::read_dir(dir).into_iter().flatten().flatten();
    files.filter(|e| e.file_name().to_string_lossy().starts_with("runs-")).flat_map(|e| times(&e.path())).collect()
}

/// The time stamps (second word) of a file's lines.
fn times(path: &Path) -> Vec<u64> {
    lines(path).iter().filter_map(|l| l.split(' ').nth(1)?.parse().ok()).collect()
}

/// The earliest time stamp at or after `t`.
fn first_after(stamps: &[u64], t: u64) -> Option<u64> {
    stamps.iter().copied().filter(|s| *s >= t).min()
}

fn first_word(line: &str) -> &str {
    line.split(' ').next().unwrap_or_default()
}

/// `host:port` of the broker URL.
fn broker_addr() -> String {
    let url = required("--broker");
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or_default().to_owned()
}

/// Waits until `addr` accepts a TCP connection (polled every 10 ms) and returns when, in Unix ms.
async fn answers_again(addr: &str) -> u64 {
    // The kill takes a moment to close the port: wait until it is refused first.
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    loop {
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(addr)).await
        {
            return unix_ms();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
