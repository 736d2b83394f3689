//! A task's page: where it is, its arguments, result or error, attempt timeline, headers and
//! workflow, with the actions its state allows.

use std::time::Duration;

use axum::extract::Path;
use axum::response::Response;
use conveyor::inspect::TaskDetail;
use conveyor::{Payload, TaskState};
use maud::{html, Markup};

use crate::guard::Ctx;
use crate::html::{badge, button, encode, failure, page, pretty, rough, time, when, Nav};
use crate::queue::actions_for;

/// A task's page.
pub(crate) async fn task(ctx: Ctx, Path(id): Path<String>) -> Response {
    let d = match ctx.app.ins.task(&conveyor::TaskId::from(id.as_str())).await {
        Ok(d) => d,
        Err(e) => return failure(&ctx, &e),
    };
    let state = d.state();
    let queue = d.queue().to_owned();
    let ide = encode(d.id.as_str());
    let body = html! {
        p.crumbs {
            a href=(ctx.at("/")) { "Queues" } " / "
            a href=(ctx.at(&format!("/queues/{}?state={}", encode(&queue), state.as_str()))) { (queue) } " / "
        }
        h1 { "Task " code { (d.id.as_str()) } " " (badge(state)) }
        @if !ctx.app.read_only {
            div.actions {
                @for (action, label) in actions_for(state) {
                    @let class = if *action == "delete" || *action == "cancel" { "danger" } else { "" };
                    (button(&ctx, &format!("/tasks/{ide}/{action}"), label, class, &[]))
                }
            }
        }
        (envelope(&ctx, &d))
        (outcome(&d))
        (attempts(&d))
        (headers(&d))
    };
    page(&ctx, &format!("Task {}", d.id.as_str()), Nav::Queues, body)
}

fn envelope(ctx: &Ctx, d: &TaskDetail) -> Markup {
    let info = d.info.as_ref();
    let msg = info.and_then(|i| i.task());
    html! {
        section {
            h2 { "Task" }
            dl {
                dt { "name" } dd { (info.map(|i| i.name().to_owned()).or(d.record.as_ref().map(|r| r.name.clone())).unwrap_or_default()) }
                @if let Some(m) = msg {
                    dt { "retried" } dd { (m.retried) " of " (m.max_retry) }
                    dt { "enqueued" } dd { (time(Some(m.created_at))) " · " (when(m.created_at)) }
                    @if let Some(eta) = m.eta { dt { "due" } dd { (time(Some(eta))) } }
                    @if let Some(dl) = m.deadline { dt { "deadline" } dd { (time(Some(dl))) } }
                    @if let Some(t) = m.timeout { dt { "timeout" } dd { (rough(t)) } }
                    dt { "priority" } dd { (m.priority) }
                    @if let Some(k) = &m.unique_key { dt { "unique key" } dd { code { (k) } } }
                    @if let Some(e) = &m.last_error { dt { "last error" } dd.error { pre { (e) } } }
                }
                @if let Some(i) = info {
                    @if let Some(at) = i.next_run_at { dt { "next run" } dd { (time(Some(at))) } }
                    @if let Some(reason) = &i.reason { dt { "archived" } dd.error { (time(i.archived_at)) pre { (reason) } } }
                }
            }
            @match info.map(|i| &i.payload) {
                Some(Payload::Task(m)) => { h3 { "Arguments" } pre.json { (pretty(m.args.get())) } }
                Some(Payload::Undecodable { error, .. }) => { p.error { "The payload did not decode: " (error) } }
                None => { p.muted { "The broker no longer holds this task (it completed, or was deleted); its arguments are not kept." } }
            }
            @let parent = msg.and_then(|m| m.headers.get(conveyor::PARENT_HEADER));
            @if parent.is_some() || msg.is_some_and(|m| m.workflow.is_some()) {
                h3 { "Workflow" }
                @if let Some(p) = parent {
                    p { "launched by " a href=(ctx.at(&format!("/tasks/{}", encode(p)))) { code { (p) } } }
                }
                @if let Some(wf) = msg.and_then(|m| m.workflow.as_ref()) { (workflow(ctx, wf.get())) }
            }
        }
    }
}

fn outcome(d: &TaskDetail) -> Markup {
    let Some(r) = &d.record else {
        return html! { section { h2 { "Record" } p.muted { "No record: the result backend keeps none for this task (expired, or never written)." } } };
    };
    html! {
        section {
            h2 { "Record" }
            dl {
                dt { "state" } dd { (badge(r.state)) " updated " (time(Some(r.updated_at))) }
                dt { "retried" } dd { (r.retried) " of " (r.max_retry) }
            }
            @if let Some(v) = &r.result { h3 { "Result" } pre.json { (pretty(v.get())) } }
            @if let Some(e) = &r.error {
                h3 { @if r.state == TaskState::Archived { "Error" } @else { "Last error" } }
                pre.error { (e) }
            }
        }
    }
}

