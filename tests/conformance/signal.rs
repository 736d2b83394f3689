//! Graceful shutdown on a real SIGTERM, sent to a child process running a worker.
//!
//! The child is this test binary itself, re-run with `CONVEYOR_SIGNAL_CHILD` set so that only
//! `child_entry` runs: it starts a worker with `Worker::run()` (which installs the signal
//! handlers), enqueues one task, prints `RUNNING` once the handler started, and after the
//! worker returned prints what the broker and backend hold.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use conveyor::memory::{MemoryBackend, MemoryBroker};
use conveyor::{Broker, Client, ResultBackend, Worker};

use crate::suite::tasks::{log, probe, Probe};

const CHILD_ENV: &str = "CONVEYOR_SIGNAL_CHILD";

/// The child's entry point; does nothing unless run as the child of the tests below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_entry() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (sleep_ms, shutdown) = match mode.as_str() {
        "handback" => (60_000, Duration::from_millis(300)),
        _ => (800, Duration::from_secs(20)),
    };
    let broker = Arc::new(MemoryBroker::new());
    let backend = Arc::new(MemoryBackend::new());
    let client = Client::new(broker.clone(), backend.clone());
    let key = format!("signal-{mode}");
    let h = client.task(probe, Probe { sleep_first_ms: sleep_ms, ..Probe::new(&key) }).await.unwrap();
    let k = key.clone();
    tokio::spawn(async move {
        while log(&k).running == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        println!("RUNNING");
    });
    let worker =
        Worker::builder(broker.clone(), backend.clone()).register(probe).shutdown_timeout(shutdown).build().unwrap();
    worker.run().await.unwrap();
    let stats = broker.stats("default").await.unwrap();
    let state = backend.get(h.id()).await.unwrap().unwrap().state;
    println!("RESULT pending={} active={} state={state}", stats.pending, stats.active);
}

/// Runs the child in `mode`, sends SIGTERM once its task runs, and returns its `RESULT` line.
fn run_child(mode: &str) -> String {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", "signal::child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Watchdog: a child that hangs is killed, which ends the line loop below.
    let pid = child.id().to_string();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(Duration::from_secs(30)).is_err() {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            return true;
        }
        false
    });
    let mut result = None;
    for line in lines {
        let line = line.unwrap();
        // libtest prints "test signal::child_entry ... " before the child's first line.
        if line.ends_with("RUNNING") {
            let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
            assert!(status.success(), "kill -TERM failed");
        } else if let Some(r) = line.strip_prefix("RESULT ") {
            result = Some(r.to_owned());
        }
    }
    let status = child.wait().unwrap();
    let _ = done_tx.send(());
    assert!(!watchdog.join().unwrap(), "the child did not exit within 30 s of starting");
    assert!(status.success(), "child exited with {status}");
    result.expect("the child printed no RESULT line")
}

#[test]
fn sigterm_hands_unfinished_task_back() {
    // The task outlives the shutdown timeout: it must be back in the queue, ready, unused.
    assert_eq!(run_child("handback"), "pending=1 active=0 state=pending");
}

#[test]
fn sigterm_lets_running_task_finish() {
    // The task finishes within the shutdown timeout: it completes, nothing is left.
    assert_eq!(run_child("finish"), "pending=0 active=0 state=completed");
}
