//! Tasks the workflow behaviours run.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use conveyor::{TaskContext, TaskError};
use serde_json::Value;

#[conveyor::task(name = "wf:add")]
pub async fn add(args: (i64, i64)) -> Result<i64, TaskError> {
    Ok(args.0 + args.1)
}

#[conveyor::task(name = "wf:double")]
pub async fn double(n: i64) -> Result<i64, TaskError> {
    Ok(n * 2)
}

#[conveyor::task(name = "wf:sum")]
pub async fn sum(ns: Vec<i64>) -> Result<i64, TaskError> {
    Ok(ns.iter().sum())
}

#[conveyor::task(name = "wf:fail")]
pub async fn fail(msg: String) -> Result<i64, TaskError> {
    Err(TaskError::skip_retry(msg))
}

fn logs() -> &'static Mutex<HashMap<String, Vec<Value>>> {
    static LOGS: OnceLock<Mutex<HashMap<String, Vec<Value>>>> = OnceLock::new();
    LOGS.get_or_init(Default::default)
}

/// What `record` saw under `key`, one entry per run.
pub fn recorded(key: &str) -> Vec<Value> {
    logs().lock().unwrap().get(key).cloned().unwrap_or_default()
}

/// Records the previous result (or failure) under `key`, and the task that launched it (its
/// `conveyor-parent` header) under `key:parent`; returns the previous result.
#[conveyor::task(name = "wf:record")]
pub async fn record(key: String, ctx: TaskContext) -> Result<Value, TaskError> {
    let prev = match ctx.previous_result::<Value>() {
        Some(r) => r.map_err(TaskError::skip_retry)?,
        None => Value::Null,
    };
    let parent = ctx.header(conveyor::PARENT_HEADER).map_or(Value::Null, |p| Value::String(p.to_owned()));
    logs().lock().unwrap().entry(format!("{key}:parent")).or_default().push(parent);
    logs().lock().unwrap().entry(key).or_default().push(prev.clone());
    Ok(prev)
}
