//! What handlers get and what the worker tells about them: application state (`Data<T>`,
//! `req.data`), and one readable log line per failed attempt, timeouts and panics included.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use conveyor::memory::{MemoryBackend, MemoryBroker};
use conveyor::middleware::Logging;
use conveyor::{Client, Data, Error, Request, ResultBackend, TaskContext, TaskError, TaskState, Worker};

use crate::suite::{eventually, Running};

/// Greetings the task wrote (state registered on the worker).
struct Counter(Mutex<Vec<String>>);

#[derive(Clone)]
struct Greeting(&'static str);

#[conveyor::task(name = "state:greet", queue = "state")]
async fn greet(name: String, greeting: Data<Greeting>, ctx: TaskContext, seen: Data<Counter>) -> Result<(), TaskError> {
    let text = format!("{}, {name} (attempt {})", greeting.0, ctx.retried() + 1);
    assert_eq!(ctx.data::<Greeting>().map(|g| g.0), Some(greeting.0));
    seen.0.lock().unwrap().push(text);
    Ok(())
}

fn env() -> (Arc<MemoryBroker>, Arc<MemoryBackend>, Client) {
    let broker = Arc::new(MemoryBroker::new());
    let backend = Arc::new(MemoryBackend::new());
    let client = Client::new(broker.clone(), backend.clone());
    (broker, backend, client)
}

#[tokio::test]
async fn handlers_get_the_workers_data() {
    let (broker, backend, client) = env();
    let untyped = Arc::new(Mutex::new(None));
    let u = untyped.clone();
    let w = Running::start(
        Worker::builder(broker.clone(), backend.clone())
            .data(Greeting("Hello"))
            .data(Counter(Mutex::new(Vec::new())))
            .register(greet)
            .register_handler("state:raw", move |req: Request| {
                *u.lock().unwrap() = req.data.get::<Greeting>().map(|g| g.0);
                async { Ok(serde_json::value::RawValue::from_string("null".into()).unwrap()) }
            })
            .queue("state", 1),
    );
    let a = client.enqueue(greet, "Ada".to_string()).await.unwrap();
    let mut raw = conveyor::TaskMessage::with_args("state:raw", &()).unwrap();
    raw.queue = "state".into();
    let b = client.enqueue_message(raw).await.unwrap();
    for id in [a.id().clone(), b.id.clone()] {
        let r = backend.wait(&id, Duration::from_secs(5)).await.unwrap();
        assert_eq!(r.state, TaskState::Completed, "{r:?}");
    }
    assert_eq!(*untyped.lock().unwrap(), Some("Hello"));
    w.stop().await;
}

#[tokio::test]
async fn a_task_whose_data_is_missing_is_refused_at_build() {
    let (broker, backend, _) = env();
    let err = Worker::builder(broker, backend).data(Greeting("Hi")).register(greet).build().err().expect("refused");
    let msg = err.to_string();
    assert!(matches!(err, Error::Config(_)), "{msg}");
    assert!(msg.contains("`state:greet`") && msg.contains("Counter") && msg.contains(".data("), "{msg}");
}

/// Collects the events at WARN and above.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() > tracing::Level::WARN {
            return;
        }
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!(" {}={:?}", field.name(), value));
            }
        }
        let mut f = Fields(String::new());
        event.record(&mut f);
        self.0.lock().unwrap().push(f.0);
    }
}

#[conveyor::task(name = "logs:slow", queue = "logs", timeout = "50ms", max_retry = 1)]
async fn slow(_: ()) -> Result<(), TaskError> {
    tokio::time::sleep(Duration::from_secs(5)).await;
    Ok(())
}

#[conveyor::task(name = "logs:panics", queue = "logs", max_retry = 1)]
async fn panics(_: ()) -> Result<(), TaskError> {
    panic!("boom")
}

/// Every failed attempt is one WARN line from `Logging`: a timed-out attempt too (the timeout
/// used to drop the attempt around the middleware, which then logged nothing), and a panic
/// with its message and location.
#[tokio::test(flavor = "current_thread")]
async fn every_failed_attempt_is_one_warning() {
    use tracing_subscriber::layer::SubscriberExt;
    let warnings = Warnings::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(warnings.clone()));
    let (broker, backend, client) = env();
    let w = Running::start(
        Worker::builder(broker.clone(), backend.clone())
            .layer(Logging)
            .register(slow)
            .register(panics)
            .retry_policy(|_: u32, _: &TaskError, _: &conveyor::TaskMessage| Duration::from_millis(10)),
    );
    let a = client.enqueue(slow, ()).await.unwrap();
    let b = client.enqueue(panics, ()).await.unwrap();
    for id in [a.id().clone(), b.id().clone()] {
        eventually(Duration::from_secs(10), "archived", || async {
            backend.get(&id).await.unwrap().is_some_and(|r| r.state == TaskState::Archived)
        })
        .await;
    }
    w.stop().await;
    let lines = warnings.0.lock().unwrap().clone();
    let failed = |name: &str| lines.iter().filter(|l| l.contains("task failed") && l.contains(name)).count();
    assert_eq!(failed("logs:slow"), 2, "two timed-out attempts, two warnings: {lines:#?}");
    assert_eq!(failed("logs:panics"), 2, "two panicked attempts: {lines:#?}");
    let panic_line = lines.iter().find(|l| l.contains("handler panicked")).expect("the panic is told");
    assert!(panic_line.contains("boom at tests/conformance/handlers.rs:"), "{panic_line}");
}
