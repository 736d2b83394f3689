//! The welcome email, part 2: the worker that sends it. Run as many as you like.
//!
//! ```sh
//! cargo run --features redis --example welcome_email_worker -- --broker redis://127.0.0.1:6390 --concurrency 20
//! ```
//!
//! `--broker URL`, `--backend URL` (or `CONVEYOR_BROKER`, `CONVEYOR_BACKEND`), `--concurrency N`
//! (or `WORKER_CONCURRENCY`, default 10). On SIGINT/SIGTERM it stops taking tasks, lets running
//! ones finish (up to 25 s) and hands the rest back to the broker; a second signal hands them
//! back at once.

#[path = "welcome_email/shared.rs"]
mod shared;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_target(false).init();
    let (broker_url, backend_url) = shared::urls();
    let concurrency: usize = match shared::setting("--concurrency", "WORKER_CONCURRENCY") {
        Some(n) => n.parse().map_err(|e| format!("--concurrency `{n}`: {e}"))?,
        None => 10,
    };
    let broker = conveyor::broker(&broker_url).await?;
    if broker.kind() == "memory" {
        return Err("memory:// is private to one process: run welcome_email_client alone (it runs the \
                    worker too), or give both programs a shared broker such as redis://"
            .into());
    }
    let backend = conveyor::backend(&backend_url).await?;
    let mailer = shared::Mailer { from: "hello@example.com".into(), users: None };
    shared::worker(broker, backend, mailer, concurrency)?.run().await?;
    Ok(())
}
