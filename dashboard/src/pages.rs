//! The overview (charts and the queue table), workers, the scheduler, and the small routes:
//! task search and the refresh picker.

use std::time::{Duration, SystemTime};

use axum::extract::{Path, Query};
use axum::http::header::{self, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use conveyor::inspect::history::Point;
use maud::html;
use serde::Deserialize;

use crate::guard::{Ctx, REFRESH_COOKIE};
use crate::html::{button, chart, encode, failure, page, rough, short, time, Nav};
use crate::QUEUES_PAGE;

#[derive(Deserialize, Default)]
pub(crate) struct OverviewQuery {
    #[serde(default)]
    page: usize,
    #[serde(default)]
    filter: String,
}

/// The queues page: charts of processed and failed tasks, and the queue table, paged.
pub(crate) async fn overview(ctx: Ctx, Query(q): Query<OverviewQuery>) -> Response {
    let ins = &ctx.app.ins;
    let names = match ins.queues().await {
        Ok(n) => n,
        Err(e) => return failure(&ctx, &e),
    };
    let matching: Vec<String> = names.into_iter().filter(|n| n.contains(q.filter.as_str())).collect();
    let pages = matching.len().div_ceil(QUEUES_PAGE).max(1);
    let at = q.page.min(pages - 1);
    let shown = &matching[(at * QUEUES_PAGE).min(matching.len())..((at + 1) * QUEUES_PAGE).min(matching.len())];
    let stats = match ins.stats_of(shown).await {
        Ok(s) => s,
        Err(e) => return failure(&ctx, &e),
    };
    // Without operations state (a backend that keeps none) there is no history: no charts.
    let history = ins.history_total().await.ok();
    let hour: Vec<Point> = history.as_ref().map(|h| h.minutes.clone()).unwrap_or_default();
    let days: Vec<Point> = history.as_ref().map(|h| h.days.clone()).unwrap_or_default();
    let filter = encode(&q.filter);
    let body = html! {
        @if history.is_some() {
            section.charts {
                (chart(&hour, 60, 60, "Last hour, per minute"))
                (chart(&hour, 144, 600, "Last 24 hours, per 10 minutes"))
                (chart(&days, 90, 86_400, "Last 90 days, per day"))
            }
        }
        h1 { "Queues " span.muted { "(" (matching.len()) ")" } }
        form.filter method="get" action=(ctx.at("/")) {
            input type="search" name="filter" value=(q.filter) placeholder="queue name contains" aria-label="filter queues";
            button type="submit" { "Filter" }
        }
        @if stats.is_empty() {
            p.muted { "No queues yet: they appear once a task is enqueued." }
        } @else {
            table.queues {
                thead { tr {
                    th { "queue" } th.n { "pending" } th.n { "scheduled" } th.n { "retry" } th.n { "active" }
                    th.n { "archived" } th.n { "completed" } th.n { "latency" } th { "" }
                } }
                tbody {
                    @for s in &stats {
                        @let link = |state: &str| ctx.at(&format!("/queues/{}?state={state}", encode(&s.queue)));
                        tr.paused[s.paused] {
                            td { a href=(ctx.at(&format!("/queues/{}", encode(&s.queue)))) { (s.queue) } @if s.paused { " " span.badge.paused { "paused" } } }
                            td.n { a href=(link("pending")) { (s.pending) } }
                            td.n { a href=(link("scheduled")) { (s.scheduled - s.retry.min(s.scheduled)) } }
                            td.n { a href=(link("retry")) { (s.retry) } }
                            td.n { a href=(link("active")) { (s.active) } }
                            td.n { a.bad[s.archived > 0] href=(link("archived")) { (s.archived) } }
                            td.n { @match s.completed { Some(n) => a href=(link("completed")) { (n) }, None => span.muted title="the result backend keeps no index of completed tasks" { "–" } } }
                            td.n { @match s.latency { Some(l) => (rough(l)), None => span.muted { "–" } } }
                            td {
                                @if !ctx.app.read_only {
                                    @let path = format!("/queues/{}/{}", encode(&s.queue), if s.paused { "resume" } else { "pause" });
                                    (button(&ctx, &path, if s.paused { "Resume" } else { "Pause" }, "small", &[("back", &ctx.here)]))
                                }
                            }
                        }
                    }
                }
            }
            @if pages > 1 {
                nav.pager {
                    @if at > 0 { a href=(format!("{}?page={}&filter={filter}", ctx.at("/"), at - 1)) { "← previous" } }
                    span { "page " (at + 1) " of " (pages) }
                    @if at + 1 < pages { a href=(format!("{}?page={}&filter={filter}", ctx.at("/"), at + 1)) { "next →" } }
                }
            }
        }
    };
    page(&ctx, "Queues", Nav::Queues, body)
}

#[derive(Deserialize)]
pub(crate) struct SearchQuery {
    #[serde(default)]
    id: String,
}

/// The task search box: to the task's page.
pub(crate) async fn search(ctx: Ctx, Query(q): Query<SearchQuery>) -> Response {
    let id = q.id.trim();
    if id.is_empty() {
        return Redirect::to(&ctx.at("/")).into_response();
    }
    Redirect::to(&ctx.at(&format!("/tasks/{}", encode(id)))).into_response()
}

#[derive(Deserialize)]
pub(crate) struct RefreshQuery {
    every: u32,
    #[serde(default)]
    back: String,
}

/// The refresh picker: keeps the interval in a cookie and goes back to the page.
pub(crate) async fn refresh(ctx: Ctx, Query(q): Query<RefreshQuery>) -> Response {
    // Only back into the dashboard: never an open redirect.
    let back = if ctx.inside(&q.back) { q.back.clone() } else { ctx.at("/") };
    let path = if ctx.base.is_empty() { "/" } else { ctx.base.as_str() };
    let cookie = format!("{REFRESH_COOKIE}={}; Path={path}; SameSite=Strict", q.every.min(3600));
    let mut res = Redirect::to(&back).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

/// The worker processes, with what they run now.
pub(crate) async fn workers(ctx: Ctx) -> Response {
    let ws = match ctx.app.ins.workers().await {
        Ok(w) => w,
        Err(e) => return failure(&ctx, &e),
    };
    let busy: usize = ws.iter().map(|w| w.running.len()).sum();
    let slots: usize = ws.iter().map(|w| w.concurrency).sum();
    let body = html! {
        h1 { "Workers " span.muted { "(" (ws.len()) " processes, " (busy) " of " (slots) " handlers busy)" } }
        @if ws.is_empty() {
            p.muted { "No worker is running (a worker that stops beating leaves the list after 15 s)." }
        }
        @for w in &ws {
            section.worker {
                h2 { (w.host) " " span.muted { "pid " (w.pid) } }
                dl {
                    dt { "queues" } dd { @for (q, weight) in &w.queues { a href=(ctx.at(&format!("/queues/{}", encode(q)))) { (q) } " (" (weight) ") " } }
                    dt { "handlers" } dd { (w.running.len()) " of " (w.concurrency) " busy" }
                    dt { "started" } dd { (time(Some(w.started_at))) }
                    dt { "last beat" } dd { (time(Some(w.last_beat))) }
                    dt { "version" } dd { (w.version) }
                    dt { "id" } dd { code { (w.id) } }
                }
                @if !w.running.is_empty() {
                    table {
                        thead { tr { th { "task" } th { "name" } th { "running for" } } }
                        tbody {
                            @for r in &w.running {
                                tr {
                                    td { a href=(ctx.at(&format!("/tasks/{}", encode(r.id.as_str())))) { code { (short(r.id.as_str(), 40)) } } }
                                    td { (r.name) }
                                    td { (rough(SystemTime::now().duration_since(r.started_at).unwrap_or_default())) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page(&ctx, "Workers", Nav::Workers, body)
}

/// The periodic entries, with their next and last fire.
pub(crate) async fn scheduler(ctx: Ctx) -> Response {
    let entries = match ctx.app.ins.cron().await {
        Ok(e) => e,
        Err(e) => return failure(&ctx, &e),
    };
    let body = html! {
        h1 { "Scheduler " span.muted { "(" (entries.len()) " entries)" } }
        @if entries.is_empty() {
            p.muted { "No periodic entry: schedulers register theirs as they sync." }
        } @else {
            table {
                thead { tr { th { "entry" } th { "spec" } th { "zone" } th { "next fire" } th { "last fire" } th { "scheduler" } } }
                tbody {
                    @for e in &entries {
                        tr {
                            td { a href=(ctx.at(&format!("/scheduler/{}", encode(&e.id)))) { (e.id) } }
                            td { code { (e.spec) } }
                            td { (e.zone) }
                            td { (time(e.next_fire)) }
                            td { (time(e.last_fire.as_ref().map(|f| f.fire_time))) }
                            td { code { (short(&e.scheduler, 24)) } " " span.muted { "synced " (time(Some(e.seen_at))) } }
                        }
                    }
                }
            }
        }
    };
    page(&ctx, "Scheduler", Nav::Scheduler, body)
}

/// One periodic entry's fire history.
pub(crate) async fn entry(ctx: Ctx, Path(id): Path<String>) -> Response {
    let fires = match ctx.app.ins.cron_history(&id, 100).await {
        Ok(f) => f,
        Err(e) => return failure(&ctx, &e),
    };
    let body = html! {
        h1 { "Entry " code { (id) } }
        p { a href=(ctx.at("/scheduler")) { "← all entries" } }
        @if fires.is_empty() {
            p.muted { "No fire recorded yet." }
        } @else {
            table {
                thead { tr { th { "tick" } th { "enqueued" } th { "late by" } th { "task" } th { "scheduler" } } }
                tbody {
                    @for f in &fires {
                        tr {
                            td { (crate::html::when(f.fire_time)) @if f.catch_up { " " span.badge { "caught up" } } }
                            td { (time(Some(f.enqueued_at))) }
                            td { (rough(f.enqueued_at.duration_since(f.fire_time).unwrap_or(Duration::ZERO))) }
                            td { a href=(ctx.at(&format!("/tasks/{}", encode(f.task_id.as_str())))) { code { (short(f.task_id.as_str(), 40)) } } }
                            td { code { (short(&f.scheduler, 24)) } }
                        }
                    }
                }
            }
        }
    };
    page(&ctx, "Scheduler", Nav::Scheduler, body)
}
