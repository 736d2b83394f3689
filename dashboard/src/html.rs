//! The page shell and what pages are made of: times, JSON, state badges, action buttons,
//! charts. Every value is escaped by maud (nothing here uses `PreEscaped`).

use std::time::{Duration, SystemTime};

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use conveyor::inspect::history::Point;
use conveyor::{Error, TaskState};
use maud::{html, Markup, DOCTYPE};

use crate::guard::Ctx;

/// The dashboard's stylesheet.
pub(crate) async fn style() -> Response {
    asset("text/css; charset=utf-8", include_str!("../assets/style.css"))
}

/// The dashboard's script: the "select all" box and confirmations; every page works without it.
pub(crate) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("../assets/app.js"))
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "max-age=300")], body).into_response()
}

/// Which section of the navigation a page belongs to.
#[derive(PartialEq, Eq, Clone, Copy)]
pub(crate) enum Nav {
    Queues,
    Workers,
    Scheduler,
    None,
}

/// A whole page: head, navigation (with the task search and the refresh picker), `body`.
pub(crate) fn page(ctx: &Ctx, title: &str, nav: Nav, body: Markup) -> Response {
    let app = &ctx.app;
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // Never on the answer to a form (a confirmation): the refresh would post it again.
                @if ctx.refresh > 0 && ctx.get { meta http-equiv="refresh" content=(ctx.refresh); }
                title { (title) " · Conveyor" }
                link rel="stylesheet" href=(ctx.at("/assets/style.css"));
                script src=(ctx.at("/assets/app.js")) defer {}
            }
            body {
                header.top {
                    a.brand href=(ctx.at("/")) { "Conveyor" }
                    nav {
                        a.on[nav == Nav::Queues] href=(ctx.at("/")) { "Queues" }
                        a.on[nav == Nav::Workers] href=(ctx.at("/workers")) { "Workers" }
                        a.on[nav == Nav::Scheduler] href=(ctx.at("/scheduler")) { "Scheduler" }
                    }
                    form.search method="get" action=(ctx.at("/search")) {
                        input type="search" name="id" placeholder="task id" aria-label="task id" required;
                        button type="submit" { "Find" }
                    }
                    (refresh_picker(ctx))
                }
                main { (body) }
                footer {
                    "broker " code { (app.ins.broker().describe()) }
                    " · backend " code { (app.ins.backend().describe()) }
                    @if app.read_only { " · read-only" }
                }
            }
        }
    };
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], markup.into_string()).into_response()
}

fn refresh_picker(ctx: &Ctx) -> Markup {
    html! {
        span.refresh {
            "refresh "
            @for (secs, label) in [(0, "off"), (2, "2s"), (5, "5s"), (15, "15s"), (60, "1m")] {
                @let to = format!("/refresh?every={secs}&back={}", encode(&ctx.here));
                a.on[ctx.refresh == secs] href=(ctx.at(&to)) { (label) }
            }
        }
    }
}

/// `s` percent-encoded for a path segment or a query value: everything but ASCII letters,
/// digits and `-_.~` (a space is `%20`, which both decode; `+` would stay a plus in a path).
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An error page with `status`; the message names what went wrong (escaped).
pub(crate) fn failure(ctx: &Ctx, e: &Error) -> Response {
    let status = match e {
        Error::NotFound { .. } | Error::UnknownQueue { .. } => StatusCode::NOT_FOUND,
        Error::InvalidTaskState { .. } => StatusCode::CONFLICT,
        Error::InvalidQueueName { .. } | Error::InvalidOption { .. } => StatusCode::BAD_REQUEST,
        Error::Unsupported { .. } => StatusCode::NOT_IMPLEMENTED,
        _ => StatusCode::BAD_GATEWAY,
    };
    let body = html! {
        h1 { "Something went wrong" }
        p.error { (e.to_string()) }
        p { a href=(ctx.at("/")) { "Back to the queues" } }
    };
    let mut res = page(ctx, "Error", Nav::None, body);
    *res.status_mut() = status;
    res
}

/// A time as `2026-12-08 01:02:03Z`.
pub(crate) fn when(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string().replace('T', " ")
}

