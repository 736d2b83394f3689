//! `conveyor`: see and fix the queues and tasks of a Conveyor application from a shell.
//!
//! ```text
//! conveyor stats
//! conveyor task ls --queue emails --state archived
//! conveyor task run 6f1c…
//! ```
//!
//! It reads the broker and result backend from `--broker`/`--backend` or `CONVEYOR_BROKER`/
//! `CONVEYOR_BACKEND` (a Redis broker is its own backend), prints tables (`--json` for
//! scripts), and exits 0 on success, 1 when an operation failed, 2 on bad usage.

mod dashboard;
mod output;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use conveyor::inspect::{Inspector, Page};
use conveyor::{Client, Error, TaskId, TaskMessage, TaskState};

use output::Out;

#[derive(Parser)]
#[command(name = "conveyor", version, about = "See and fix the queues and tasks of a Conveyor application.")]
struct Cli {
    /// The broker's URL (redis://, amqp://, sqs://, memory://).
    #[arg(long, env = "CONVEYOR_BROKER", global = true, hide_env_values = true)]
    broker: Option<String>,
    /// The result backend's URL; a Redis broker's own server when not given.
    #[arg(long, env = "CONVEYOR_BACKEND", global = true, hide_env_values = true)]
    backend: Option<String>,
    /// Print JSON rather than tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Every queue with its counts by state.
    Stats,
    /// Queues: list, show, pause, resume.
    #[command(subcommand)]
    Queue(QueueCmd),
    /// Tasks: list by state, show one, run now, archive, delete.
    #[command(subcommand)]
    Task(TaskCmd),
    /// The worker processes running now: host, pid, queues, concurrency, tasks running.
    Workers,
    /// Periodic entries: list them with their next and last fire, or one's fire history.
    #[command(subcommand)]
    Cron(CronCmd),
    /// A queue's processed and failed tasks: per hour for the last 24 hours, per day for 90 days.
    History {
        #[arg(long)]
        queue: String,
    },
    /// Serves the web dashboard (queues, tasks, failures, workers, scheduler).
    Dashboard(dashboard::Args),
    /// Enqueues a task by name with JSON arguments.
    Enqueue {
        /// The task's name, as its worker registered it.
        name: String,
        /// Its arguments, as JSON.
        #[arg(long, default_value = "null")]
        args: String,
        /// The queue.
        #[arg(long, default_value = conveyor::DEFAULT_QUEUE)]
        queue: String,
        /// Run it after this delay (`10s`, `5m`, `1h 30m`).
        #[arg(long = "in", value_parser = humantime::parse_duration)]
        delay: Option<Duration>,
        /// The task's id (a fixed id makes the enqueue idempotent).
        #[arg(long)]
        id: Option<String>,
        /// Retries allowed after the first attempt.
        #[arg(long)]
        max_retry: Option<u32>,
    },
}

