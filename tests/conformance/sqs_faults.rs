//! Fault tests against the SQS emulator: a worker killed mid-task (the task reappears after its
//! visibility timeout), and a task longer than its visibility timeout (runs once).

/// A raw SQS client on the emulator a broker `url` names, and the URL's queue prefix: for
/// looking behind the broker's back.
fn raw_sqs(url: &str) -> (aws_sdk_sqs::Client, String) {
    use aws_sdk_sqs::config::{Credentials, Region};
    let endpoint = url::Url::parse(url).unwrap().query_pairs().find(|(k, _)| k == "endpoint").unwrap().1.into_owned();
    let prefix = url.rsplit("prefix=").next().unwrap().to_owned();
    let cfg = aws_sdk_sqs::Config::builder()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .build();
    (aws_sdk_sqs::Client::from_conf(cfg), prefix)
}

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

/// Queues the broker creates keep messages the longest SQS allows (14 days), the archive
/// included: SQS's default of 4 days would silently drop an archive nobody looked at.
#[tokio::test]
async fn queues_keep_messages_fourteen_days() {
    use aws_sdk_sqs::types::QueueAttributeName;
    use conveyor::{Client as TaskClient, TaskMessage};
    let url = url_with_prefix();
    let broker = conveyor::broker(&url).await.unwrap();
    let mut m = TaskMessage::with_args("x", &1).unwrap();
    m.queue = "retained".into();
    TaskClient::new(broker.clone(), std::sync::Arc::new(conveyor::memory::MemoryBackend::new()))
        .enqueue_message(m)
        .await
        .unwrap();
    let admin = broker.admin().unwrap();
    admin.archived("retained", 0, 1).await.unwrap(); // creates the archive queue
    let (sqs, prefix) = raw_sqs(&url);
    for name in [format!("{prefix}-retained"), format!("{prefix}-retained-archive")] {
        let q = sqs.get_queue_url().queue_name(&name).send().await.unwrap();
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(q.queue_url().unwrap())
            .attribute_names(QueueAttributeName::MessageRetentionPeriod)
            .send()
            .await
            .unwrap();
        let period = attrs.attributes().unwrap().get(&QueueAttributeName::MessageRetentionPeriod).cloned();
        assert_eq!(period.as_deref(), Some("1209600"), "{name}");
    }
}

/// With the prefix and `-archive`, a long queue name would pass SQS's 80 characters: refused at
/// enqueue, before a task reaches a queue whose archive SQS would refuse.
#[tokio::test]
async fn queue_names_too_long_for_sqs_are_refused_at_enqueue() {
    use conveyor::{Client, Error, TaskMessage};
    let broker = conveyor::broker(&url_with_prefix()).await.unwrap();
    let client = Client::new(broker, std::sync::Arc::new(conveyor::memory::MemoryBackend::new()));
    let mut m = TaskMessage::with_args("x", &1).unwrap();
    m.queue = "q".repeat(64);
    let err = client.enqueue_message(m).await.unwrap_err();
    assert!(matches!(&err, Error::InvalidQueueName { reason, .. } if reason.contains("80 characters")), "{err}");
    let mut m = TaskMessage::with_args("x", &1).unwrap();
    m.queue = "q".repeat(50);
    client.enqueue_message(m).await.expect("fits");
}

/// Errors say what kind they are and keep the SDK's error as their source: a queue deleted
/// behind the broker's back is a refusal that trying again cannot mend; an endpoint where
/// nothing listens is a connection failure, worth trying again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_carry_their_kind() {
    use conveyor::{Client as TaskClient, FailureKind, TaskMessage};
    let url = url_with_prefix();
    let broker = conveyor::broker(&url).await.unwrap();
    let client = TaskClient::new(broker, std::sync::Arc::new(conveyor::memory::MemoryBackend::new()));
    let task = || {
        let mut m = TaskMessage::with_args("x", &1).unwrap();
        m.queue = "gone".into();
        m
    };
    client.enqueue_message(task()).await.unwrap();
    let (sqs, prefix) = raw_sqs(&url);
    let q = sqs.get_queue_url().queue_name(format!("{prefix}-gone")).send().await.unwrap();
    sqs.delete_queue().queue_url(q.queue_url().unwrap()).send().await.unwrap();
    let err = client.enqueue_message(task()).await.unwrap_err();
    assert_eq!(err.failure_kind(), Some(FailureKind::Rejected), "{err}");
    assert!(!err.is_transient(), "{err}");
    let source = std::error::Error::source(&err).and_then(std::error::Error::source);
    assert!(source.is_some_and(|s| s.source().is_some()), "the SDK's error is kept: {err:?}");

    let nowhere = format!("sqs://?endpoint=http://127.0.0.1:1&region=us-east-1&prefix={prefix}");
    let err = match conveyor::broker(&nowhere).await {
        Ok(broker) => {
            let client = TaskClient::new(broker, std::sync::Arc::new(conveyor::memory::MemoryBackend::new()));
            client.enqueue_message(task()).await.unwrap_err()
        }
        Err(e) => e,
    };
    assert_eq!(err.failure_kind(), Some(FailureKind::Connection), "{err}");
    assert!(err.is_transient(), "{err}");
}
