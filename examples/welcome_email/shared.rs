//! What the welcome-email client and worker share: the task, its arguments, the worker set-up
//! and the example's own logging middleware.

#![allow(dead_code)] // each program uses part of it

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conveyor::middleware::{from_fn, Layer, Next};
use conveyor::{Broker, Data, Request, ResultBackend, TaskContext, TaskError, Worker};
use serde::{Deserialize, Serialize};

/// The task's arguments: ids, not data. The worker loads what it needs, so the payload stays
/// small and the email uses the user's current details.
#[derive(Debug, Serialize, Deserialize)]
pub struct WelcomeEmail {
    pub user_id: u64,
    pub template: String,
}

/// Sends the welcome email (here: logs it). A user is waiting for it, so it goes to the
/// `critical` queue.
#[conveyor::task(name = "email:welcome", queue = "critical", max_retry = 5, timeout = "30s")]
pub async fn send_welcome_email(args: WelcomeEmail, mailer: Data<Mailer>, ctx: TaskContext) -> Result<(), TaskError> {
    mailer.send(&args, &ctx).await
}

/// The mail provider's client (here: it logs), registered once on the worker with
/// `.data(mailer)` and handed to every task that takes a `Data<Mailer>`: a database pool or an
/// HTTP client is shared the same way.
pub struct Mailer {
    /// The sender address.
    pub from: String,
    /// The user table, when the client runs in the same process (`memory://`); a real worker
    /// reads the user from its database here.
    pub users: Option<Arc<Users>>,
}

impl Mailer {
    async fn send(&self, args: &WelcomeEmail, ctx: &TaskContext) -> Result<(), TaskError> {
        let user = self.users.as_ref().and_then(|u| u.email(args.user_id));
        let to = user.unwrap_or_else(|| format!("user {}", args.user_id));
        tokio::time::sleep(Duration::from_millis(20)).await; // the mail provider's round trip
        let attempt = ctx.retried() + 1;
        tracing::info!(task_id = %ctx.id(), attempt, "sending `{}` email to {to} (from {})", args.template, self.from);
        Ok(())
    }
}

/// Registered users (the example's stand-in for a database table).
#[derive(Default)]
pub struct Users {
    inner: Mutex<Table>,
}

/// The last id given, and each user's email and name.
#[derive(Default)]
struct Table {
    last_id: u64,
    rows: HashMap<u64, (String, String)>,
}

impl Users {
    /// Stores a user and returns the new id.
    pub fn insert(&self, email: String, name: String) -> u64 {
        let mut t = self.inner.lock().unwrap();
        t.last_id += 1;
        let id = t.last_id;
        t.rows.insert(id, (email, name));
        id
    }

    /// `Name <email>` of user `id`.
    pub fn email(&self, id: u64) -> Option<String> {
        self.inner.lock().unwrap().rows.get(&id).map(|(email, name)| format!("{name} <{email}>"))
    }
}

/// The example's logging middleware: one line per attempt, with its outcome and duration.
pub fn log_attempts() -> impl Layer {
    from_fn(|req: Request, next: Next| async move {
        let (id, name, attempt) = (req.task.id.clone(), req.task.name.clone(), req.task.retried + 1);
        let start = Instant::now();
        let out = next.run(req).await;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        match &out {
            Ok(_) => tracing::info!(%id, %name, attempt, "done in {ms:.1} ms"),
            Err(e) => tracing::warn!(%id, %name, attempt, error = %e, "failed after {ms:.1} ms"),
        }
        out
    })
}

/// The worker: queues `critical`, `default` and `low` weighted 6:3:1, its tasks sending mail
/// with `mailer`.
pub fn worker(
    broker: Arc<dyn Broker>,
    backend: Arc<dyn ResultBackend>,
    mailer: Mailer,
    concurrency: usize,
) -> conveyor::Result<Worker> {
    Worker::builder(broker, backend)
        .data(mailer)
        .register(send_welcome_email)
        .layer(log_attempts())
        .concurrency(concurrency)
        .queue("critical", 6)
        .queue("default", 3)
        .queue("low", 1)
        .build()
}

/// The value of `--name VALUE`, else of the environment variable `env`.
pub fn setting(name: &str, env: &str) -> Option<String> {
    let mut args = std::env::args().skip_while(|a| a != name);
    args.next().and(args.next()).or_else(|| std::env::var(env).ok())
}

/// The broker URL (`--broker` or `CONVEYOR_BROKER`, default `memory://`: everything in this
/// process) and the backend URL (`--backend` or `CONVEYOR_BACKEND`; default: the broker's URL
/// for Redis and memory). A RabbitMQ or SQS broker needs a backend named: one in this process
/// would not be shared with the other processes.
pub fn urls() -> (String, String) {
    let broker = setting("--broker", conveyor::BROKER_ENV).unwrap_or_else(|| "memory://".into());
    let backend = setting("--backend", conveyor::BACKEND_ENV).unwrap_or_else(|| {
        if broker.starts_with("redis") || broker.starts_with("memory") {
            broker.clone()
        } else {
            eprintln!("a result backend is needed with this broker: --backend URL or CONVEYOR_BACKEND (redis://...)");
            std::process::exit(2);
        }
    });
    (broker, backend)
}
