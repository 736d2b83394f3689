//! A queue: its tasks by state, paged and filtered by name, with bulk actions; and its archive
//! grouped by failure reason.

use std::collections::BTreeMap;
use std::time::SystemTime;

use axum::extract::{Path, Query};
use axum::response::Response;
use conveyor::inspect::{Page, TaskInfo};
use conveyor::{Error, QueueStats, TaskRecord, TaskState};
use maud::{html, Markup};
use serde::Deserialize;

use crate::guard::Ctx;
use crate::html::{button, csrf, encode, failure, page, short, time, Nav};
use crate::PAGE;

/// The deepest page a queue's tab goes to (a million tasks in pages of 20).
const MAX_PAGE: usize = 50_000;

/// The states a queue page has a tab for, in order.
pub(crate) const TABS: [TaskState; 6] = [
    TaskState::Pending,
    TaskState::Scheduled,
    TaskState::Retry,
    TaskState::Active,
    TaskState::Archived,
    TaskState::Completed,
];

/// The actions that apply to tasks in `state`, as (action, button label).
pub(crate) fn actions_for(state: TaskState) -> &'static [(&'static str, &'static str)] {
    match state {
        TaskState::Pending => &[("archive", "Archive"), ("delete", "Delete")],
        TaskState::Scheduled | TaskState::Retry => &[("run", "Run now"), ("archive", "Archive"), ("delete", "Delete")],
        TaskState::Archived => &[("run", "Run again"), ("delete", "Delete")],
        TaskState::Active => &[("cancel", "Cancel")],
        TaskState::Completed => &[("delete", "Delete")],
    }
}

/// How many tasks of a queue are in `state`, by its counts (`None`: completed tasks the
/// backend does not index).
pub(crate) fn count(s: &QueueStats, state: TaskState) -> Option<u64> {
    Some(match state {
        TaskState::Pending => s.pending,
        TaskState::Scheduled => s.scheduled - s.retry.min(s.scheduled),
        TaskState::Retry => s.retry,
        TaskState::Active => s.active,
        TaskState::Archived => s.archived,
        TaskState::Completed => return s.completed,
    })
}

#[derive(Deserialize, Default)]
pub(crate) struct QueueQuery {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    page: usize,
    #[serde(default)]
    name: String,
}

/// One row of a task table, from the broker or (completed tasks) from the record.
struct Row {
    id: String,
    name: String,
    args: String,
    retried: String,
    when: Option<SystemTime>,
    note: String,
}

fn row(t: &TaskInfo) -> Row {
    let m = t.task();
    let when = t.archived_at.or(t.next_run_at).or(m.map(|m| m.created_at));
    let note = t.reason.clone().or_else(|| m.and_then(|m| m.last_error.clone())).unwrap_or_default();
    Row {
        id: t.id.to_string(),
        name: t.name().to_owned(),
        args: m.map_or_else(|| "(did not decode)".to_owned(), |m| m.args.get().to_owned()),
        retried: m.map_or(String::new(), |m| format!("{}/{}", m.retried, m.max_retry)),
        when,
        note,
    }
}

fn record_row(r: &TaskRecord) -> Row {
    Row {
        id: r.id.to_string(),
        name: r.name.clone(),
        args: r.result.as_ref().map_or(String::new(), |v| v.get().to_owned()),
        retried: format!("{}/{}", r.retried, r.max_retry),
        when: Some(r.updated_at),
        note: String::new(),
    }
}