#[derive(Subcommand)]
enum CronCmd {
    /// Every periodic entry of the application's schedulers.
    Ls,
    /// The newest fires of one entry.
    History {
        id: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

#[derive(Subcommand)]
enum QueueCmd {
    /// Every queue with its counts (as `conveyor stats`).
    Ls,
    /// One queue's counts.
    Show { queue: String },
    /// Pauses a queue: workers stop taking its tasks; enqueueing goes on.
    Pause { queue: String },
    /// Resumes a paused queue.
    Resume { queue: String },
}

#[derive(Subcommand)]
enum TaskCmd {
    /// Tasks of a queue in one state.
    Ls {
        #[arg(long)]
        queue: String,
        /// pending, scheduled, retry, active, archived or completed (from the records kept).
        #[arg(long, value_parser = parse_state)]
        state: TaskState,
        /// Only tasks of this name.
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long, default_value_t = 0)]
        offset: usize,
    },
    /// Everything known about one task.
    Show { id: String },
    /// Runs tasks now (scheduled, retry or archived; an archived one gets a fresh retry budget).
    Run {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Archives tasks (pending, scheduled or retry).
    Archive {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Deletes tasks (any state but active).
    Delete {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Cancels running tasks: their handlers stop, and they are archived as cancelled.
    Cancel {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Runs every task of a queue in one state now.
    RunAll(AllArgs),
    /// Archives every task of a queue in one state.
    ArchiveAll(AllArgs),
    /// Deletes every task of a queue in one state.
    DeleteAll(AllArgs),
}

#[derive(clap::Args)]
struct AllArgs {
    #[arg(long)]
    queue: String,
    #[arg(long, value_parser = parse_held_state)]
    state: TaskState,
}

fn parse_state(s: &str) -> Result<TaskState, String> {
    s.parse::<TaskState>().map_err(|e| e.to_string())
}

/// A state the broker holds tasks in: every one but `completed`.
fn parse_held_state(s: &str) -> Result<TaskState, String> {
    match parse_state(s)? {
        TaskState::Completed => {
            Err("completed tasks are not held by the broker: delete one with `task delete ID`".into())
        }
        s => Ok(s),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Out { json: cli.json };
    // Bad usage is told before connecting.
    let dashboard_auth = match &cli.cmd {
        Cmd::Dashboard(args) => match args.auth() {
            Ok(auth) => Some(auth),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    let Some(broker_url) = cli.broker.clone() else {
        eprintln!("error: no broker: pass --broker URL or set CONVEYOR_BROKER");
        return ExitCode::from(2);
    };
    let backend_url = match cli.backend.clone() {
        Some(b) => b,
        None if broker_url.starts_with("redis") || broker_url.starts_with("memory") => broker_url.clone(),
        None => {
            eprintln!(
                "error: a {} broker keeps no results: pass --backend URL or set CONVEYOR_BACKEND",
                scheme(&broker_url)
            );
            return ExitCode::from(2);
        }
    };
    let connected = tokio::try_join!(conveyor::broker(&broker_url), conveyor::backend(&backend_url));
    let (broker, backend) = match connected {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let ins = Inspector::new(broker, backend);
    let cmd = match (cli.cmd, dashboard_auth) {
        (Cmd::Dashboard(args), Some(auth)) => {
            return match dashboard::serve(args, auth, ins).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        (cmd, _) => cmd,
    };
    match run(cmd, &ins, &out).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn scheme(url: &str) -> &str {
    url.split_once("://").map_or(url, |(s, _)| s)
}

/// Runs one command; `Ok(false)` when some of its operations failed (each said why).
async fn run(cmd: Cmd, ins: &Inspector, out: &Out) -> conveyor::Result<bool> {
    match cmd {
        Cmd::Stats | Cmd::Queue(QueueCmd::Ls) => out.queues(&ins.stats().await?),
        Cmd::Workers => out.workers(&ins.workers().await?),
        Cmd::History { queue } => out.history(&ins.history(&queue).await?),
        Cmd::Cron(CronCmd::Ls) => out.cron(&ins.cron().await?),
        Cmd::Cron(CronCmd::History { id, limit }) => out.fires(&ins.cron_history(&id, limit).await?),
        Cmd::Queue(QueueCmd::Show { queue }) => out.queues(&[ins.queue(&queue).await?]),
        Cmd::Queue(QueueCmd::Pause { queue }) => {
            ins.pause(&queue).await?;
            out.done(&format!("paused `{queue}`"));
        }
        Cmd::Queue(QueueCmd::Resume { queue }) => {
            ins.resume(&queue).await?;
            out.done(&format!("resumed `{queue}`"));
        }
        Cmd::Task(TaskCmd::Ls { queue, state, name, limit, offset }) => {
            ins.queue(&queue).await?;
            let page = Page::new(offset, limit);
            if state == TaskState::Completed {
                let done = match name {
                    Some(n) => ins.completed_named(&queue, &n, page).await?,
                    None => ins.completed(&queue, page).await?,
                };
                out.completed(&done);
                return Ok(true);
            }
            let tasks = match name {
                Some(n) => ins.tasks_named(&queue, state, &n, page).await?,
                None => ins.tasks(&queue, state, page).await?,
            };
            out.tasks(&tasks);
        }
        Cmd::Task(TaskCmd::Show { id }) => out.task(&ins.task(&TaskId::from(id)).await?),
        Cmd::Task(TaskCmd::Run { ids }) => return each(ids, out, "ran", |id| async move { ins.run(&id).await }).await,
        Cmd::Task(TaskCmd::Archive { ids }) => {
            return each(ids, out, "archived", |id| async move { ins.archive(&id).await }).await
        }
        Cmd::Task(TaskCmd::Delete { ids }) => {
            return each(ids, out, "deleted", |id| async move { ins.delete(&id).await }).await
        }
        Cmd::Task(TaskCmd::Cancel { ids }) => {
            return each(ids, out, "cancelled", |id| async move { ins.cancel(&id).await }).await
        }
        Cmd::Task(TaskCmd::RunAll(a)) => out.count("ran", ins.run_all(&a.queue, a.state).await?),
        Cmd::Task(TaskCmd::ArchiveAll(a)) => out.count("archived", ins.archive_all(&a.queue, a.state).await?),
        Cmd::Task(TaskCmd::DeleteAll(a)) => out.count("deleted", ins.delete_all(&a.queue, a.state).await?),
        // Served before `run` (see `main`).
        Cmd::Dashboard(_) => return Ok(true),
        Cmd::Enqueue { name, args, queue, delay, id, max_retry } => {
            let args = serde_json::value::RawValue::from_string(args)
                .map_err(|e| Error::InvalidOption { option: "args", reason: format!("not JSON: {e}") })?;
            let mut m = TaskMessage::new(name, args);
            m.queue = queue;
            m.eta = delay.map(|d| std::time::SystemTime::now() + d);
            if let Some(id) = id {
                m.id = TaskId::from(id);
            }
            if let Some(n) = max_retry {
                m.max_retry = n;
            }
            let client = Client::new(Arc::clone(ins.broker()), Arc::clone(ins.backend()));
            let rec = client.enqueue_message(m).await?;
            out.enqueued(&rec.id, &rec.queue, rec.state);
        }
    }
    Ok(true)
}

/// Runs `op` on each id, saying what became of each; false if any failed.
async fn each<F, Fut>(ids: Vec<String>, out: &Out, verb: &str, op: F) -> conveyor::Result<bool>
where
    F: Fn(TaskId) -> Fut,
    Fut: std::future::Future<Output = conveyor::Result<()>>,
{
    let mut all = true;
    for id in ids {
        let r = op(TaskId::from(id.clone())).await;
        all &= r.is_ok();
        out.action(&id, verb, r.as_ref().err());
    }
    Ok(all)
}
