//! The Conveyor web dashboard: an [`axum::Router`] to mount in your application (under any
//! path), or to run on its own with `conveyor dashboard`.
//!
//! It shows what the [`Inspector`] knows, and does what it does: queues with their counts,
//! latency and pause switch; tasks by state, paged and filtered, with bulk actions on the
//! selected tasks or on all tasks of a state; a task's arguments, result or error, attempt
//! timeline and headers; the archive grouped by failure reason; worker processes; periodic
//! entries with their fire history; processed and failed counts per minute and per day. It
//! uses the public inspector API only.
//!
//! ```no_run
//! # async fn demo() -> conveyor::Result<()> {
//! use conveyor::inspect::Inspector;
//! use conveyor_dashboard::{Auth, Dashboard};
//!
//! let broker = conveyor::broker_from_env().await?;
//! let backend = conveyor::backend_from_env().await?;
//! let dashboard = Dashboard::new(Inspector::new(broker, backend))
//!     .auth(Auth::Bearer("a long random token".into()));
//! let app: axum::Router = axum::Router::new().nest("/admin/queues", dashboard.router());
//! # let _ = app; Ok(()) }
//! ```
//!
//! **Secure by default.** [`Dashboard::serve`] refuses a non-loopback address without
//! authentication; [`Auth`] takes a bearer token or HTTP basic credentials, and
//! [`Dashboard::authorize`] plugs in the host application's own check (or wrap the router in
//! your own layers). [`Dashboard::read_only`] leaves every action route out. Every action is a
//! `POST` carrying a token bound to a `SameSite=Strict` cookie, and cross-origin posts are
//! refused; every page carries a strict Content-Security-Policy (no inline script or style)
//! and the usual security headers; every value that comes from a task is escaped (the pages
//! are [maud](https://maud.lambda.xyz) templates, which escape by default).

mod actions;
mod guard;
mod html;
mod pages;
mod queue;
mod task;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::Router;
use conveyor::inspect::Inspector;

pub use guard::Auth;

/// How many tasks a page lists.
pub(crate) const PAGE: usize = 20;
/// How many queues the overview lists per page.
pub(crate) const QUEUES_PAGE: usize = 50;

/// A host application's own authorization check (see [`Dashboard::authorize`]).
pub type AuthorizeFn = dyn Fn(&Parts) -> bool + Send + Sync;

/// The dashboard of one application (a broker and result backend pair); see the
/// [crate docs](crate).
#[derive(Clone)]
pub struct Dashboard {
    ins: Inspector,
    read_only: bool,
    auth: Auth,
    authorize: Option<Arc<AuthorizeFn>>,
}

/// What every request handler shares.
pub(crate) struct App {
    pub(crate) ins: Inspector,
    pub(crate) read_only: bool,
    pub(crate) auth: Auth,
    pub(crate) authorize: Option<Arc<AuthorizeFn>>,
}

impl Dashboard {
    /// The dashboard of the application `ins` inspects: no authentication of its own (for a
    /// loopback address, or behind the host application's), actions on.
    pub fn new(ins: Inspector) -> Self {
        Dashboard { ins, read_only: false, auth: Auth::None, authorize: None }
    }

    /// With `true`, no action route exists (run, archive, delete, cancel, pause): the
    /// dashboard only shows.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// How requests authenticate (default [`Auth::None`]).
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// The host application's own check, run on every request after [`auth`](Self::auth):
    /// `false` answers 403. For a session cookie, say, when the dashboard is mounted in an
    /// application that has users.
    pub fn authorize(mut self, check: impl Fn(&Parts) -> bool + Send + Sync + 'static) -> Self {
        self.authorize = Some(Arc::new(check));
        self
    }

    /// Whether requests must authenticate (by [`auth`](Self::auth) or
    /// [`authorize`](Self::authorize)).
    pub fn authenticates(&self) -> bool {
        let secret = match &self.auth {
            Auth::None => false,
            Auth::Bearer(token) => !token.is_empty(),
            Auth::Basic { user, password } => !user.is_empty() && !password.is_empty(),
        };
        secret || self.authorize.is_some()
    }

    /// The router, to mount anywhere (`Router::nest("/admin/queues", …)`) or serve as is.
    pub fn router(self) -> Router {
        let app =
            Arc::new(App { ins: self.ins, read_only: self.read_only, auth: self.auth, authorize: self.authorize });
        let mut r = Router::new()
            .route("/", get(pages::overview))
            .route("/queues/{queue}", get(queue::queue))
            .route("/queues/{queue}/failures", get(queue::failures))
            .route("/tasks/{id}", get(task::task))
            .route("/search", get(pages::search))
            .route("/workers", get(pages::workers))
            .route("/scheduler", get(pages::scheduler))
            .route("/scheduler/{id}", get(pages::entry))
            .route("/refresh", get(pages::refresh))
            .route("/assets/style.css", get(html::style))
            .route("/assets/app.js", get(html::script));
        if !app.read_only {
            r = r
                .route("/queues/{queue}/pause", post(actions::pause))
                .route("/queues/{queue}/resume", post(actions::resume))
                .route("/queues/{queue}/bulk", post(actions::bulk))
                .route("/queues/{queue}/all", post(actions::all))
                .route("/queues/{queue}/failures", post(actions::group))
                .route("/tasks/{id}/{action}", post(actions::task));
        }
        r.layer(axum::middleware::from_fn_with_state(app.clone(), guard::guard)).with_state(app)
    }

    /// Serves the dashboard on `addr` until the process ends. Refuses an address other than
    /// loopback unless requests authenticate ([`auth`](Self::auth) or
    /// [`authorize`](Self::authorize)).
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<()> {
        check_exposure(addr, self.authenticates()).map_err(std::io::Error::other)?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        axum::serve(listener, self.router()).await
    }
}

/// `Err` naming the problem if a dashboard on `addr` would be reachable from other machines
/// without authentication.
pub fn check_exposure(addr: SocketAddr, authenticates: bool) -> Result<(), String> {
    if addr.ip().is_loopback() || authenticates {
        return Ok(());
    }
    Err(format!(
        "refusing to serve the dashboard on {addr} without authentication: anyone who can reach it could \
         run, archive and delete tasks. Give a token (--token or CONVEYOR_DASHBOARD_TOKEN) or basic \
         credentials (--basic USER:PASSWORD), or listen on 127.0.0.1"
    ))
}

/// docs/dashboard.md's code blocks, compiled as doctests (here: they use this crate).
#[cfg(doctest)]
#[doc = include_str!("../../docs/dashboard.md")]
pub struct DashboardDoctests;