/// A queue's page: counts, a tab per state, the tasks of one state.
pub(crate) async fn queue(ctx: Ctx, Path(queue): Path<String>, Query(q): Query<QueueQuery>) -> Response {
    let ins = &ctx.app.ins;
    let stats = match ins.queue(&queue).await {
        Ok(s) => s,
        Err(e) => return failure(&ctx, &e),
    };
    let state = match q.state.as_deref().map(str::parse::<TaskState>) {
        None => TaskState::Pending,
        Some(Ok(s)) => s,
        Some(Err(e)) => return failure(&ctx, &e),
    };
    let pg = q.page.min(MAX_PAGE);
    let page_of = Page::new(pg * PAGE, PAGE);
    let name = q.name.trim();
    let listed: Result<Vec<Row>, Error> = match (state, name.is_empty()) {
        (TaskState::Completed, true) => {
            ins.completed(&queue, page_of).await.map(|r| r.iter().map(record_row).collect())
        }
        (TaskState::Completed, false) => {
            ins.completed_named(&queue, name, page_of).await.map(|r| r.iter().map(record_row).collect())
        }
        (_, true) => ins.tasks(&queue, state, page_of).await.map(|t| t.iter().map(row).collect()),
        (_, false) => ins.tasks_named(&queue, state, name, page_of).await.map(|t| t.iter().map(row).collect()),
    };
    let qe = encode(&queue);
    let here =
        |page: usize| ctx.at(&format!("/queues/{qe}?state={}&page={page}&name={}", state.as_str(), encode(name)));
    let body = html! {
        p.crumbs { a href=(ctx.at("/")) { "Queues" } " / " }
        h1 {
            (queue)
            @if stats.paused { " " span.badge.paused { "paused" } }
        }
        div.toolbar {
            @if let Some(l) = stats.latency { span { "latency " (crate::html::rough(l)) } }
            @if !ctx.app.read_only {
                @let path = format!("/queues/{qe}/{}", if stats.paused { "resume" } else { "pause" });
                (button(&ctx, &path, if stats.paused { "Resume" } else { "Pause" }, "", &[("back", &ctx.here)]))
            }
            @if state == TaskState::Archived { a href=(ctx.at(&format!("/queues/{qe}/failures"))) { "Failures by reason →" } }
        }
        nav.tabs {
            @for t in TABS {
                a.on[t == state] href=(ctx.at(&format!("/queues/{qe}?state={}", t.as_str()))) {
                    (t.as_str()) " " span.count { @match count(&stats, t) { Some(n) => (n), None => "–" } }
                }
            }
        }
        form.filter method="get" action=(ctx.at(&format!("/queues/{qe}"))) {
            input type="hidden" name="state" value=(state.as_str());
            input type="search" name="name" value=(name) placeholder="task name" aria-label="task name";
            button type="submit" { "Filter" }
        }
        @match &listed {
            Err(Error::Unsupported { .. }) => {
                p.notice { (listed.as_ref().err().map(ToString::to_string).unwrap_or_default()) ". See the capability table in docs/operations.md." }
            }
            Err(e) => p.error { (e.to_string()) }
            Ok(rows) => { (table(&ctx, &queue, state, rows, pg, name.is_empty())) }
        }
        @if let Ok(rows) = &listed {
            nav.pager {
                @if pg > 0 { a href=(here(pg - 1)) { "← newer" } }
                span { "page " (pg + 1) }
                @if rows.len() == PAGE && pg < MAX_PAGE { a href=(here(pg + 1)) { "older →" } }
            }
            @if !name.is_empty() {
                p.muted { "The name filter looks at the first " (conveyor::inspect::NAMED_SCAN) " " (state.as_str()) " tasks." }
            }
        }
    };
    page(&ctx, &queue, Nav::Queues, body)
}

/// The task table, with its selection boxes and bulk actions.
fn table(ctx: &Ctx, queue: &str, state: TaskState, rows: &[Row], page: usize, all: bool) -> Markup {
    let actions = if ctx.app.read_only { &[][..] } else { actions_for(state) };
    let qe = encode(queue);
    let args_label = if state == TaskState::Completed { "result" } else { "arguments" };
    html! {
        @if rows.is_empty() {
            p.muted { @if page == 0 { "No " (state.as_str()) " task." } @else { "No more tasks." } }
        } @else {
            form id="bulk" method="post" action=(ctx.at(&format!("/queues/{qe}/bulk"))) {
                (csrf(ctx))
                input type="hidden" name="state" value=(state.as_str());
                input type="hidden" name="back" value=(ctx.here);
                @if !actions.is_empty() {
                    div.actions {
                        "selected: "
                        @for (action, label) in actions {
                            button type="submit" name="action" value=(action) data-confirm=(format!("{label}: the selected tasks?")) { (label) }
                        }
                    }
                }
                table.tasks {
                    thead { tr {
                        @if !actions.is_empty() { th { input type="checkbox" class="select-all" aria-label="select all"; } }
                        th { "id" } th { "name" } th { (args_label) } th { "retried" } th { "when" } th { "error" }
                    } }
                    tbody {
                        @for r in rows {
                            tr {
                                @if !actions.is_empty() { td { input type="checkbox" name="id" value=(r.id) aria-label="select"; } }
                                td { a href=(ctx.at(&format!("/tasks/{}", encode(&r.id)))) { code { (short(&r.id, 40)) } } }
                                td { (r.name) }
                                td { code.args { (short(&r.args, 80)) } }
                                td { (r.retried) }
                                td { (time(r.when)) }
                                td.error { (short(&r.note, 80)) }
                            }
                        }
                    }
                }
            }
            @if all && !actions.is_empty() && state != TaskState::Active && state != TaskState::Completed {
                div.actions {
                    "every " (state.as_str()) " task of this queue: "
                    @for (action, label) in actions {
                        (button(ctx, &format!("/queues/{qe}/all"), &format!("{label} all"), "", &[("action", action), ("state", state.as_str())]))
                    }
                }
            }
        }
    }
}

