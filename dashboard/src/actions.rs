//! The action routes (none in read-only mode): every one a `POST` whose form carries the
//! page's token (see `guard`). An action on every task of a state, or on a failure group, is
//! asked to be confirmed first, on a page of its own.

use axum::body::Bytes;
use axum::extract::Path;
use axum::response::{IntoResponse, Redirect, Response};
use conveyor::{Error, TaskId, TaskState};
use maud::html;

use crate::guard::Ctx;
use crate::html::{csrf, encode, failure, page, Nav};
use crate::queue::{actions_for, groups};

type Form = Vec<(String, String)>;

fn form(body: &Bytes) -> Form {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(f: &'a Form, name: &str) -> &'a str {
    f.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
}

/// Back to the page the form was on, if it is one of the dashboard's, else to `fallback`.
fn back(ctx: &Ctx, f: &Form, fallback: &str) -> Response {
    let to = field(f, "back");
    Redirect::to(if ctx.inside(to) { to } else { fallback }).into_response()
}

fn state_of(f: &Form) -> Result<TaskState, Error> {
    field(f, "state").parse()
}

/// Checks the token; the action's result as a redirect, or an error page.
async fn act<F, Fut>(ctx: &Ctx, body: &Bytes, run: F) -> Response
where
    F: FnOnce(Form) -> Fut,
    Fut: std::future::Future<Output = Result<Response, Error>>,
{
    let f = form(body);
    if let Err(denied) = ctx.check_form(&f) {
        return *denied;
    }
    match run(f).await {
        Ok(r) => r,
        Err(e) => failure(ctx, &e),
    }
}

pub(crate) async fn pause(ctx: Ctx, Path(queue): Path<String>, body: Bytes) -> Response {
    let ctx = &ctx;
    act(ctx, &body, |f| async move {
        ctx.app.ins.pause(&queue).await?;
        Ok(back(ctx, &f, &ctx.at("/")))
    })
    .await
}

pub(crate) async fn resume(ctx: Ctx, Path(queue): Path<String>, body: Bytes) -> Response {
    let ctx = &ctx;
    act(ctx, &body, |f| async move {
        ctx.app.ins.resume(&queue).await?;
        Ok(back(ctx, &f, &ctx.at("/")))
    })
    .await
}

/// One task's action by id.
async fn one(ctx: &Ctx, action: &str, id: &TaskId) -> Result<(), Error> {
    let ins = &ctx.app.ins;
    match action {
        "run" => ins.run(id).await,
        "archive" => ins.archive(id).await,
        "delete" => ins.delete(id).await,
        "cancel" => ins.cancel(id).await,
        other => Err(Error::InvalidOption { option: "action", reason: format!("unknown action `{other}`") }),
    }
}

/// `POST /tasks/{id}/{action}`: back to the task (to its queue once deleted).
pub(crate) async fn task(ctx: Ctx, Path((id, action)): Path<(String, String)>, body: Bytes) -> Response {
    let ctx = &ctx;
    act(ctx, &body, |_| async move {
        let id = TaskId::from(id.as_str());
        let queue = ctx.app.ins.task(&id).await?.queue().to_owned();
        one(ctx, &action, &id).await?;
        Ok(if action == "delete" {
            Redirect::to(&ctx.at(&format!("/queues/{}", encode(&queue)))).into_response()
        } else {
            Redirect::to(&ctx.at(&format!("/tasks/{}", encode(id.as_str())))).into_response()
        })
    })
    .await
}

/// The selected tasks of a queue page: each acted on; back to the page if every one went,
/// else a page saying which did not, and why.
pub(crate) async fn bulk(ctx: Ctx, Path(queue): Path<String>, body: Bytes) -> Response {
    let ctx = &ctx;
    act(ctx, &body, |f| async move {
        let action = field(&f, "action").to_owned();
        let ids: Vec<TaskId> = f.iter().filter(|(k, _)| k == "id").map(|(_, v)| TaskId::from(v.as_str())).collect();
        let mut failed = Vec::new();
        for id in &ids {
            if let Err(e) = one(ctx, &action, id).await {
                failed.push(e.to_string());
            }
        }
        if failed.is_empty() {
            return Ok(back(ctx, &f, &ctx.at(&format!("/queues/{}", encode(&queue)))));
        }
        let body = html! {
            h1 { (action) ": " (ids.len() - failed.len()) " of " (ids.len()) " done" }
            ul { @for e in &failed { li.error { (e) } } }
            p { a href=(ctx.at(&format!("/queues/{}", encode(&queue)))) { "Back to " (queue) } }
        };
        Ok(page(ctx, "Bulk action", Nav::Queues, body))
    })
    .await
}

/// A confirmation page: `question`, and a button that posts the same form with `confirm=yes`.
fn confirm(ctx: &Ctx, path: &str, question: &str, f: &Form, cancel: &str) -> Response {
    let body = html! {
        h1 { "Are you sure?" }
        p.question { (question) }
        form method="post" action=(ctx.at(path)) {
            (csrf(ctx))
            @for (k, v) in f { @if k != "csrf" && k != "confirm" { input type="hidden" name=(k) value=(v); } }
            input type="hidden" name="confirm" value="yes";
            button.danger type="submit" { "Yes, do it" }
            " " a href=(cancel) { "Cancel" }
        }
    };
    page(ctx, "Confirm", Nav::Queues, body)
}

fn label(state: TaskState, action: &str) -> Result<&'static str, Error> {
    actions_for(state).iter().find(|(a, _)| *a == action).map(|(_, l)| *l).ok_or_else(|| Error::InvalidOption {
        option: "action",
        reason: format!("`{action}` does not apply to {state} tasks"),
    })
}

/// Every task of a queue in one state, after a confirmation.
pub(crate) async fn all(ctx: Ctx, Path(queue): Path<String>, body: Bytes) -> Response {
    let ctx = &ctx;
    act(ctx, &body, |f| async move {
        let (state, action) = (state_of(&f)?, field(&f, "action").to_owned());
        let label = label(state, &action)?;
        let tab = ctx.at(&format!("/queues/{}?state={}", encode(&queue), state.as_str()));
        if field(&f, "confirm") != "yes" {
            let stats = ctx.app.ins.queue(&queue).await?;
            let n = crate::queue::count(&stats, state).unwrap_or(0);
            let q = format!("{label}: all {n} {state} tasks of queue `{queue}`?");
            return Ok(confirm(ctx, &format!("/queues/{}/all", encode(&queue)), &q, &f, &tab));
        }
        let ins = &ctx.app.ins;
        match action.as_str() {
            "run" => ins.run_all(&queue, state).await?,
            "archive" => ins.archive_all(&queue, state).await?,
            "delete" => ins.delete_all(&queue, state).await?,
            other => {
                return Err(Error::InvalidOption { option: "action", reason: format!("`{other}` has no bulk form") })
            }
        };
        Ok(Redirect::to(&tab).into_response())
    })
    .await
}

/// Every archived task of one failure group, after a confirmation: run again or deleted.
pub(crate) async fn group(ctx: Ctx, Path(queue): Path<String>, body: Bytes) -> Response {
    let ctx = &ctx;
    act(ctx, &body, |f| async move {
        let (action, key) = (field(&f, "action").to_owned(), field(&f, "group").to_owned());
        let label = label(TaskState::Archived, &action)?;
        let path = format!("/queues/{}/failures", encode(&queue));
        let ids = groups(ctx, &queue).await?.remove(&key).map(|(ids, _)| ids).unwrap_or_default();
        if field(&f, "confirm") != "yes" {
            let q = format!("{label}: the {} archived tasks of `{queue}` that failed with “{key}”?", ids.len());
            return Ok(confirm(ctx, &path, &q, &f, &ctx.at(&path)));
        }
        for id in ids {
            match one(ctx, &action, &TaskId::from(id)).await {
                // Run or deleted by someone else meanwhile.
                Ok(()) | Err(Error::NotFound { .. } | Error::InvalidTaskState { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Redirect::to(&ctx.at(&path)).into_response())
    })
    .await
}