/// How long ago (or, for a future time, in how long), roughly: `3s ago`, `in 5m`.
pub(crate) fn ago(t: SystemTime) -> String {
    let now = SystemTime::now();
    match now.duration_since(t) {
        Ok(d) => format!("{} ago", rough(d)),
        Err(e) => format!("in {}", rough(e.duration())),
    }
}

/// A duration in its largest unit: `850ms`, `12s`, `5m`, `3h`, `2d`.
pub(crate) fn rough(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        1..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// A time with how long ago, the exact time in its tooltip.
pub(crate) fn time(t: Option<SystemTime>) -> Markup {
    html! {
        @match t {
            Some(t) => time datetime=(humantime::format_rfc3339_seconds(t).to_string()) title=(when(t)) { (ago(t)) },
            None => span.muted { "–" },
        }
    }
}

/// The first line of `s`, at most `n` characters.
pub(crate) fn short(s: &str, n: usize) -> String {
    let first = s.lines().next().unwrap_or("");
    if first.chars().count() > n {
        format!("{}…", first.chars().take(n.saturating_sub(1)).collect::<String>())
    } else {
        first.to_owned()
    }
}

/// JSON text indented for reading (as it was, if it does not parse).
pub(crate) fn pretty(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| json.to_owned())
}

pub(crate) fn badge(state: TaskState) -> Markup {
    html! { span class=(format!("badge {}", state.as_str())) { (state.as_str()) } }
}

/// The hidden field every form carries.
pub(crate) fn csrf(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name="csrf" value=(ctx.csrf); }
}

/// A form of one button that posts to `path`, with `fields`.
pub(crate) fn button(ctx: &Ctx, path: &str, label: &str, class: &str, fields: &[(&str, &str)]) -> Markup {
    html! {
        form.inline method="post" action=(ctx.at(path)) {
            (csrf(ctx))
            @for (k, v) in fields { input type="hidden" name=(k) value=(v); }
            button type="submit" class=(class) { (label) }
        }
    }
}

/// A bar chart of processed (and, stacked in another colour, failed) counts per slot: `slots`
/// slots of `unit` seconds, the last one now. Each bar's tooltip gives its time and counts.
pub(crate) fn chart(points: &[Point], slots: u64, unit: u64, label: &str) -> Markup {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs() / unit;
    let first = now + 1 - slots;
    let mut counts = vec![(0u64, 0u64); slots as usize];
    for p in points {
        let slot = p.at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs() / unit;
        if slot >= first && slot <= now {
            let c = &mut counts[(slot - first) as usize];
            c.0 += p.processed;
            c.1 += p.failed;
        }
    }
    let max = counts.iter().map(|c| c.0).max().unwrap_or(0).max(1);
    let total: (u64, u64) = counts.iter().fold((0, 0), |a, c| (a.0 + c.0, a.1 + c.1));
    let (w, h) = (600.0_f64, 100.0_f64);
    let bw = w / slots as f64;
    html! {
        figure.chart {
            figcaption { (label) ": " strong { (total.0) } " processed, " strong.bad { (total.1) } " failed" }
            svg viewBox=(format!("0 0 {w} {h}")) preserveAspectRatio="none" role="img" aria-label=(label) {
                @for (i, (p, f)) in counts.iter().enumerate() {
                    @let x = i as f64 * bw;
                    @let ph = *p as f64 / max as f64 * h;
                    @let fh = *f as f64 / max as f64 * h;
                    @let at = SystemTime::UNIX_EPOCH + Duration::from_secs((first + i as u64) * unit);
                    g {
                        title { (when(at)) ": " (p) " processed, " (f) " failed" }
                        rect.slot x=(fmt(x)) y="0" width=(fmt(bw)) height=(fmt(h)) {}
                        @if *p > 0 { rect.ok x=(fmt(x)) y=(fmt(h - ph)) width=(fmt(bw * 0.85)) height=(fmt(ph)) {} }
                        @if *f > 0 { rect.bad x=(fmt(x)) y=(fmt(h - fh)) width=(fmt(bw * 0.85)) height=(fmt(fh)) {} }
                    }
                }
            }
            div.axis { span { (ago(SystemTime::UNIX_EPOCH + Duration::from_secs(first * unit))) } span { "now · peak " (max) } }
        }
    }
}

fn fmt(v: f64) -> String {
    format!("{v:.2}")
}
