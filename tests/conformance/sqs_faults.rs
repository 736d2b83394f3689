//! Fault tests against the SQS emulator: a worker killed mid-task (the task reappears after its
//! visibility timeout), and a task longer than its visibility timeout (runs once).

fn url_with_prefix() -> String {
    format!("{}&prefix=f{}", crate::sqs::url(), &uuid::Uuid::new_v4().simple().to_string()[..12])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_mid_task_reappears_and_completes_once() {
    crate::faults::worker_killed_mid_task(&url_with_prefix()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_task_outliving_its_visibility_runs_once() {
    crate::faults::long_task_runs_once(&url_with_prefix()).await;
}
