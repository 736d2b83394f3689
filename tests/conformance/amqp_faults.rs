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

/// Errors say what kind they are: a queue deleted behind the broker's back makes a publish
/// unroutable, a refusal that trying again cannot mend; a port where nothing listens is a
/// connection failure, worth trying again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_carry_their_kind() {
    use conveyor::amqp::lapin::{options::QueueDeleteOptions, Connection, ConnectionProperties};
    use conveyor::{Client, FailureKind, TaskMessage};
    let url = url_with_prefix(&crate::amqp::url());
    let prefix = url.rsplit("prefix=").next().unwrap().to_owned();
    let broker = conveyor::broker(&url).await.unwrap();
    let client = Client::new(broker, std::sync::Arc::new(conveyor::memory::MemoryBackend::new()));
    let task = || {
        let mut m = TaskMessage::with_args("x", &1).unwrap();
        m.queue = "gone".into();
        m
    };
    client.enqueue_message(task()).await.unwrap();
    let conn = Connection::connect(&crate::amqp::url(), ConnectionProperties::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.queue_delete(format!("{prefix}.gone").as_str().into(), QueueDeleteOptions::default()).await.unwrap();
    let err = client.enqueue_message(task()).await.unwrap_err();
    assert_eq!(err.failure_kind(), Some(FailureKind::Rejected), "{err}");
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("could not route"), "{err}");

    let err = conveyor::broker("amqp://127.0.0.1:1/%2f").await.map(|_| ()).unwrap_err();
    assert_eq!(err.failure_kind(), Some(FailureKind::Connection), "{err}");
    assert!(err.is_transient(), "{err}");
}
