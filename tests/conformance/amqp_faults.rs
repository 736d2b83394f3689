//! Fault tests against a real RabbitMQ node: a worker killed mid-task, RabbitMQ restarted
//! mid-run.

use std::process::Command;

fn url_with_prefix(base: &str) -> String {
    format!("{base}?prefix=f{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_task_outliving_its_lease_runs_once() {
    crate::faults::long_task_runs_once(&url_with_prefix(&crate::amqp::url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_mid_task_is_redelivered_and_completes_once() {
    crate::faults::worker_killed_mid_task(&url_with_prefix(&crate::amqp::url())).await;
}

/// Runs `scripts/rabbitmq` for the restart test's own node.
fn rabbitmq_script(action: &str, port: u16, dir: &str) {
    let status = Command::new("scripts/rabbitmq")
        .arg(action)
        .env("CONVEYOR_AMQP_PORT", port.to_string())
        .env("CONVEYOR_EPMD_PORT", (port - 1300).to_string())
        .env("CONVEYOR_AMQP_DIR", dir)
        .status()
        .expect("scripts/rabbitmq runs");
    assert!(status.success(), "scripts/rabbitmq {action} failed");
}

/// Stops the test's own server when dropped, also when the test fails.
struct Stop(u16, String);

impl Drop for Stop {
    fn drop(&mut self) {
        rabbitmq_script("stop", self.0, &self.1);
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_restart_mid_run_loses_no_confirmed_task() {
    let port = 5691;
    let dir = format!("/tmp/conveyor-rabbitmq-restart-{}", std::process::id());
    rabbitmq_script("start", port, &dir);
    let _stop = Stop(port, dir.clone());
    let url = url_with_prefix(&format!("amqp://guest:guest@127.0.0.1:{port}/%2f"));
    let d = dir.clone();
    crate::faults::broker_restart_mid_run(&url, move || rabbitmq_script("restart", port, &d)).await;
}
