//! The welcome email, part 1: an HTTP API that registers users and enqueues their welcome email.
//!
//! ```sh
//! # No server at all: the in-memory broker, with the worker in this process.
//! cargo run --example welcome_email_client
//! # On Redis: this API and, elsewhere, any number of workers (welcome_email_worker).
//! cargo run --features redis --example welcome_email_client -- --broker redis://127.0.0.1:6390
//!
//! curl -i localhost:3000/register -H 'content-type: application/json' \
//!      -d '{"email": "ada@example.com", "name": "Ada"}'      # 202 {"user_id":1,"task_id":"…"}
//! curl localhost:3000/tasks/welcome-email:1                   # {"state":"completed",…}
//! ```
//!
//! `--listen ADDR` (default `127.0.0.1:3000`), `--broker URL`, `--backend URL` (or
//! `CONVEYOR_BROKER`, `CONVEYOR_BACKEND`). Stops on SIGINT/SIGTERM.

#[path = "welcome_email/shared.rs"]
mod shared;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use conveyor::{CancellationToken, Client};
use serde::Deserialize;
use serde_json::json;
use shared::{send_welcome_email, Users, WelcomeEmail};

#[derive(Deserialize)]
struct Registration {
    email: String,
    name: String,
}

#[derive(Clone)]
struct App {
    client: Client,
    users: Arc<Users>,
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// `POST /register {"email": …, "name": …}`: stores the user, enqueues the welcome email and
/// answers 202 with the user id and the task id.
async fn register(State(app): State<App>, body: Bytes) -> Response {
    let reg: Registration = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let hint = r#"expected {"email": "…", "name": "…"}"#;
            return error(StatusCode::BAD_REQUEST, format!("invalid registration: {e}; {hint}"));
        }
    };
    if !reg.email.contains('@') {
        return error(StatusCode::BAD_REQUEST, format!("`{}` is not an email address", reg.email));
    }
    if reg.name.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "`name` is empty".into());
    }
    let user_id = app.users.insert(reg.email, reg.name);
    // The task id is a business key: retrying this enqueue cannot send the email twice.
    let enqueued = app
        .client
        .task(send_welcome_email, WelcomeEmail { user_id, template: "welcome".into() })
        .task_id(format!("welcome-email:{user_id}"))
        .await;
    match enqueued {
        Ok(handle) => {
            (StatusCode::ACCEPTED, Json(json!({ "user_id": user_id, "task_id": handle.id() }))).into_response()
        }
        Err(e) => {
            error(StatusCode::SERVICE_UNAVAILABLE, format!("registered, but the welcome email was not queued: {e}"))
        }
    }
}

/// `GET /tasks/{id}`: the task's state, attempts and last error.
async fn task(State(app): State<App>, Path(id): Path<String>) -> Response {
    match app.client.get(&id.as_str().into()).await {
        Ok(Some(record)) => Json(record).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no task `{id}` (unknown, or its record expired)")),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_target(false).init();
    let (broker_url, backend_url) = shared::urls();
    let listen = shared::setting("--listen", "LISTEN").unwrap_or_else(|| "127.0.0.1:3000".into());
    let broker = conveyor::broker(&broker_url).await?;
    let backend = conveyor::backend(&backend_url).await?;
    let users = Arc::new(Users::default());

    // memory:// lives in this process only, so the worker runs here too.
    let stop = CancellationToken::new();
    let in_process = if broker.kind() == "memory" {
        let mailer = shared::Mailer { from: "hello@example.com".into(), users: Some(users.clone()) };
        let worker = shared::worker(broker.clone(), backend.clone(), mailer, 4)?;
        tracing::info!("memory:// broker: running the worker in this process");
        Some(tokio::spawn(worker.run_until(stop.clone())))
    } else {
        None
    };

    let app = App { client: Client::new(broker, backend), users };
    let router = Router::new().route("/register", post(register)).route("/tasks/{id}", get(task)).with_state(app);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router).with_graceful_shutdown(conveyor::shutdown_signal()).await?;

    stop.cancel();
    if let Some(worker) = in_process {
        worker.await??;
    }
    Ok(())
}