/// How failures group: the reason's first line, with the retry count and digits left out
/// (`timeout after 30s` and `timeout after 60s` are one failure).
pub(crate) fn group_key(reason: &str) -> String {
    let first = reason.lines().next().unwrap_or("");
    let first = first.split(" (retries exhausted").next().unwrap_or(first);
    let mut out = String::with_capacity(first.len());
    for c in first.chars().take(200) {
        if c.is_ascii_digit() {
            if !out.ends_with('#') {
                out.push('#');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// How many archived tasks the failures page reads at most (the Redis archive keeps 10,000
/// per queue by default).
pub(crate) const FAILURES_SCAN: usize = 10_000;

/// The archive of `queue`, read up to [`FAILURES_SCAN`], grouped by [`group_key`]: per group,
/// the ids, the newest example and when it was archived.
pub(crate) async fn groups(ctx: &Ctx, queue: &str) -> Result<BTreeMap<String, (Vec<String>, TaskInfo)>, Error> {
    let mut out: BTreeMap<String, (Vec<String>, TaskInfo)> = BTreeMap::new();
    let mut offset = 0;
    while offset < FAILURES_SCAN {
        let batch = ctx.app.ins.tasks(queue, TaskState::Archived, Page::new(offset, 500)).await?;
        let n = batch.len();
        for t in batch {
            let key = group_key(t.reason.as_deref().unwrap_or(""));
            let e = out.entry(key).or_insert_with(|| (Vec::new(), t.clone()));
            e.0.push(t.id.to_string());
        }
        if n < 500 {
            break;
        }
        offset += n;
    }
    Ok(out)
}

/// The archive grouped by failure reason, with a count per group, and replay or delete per
/// group.
pub(crate) async fn failures(ctx: Ctx, Path(queue): Path<String>) -> Response {
    let groups = match groups(&ctx, &queue).await {
        Ok(g) => g,
        Err(e) => return failure(&ctx, &e),
    };
    let mut sorted: Vec<_> = groups.into_iter().collect();
    sorted.sort_by_key(|(_, (ids, _))| std::cmp::Reverse(ids.len()));
    let qe = encode(&queue);
    let body = html! {
        p.crumbs { a href=(ctx.at("/")) { "Queues" } " / " a href=(ctx.at(&format!("/queues/{qe}?state=archived"))) { (queue) } " / " }
        h1 { "Failures by reason" }
        @if sorted.is_empty() { p.muted { "The archive is empty." } }
        table.groups {
            thead { tr { th.n { "tasks" } th { "reason" } th { "newest" } th { "" } } }
            tbody {
                @for (key, (ids, example)) in &sorted {
                    tr {
                        td.n { (ids.len()) }
                        td.error { (key) br; span.muted { "e.g. " a href=(ctx.at(&format!("/tasks/{}", encode(example.id.as_str())))) { (example.name()) } } }
                        td { (time(example.archived_at)) }
                        td {
                            @if !ctx.app.read_only {
                                (button(&ctx, &format!("/queues/{qe}/failures"), "Run again", "small", &[("action", "run"), ("group", key)]))
                                (button(&ctx, &format!("/queues/{qe}/failures"), "Delete", "small danger", &[("action", "delete"), ("group", key)]))
                            }
                        }
                    }
                }
            }
        }
        p.muted { "Read from the newest " (FAILURES_SCAN) " archived tasks at most." }
    };
    page(&ctx, "Failures", Nav::Queues, body)
}

#[cfg(test)]
mod tests {
    use super::group_key;

    #[test]
    fn failures_group_without_numbers_or_retry_counts() {
        assert_eq!(group_key("timeout after 30s (retries exhausted: 3 of 3)"), "timeout after #s");
        assert_eq!(group_key("timeout after 60s\nstack"), "timeout after #s");
        assert_eq!(group_key("archived by operator"), "archived by operator");
    }
}