fn attempts(d: &TaskDetail) -> Markup {
    let Some(r) = d.record.as_ref().filter(|r| !r.attempts.is_empty()) else { return html! {} };
    let longest = r.attempts.iter().map(|a| a.duration()).max().unwrap_or_default().max(Duration::from_millis(1));
    html! {
        section {
            h2 { "Attempts" }
            ol.timeline {
                @for a in &r.attempts {
                    @let width = ((a.duration().as_secs_f64() / longest.as_secs_f64()) * 20.0).ceil().clamp(1.0, 20.0) as u32;
                    li class=(a.outcome.as_str()) {
                        span.num { "#" (a.number + 1) }
                        (badge(a.outcome))
                        span { (when(a.started_at)) }
                        span class=(format!("bar w{width}")) title=(format!("{} ms", a.duration().as_millis())) {}
                        span { (rough(a.duration())) }
                        @if let Some(w) = &a.worker { span.muted { "on " (w) } }
                        @if let Some(e) = &a.error { pre.error { (e) } }
                    }
                }
            }
        }
    }
}

fn headers(d: &TaskDetail) -> Markup {
    let Some(m) = d.info.as_ref().and_then(|i| i.task()).filter(|m| !m.headers.is_empty()) else { return html! {} };
    html! {
        section {
            h2 { "Headers" }
            table { tbody { @for (k, v) in &m.headers { tr { th { (k) } td { code { (v) } } } } } }
        }
    }
}

/// What a workflow envelope says, read from its JSON: the group this task is a member of, the
/// steps that follow and its callbacks (each a link to its task, by the id every step gets when
/// the workflow is built: a step not launched yet has no page), the chord body; then the whole.
fn workflow(ctx: &Ctx, json: &str) -> Markup {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    let list = |l: Option<&serde_json::Value>| -> Vec<(String, Option<String>)> {
        l.and_then(|l| l.as_array()).map(|a| a.iter().flat_map(steps).collect()).unwrap_or_default()
    };
    let report = v.get("report");
    let next = list(v.get("frames").and_then(|f| f.as_array()).and_then(|f| f.last()).and_then(|f| f.get("steps")));
    let callbacks = list(v.get("callbacks"));
    let body: Vec<(String, Option<String>)> =
        report.and_then(|r| r.get("after")).and_then(|a| a.get("body")).map(steps).unwrap_or_default();
    html! {
        dl {
            @if let Some(r) = report {
                dt { "member" } dd { (r.get("index").and_then(|i| i.as_u64()).map_or(0, |i| i + 1)) " of " (r.get("size").and_then(|s| s.as_u64()).unwrap_or(0)) " of group " code { (r.get("group").and_then(|g| g.as_str()).unwrap_or("")) } }
            }
            @if !body.is_empty() { dt { "chord body" } dd { (links(ctx, &body, ", ")) } }
            @if !next.is_empty() { dt { "next steps" } dd { (links(ctx, &next, " → ")) } }
            @if !callbacks.is_empty() { dt { "on success" } dd { (links(ctx, &callbacks, ", ")) } }
        }
        details { summary { "the whole workflow envelope" } pre.json { (pretty(json)) } }
    }
}

/// Steps as links to their tasks (names alone where there is no id), joined by `sep`.
fn links(ctx: &Ctx, steps: &[(String, Option<String>)], sep: &str) -> Markup {
    html! {
        @for (i, (name, id)) in steps.iter().enumerate() {
            @if i > 0 { (sep) }
            @match id {
                Some(id) => a href=(ctx.at(&format!("/tasks/{}", encode(id)))) { (name) },
                None => span { (name) },
            }
        }
    }
}

/// The tasks of a canvas, in order: a signature (`name` and `id`), or the tasks of a chain,
/// group or chord, flattened.
fn steps(c: &serde_json::Value) -> Vec<(String, Option<String>)> {
    if let Some(n) = c.get("name").and_then(|n| n.as_str()) {
        return vec![(n.to_owned(), c.get("id").and_then(|i| i.as_str()).map(str::to_owned))];
    }
    match c {
        serde_json::Value::Array(a) => a.iter().flat_map(steps).collect(),
        serde_json::Value::Object(o) => o.values().flat_map(steps).collect(),
        _ => Vec::new(),
    }
}
