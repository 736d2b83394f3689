//! What the commands print: aligned tables for people, one JSON document for scripts.

use std::time::SystemTime;

use conveyor::inspect::cron::CronEntry;
use conveyor::inspect::history::{History, Point};
use conveyor::inspect::{TaskDetail, TaskInfo, WorkerInfo};
use conveyor::scheduler::FireRecord;
use conveyor::{Error, Payload, QueueStats, TaskId, TaskRecord, TaskState};
use serde_json::{json, Value};

/// The output mode.
pub struct Out {
    pub json: bool,
}

fn time(t: Option<SystemTime>) -> Value {
    t.map_or(Value::Null, |t| Value::String(humantime::format_rfc3339_seconds(t).to_string()))
}

fn text(t: Option<SystemTime>) -> String {
    t.map_or_else(|| "-".to_owned(), |t| humantime::format_rfc3339_seconds(t).to_string())
}

/// Prints rows as columns, padded to the widest cell.
fn table(head: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(head.iter().map(|h| (*h).to_owned()).collect());
    for r in rows {
        line(r.clone());
    }
}

/// The first line of `s`, at most `n` characters.
fn short(s: &str, n: usize) -> String {
    let first = s.lines().next().unwrap_or("");
    if first.chars().count() > n {
        format!("{}…", first.chars().take(n - 1).collect::<String>())
    } else {
        first.to_owned()
    }
}

fn record_json(r: &TaskRecord) -> Value {
    let attempts: Vec<Value> = r
        .attempts
        .iter()
        .map(|a| {
            json!({
                "number": a.number, "started_at": time(Some(a.started_at)), "ended_at": time(Some(a.ended_at)),
                "duration_ms": a.duration().as_millis() as u64, "outcome": a.outcome.as_str(),
                "error": a.error, "worker": a.worker,
            })
        })
        .collect();
    json!({
        "id": r.id.as_str(), "name": r.name, "queue": r.queue,
        "state": r.state.as_str(), "retried": r.retried, "max_retry": r.max_retry,
        "error": r.error, "result": r.result.as_ref().and_then(|v| serde_json::from_str::<Value>(v.get()).ok()),
        "created_at": time(Some(r.created_at)), "updated_at": time(Some(r.updated_at)),
        "attempts": attempts,
    })
}

fn task_json(t: &TaskInfo) -> Value {
    let (args, retried, max_retry, error, created) = match t.task() {
        Some(m) => (
            serde_json::from_str(m.args.get()).unwrap_or(Value::Null),
            json!(m.retried),
            json!(m.max_retry),
            json!(m.last_error),
            time(Some(m.created_at)),
        ),
        None => (Value::Null, Value::Null, Value::Null, Value::Null, Value::Null),
    };
    json!({
        "id": t.id.as_str(), "queue": t.queue, "state": t.state.as_str(), "name": t.name(),
        "args": args, "retried": retried, "max_retry": max_retry, "last_error": error,
        "enqueued_at": created, "next_run_at": time(t.next_run_at),
        "reason": t.reason, "archived_at": time(t.archived_at),
        "decoded": t.task().is_some(),
    })
}

impl Out {
    pub fn queues(&self, qs: &[QueueStats]) {
        if self.json {
            let v: Vec<Value> = qs
                .iter()
                .map(|s| {
                    json!({
                        "queue": s.queue, "pending": s.pending, "scheduled": s.scheduled - s.retry.min(s.scheduled),
                        "retry": s.retry, "active": s.active, "archived": s.archived, "paused": s.paused,
                        "latency_ms": s.latency.map(|l| l.as_millis() as u64), "completed": s.completed,
                    })
                })
                .collect();
            println!("{}", Value::Array(v));
            return;
        }
        if qs.is_empty() {
            println!("no queues yet");
            return;
        }
        let rows: Vec<Vec<String>> = qs
            .iter()
            .map(|s| {
                vec![
                    s.queue.clone(),
                    s.pending.to_string(),
                    (s.scheduled - s.retry.min(s.scheduled)).to_string(),
                    s.retry.to_string(),
                    s.active.to_string(),
                    s.archived.to_string(),
                    s.completed.map_or("-".to_owned(), |n| n.to_string()),
                    s.latency.map_or("-".to_owned(), |l| format!("{:.1}s", l.as_secs_f64())),
                    if s.paused { "paused".into() } else { "".into() },
                ]
            })
            .collect();
        table(&["QUEUE", "PENDING", "SCHEDULED", "RETRY", "ACTIVE", "ARCHIVED", "COMPLETED", "LATENCY", ""], &rows);
    }

    /// Completed tasks, from their records.
    pub fn completed(&self, rs: &[TaskRecord]) {
        if self.json {
            println!("{}", Value::Array(rs.iter().map(record_json).collect()));
            return;
        }
        if rs.is_empty() {
            println!("no tasks");
            return;
        }
        let rows: Vec<Vec<String>> = rs
            .iter()
            .map(|r| {
                let result = r.result.as_ref().map_or(String::new(), |v| v.get().to_owned());
                vec![
                    r.id.to_string(),
                    r.name.clone(),
                    r.retried.to_string(),
                    text(Some(r.updated_at)),
                    short(&result, 60),
                ]
            })
            .collect();
        table(&["ID", "NAME", "RETRIED", "COMPLETED AT", "RESULT"], &rows);
    }

    pub fn tasks(&self, ts: &[TaskInfo]) {
        if self.json {
            println!("{}", Value::Array(ts.iter().map(task_json).collect()));
            return;
        }
        if ts.is_empty() {
            println!("no tasks");
            return;
        }
        let rows: Vec<Vec<String>> = ts
            .iter()
            .map(|t| {
                let (attempts, err) = match t.task() {
                    Some(m) => (format!("{}/{}", m.retried, m.max_retry), m.last_error.clone().unwrap_or_default()),
                    None => ("-".into(), "payload did not decode".into()),
                };
                let when = match t.state {
                    TaskState::Archived => text(t.archived_at),
                    _ => text(t.next_run_at),
                };
                let why = t.reason.clone().unwrap_or(err);
                vec![t.id.to_string(), t.name().to_owned(), t.state.to_string(), attempts, when, short(&why, 60)]
            })
            .collect();
        table(&["ID", "NAME", "STATE", "RETRIED", "WHEN", "ERROR"], &rows);
    }

    pub fn task(&self, d: &TaskDetail) {
        let rec = d.record.as_ref();
        if self.json {
            let record = rec.map(record_json);
            let v = json!({
                "id": d.id.as_str(), "queue": d.queue(), "state": d.state().as_str(),
                "broker": d.info.as_ref().map(task_json), "record": record,
            });
            println!("{v}");
            return;
        }
        let mut lines: Vec<(&str, String)> =
            vec![("id", d.id.to_string()), ("queue", d.queue().to_owned()), ("state", d.state().to_string())];
        if let Some(i) = &d.info {
            lines.push(("name", i.name().to_owned()));
            match &i.payload {
                Payload::Task(m) => {
                    lines.push(("args", m.args.get().to_owned()));
                    lines.push(("retried", format!("{} of {}", m.retried, m.max_retry)));
                    lines.push(("enqueued at", text(Some(m.created_at))));
                    if let Some(e) = &m.last_error {
                        lines.push(("last error", e.clone()));
                    }
                }
                Payload::Undecodable { error, .. } => lines.push(("payload", format!("did not decode: {error}"))),
            }
            if i.next_run_at.is_some() {
                lines.push(("next run at", text(i.next_run_at)));
            }
            if let Some(r) = &i.reason {
                lines.push(("archived", format!("{} ({r})", text(i.archived_at))));
            }
        }
        if let Some(r) = rec {
            lines.push(("record", format!("{}, retried {} of {}", r.state, r.retried, r.max_retry)));
            lines.push(("updated at", text(Some(r.updated_at))));
            if let Some(e) = &r.error {
                lines.push(("error", e.clone()));
            }
            if let Some(v) = &r.result {
                lines.push(("result", v.get().to_owned()));
            }
        }
        for (k, v) in lines {
            println!("{k:<12} {v}");
        }
        if let Some(r) = rec.filter(|r| !r.attempts.is_empty()) {
            println!();
            let rows: Vec<Vec<String>> = r
                .attempts
                .iter()
                .map(|a| {
                    vec![
                        a.number.to_string(),
                        text(Some(a.started_at)),
                        format!("{} ms", a.duration().as_millis()),
                        a.outcome.to_string(),
                        a.worker.clone().unwrap_or_default(),
                        short(a.error.as_deref().unwrap_or(""), 60),
                    ]
                })
                .collect();
            table(&["ATTEMPT", "STARTED", "TOOK", "OUTCOME", "WORKER", "ERROR"], &rows);
        }
    }

    pub fn workers(&self, ws: &[WorkerInfo]) {
        if self.json {
            let v: Vec<Value> = ws
                .iter()
                .map(|w| {
                    let running: Vec<Value> = w
                        .running
                        .iter()
                        .map(|r| json!({"id": r.id.as_str(), "name": r.name, "started_at": time(Some(r.started_at))}))
                        .collect();
                    json!({
                        "id": w.id, "host": w.host, "pid": w.pid, "queues": w.queues, "concurrency": w.concurrency,
                        "running": running, "started_at": time(Some(w.started_at)),
                        "last_beat": time(Some(w.last_beat)), "version": w.version,
                    })
                })
                .collect();
            println!("{}", Value::Array(v));
            return;
        }
        if ws.is_empty() {
            println!("no workers running");
            return;
        }
        let rows: Vec<Vec<String>> = ws
            .iter()
            .map(|w| {
                let queues: Vec<String> = w.queues.iter().map(|(q, n)| format!("{q}:{n}")).collect();
                vec![
                    w.id.chars().take(8).collect(),
                    w.host.clone(),
                    w.pid.to_string(),
                    queues.join(","),
                    format!("{}/{}", w.running.len(), w.concurrency),
                    text(Some(w.started_at)),
                    text(Some(w.last_beat)),
                ]
            })
            .collect();
        table(&["ID", "HOST", "PID", "QUEUES", "BUSY", "STARTED", "LAST BEAT"], &rows);
    }

    pub fn history(&self, h: &History) {
        let points = |ps: &[Point]| -> Vec<Value> {
            ps.iter().map(|p| json!({"at": time(Some(p.at)), "processed": p.processed, "failed": p.failed})).collect()
        };
        if self.json {
            println!("{}", json!({"minutes": points(&h.minutes), "days": points(&h.days)}));
            return;
        }
        // Minutes summed by hour, for a screen.
        let mut hours: Vec<(SystemTime, u64, u64)> = Vec::new();
        for p in &h.minutes {
            let secs = p.at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
            let hour = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs / 3600 * 3600);
            match hours.last_mut() {
                Some(last) if last.0 == hour => {
                    last.1 += p.processed;
                    last.2 += p.failed;
                }
                _ => hours.push((hour, p.processed, p.failed)),
            }
        }
        let days: Vec<(SystemTime, u64, u64)> = h.days.iter().map(|p| (p.at, p.processed, p.failed)).collect();
        let rows = |ps: &[(SystemTime, u64, u64)]| -> Vec<Vec<String>> {
            ps.iter().map(|(at, p, f)| vec![text(Some(*at)), p.to_string(), f.to_string()]).collect()
        };
        if hours.is_empty() && days.is_empty() {
            println!("no tasks processed in the last 90 days");
            return;
        }
        println!("last 24 hours, by hour");
        table(&["HOUR", "PROCESSED", "FAILED"], &rows(&hours));
        println!();
        println!("last 90 days, by day");
        table(&["DAY", "PROCESSED", "FAILED"], &rows(&days));
    }

    pub fn cron(&self, es: &[CronEntry]) {
        if self.json {
            let v: Vec<Value> = es
                .iter()
                .map(|e| {
                    json!({
                        "id": e.id, "spec": e.spec, "zone": e.zone, "scheduler": e.scheduler,
                        "next_fire": time(e.next_fire), "last_fire": time(e.last_fire.as_ref().map(|f| f.fire_time)),
                        "last_task": e.last_fire.as_ref().map(|f| f.task_id.to_string()),
                    })
                })
                .collect();
            println!("{}", Value::Array(v));
            return;
        }
        if es.is_empty() {
            println!("no periodic entries (no scheduler has synced one lately)");
            return;
        }
        let rows: Vec<Vec<String>> = es
            .iter()
            .map(|e| {
                let last = e.last_fire.as_ref().map(|f| f.fire_time);
                vec![e.id.clone(), e.spec.clone(), e.zone.clone(), text(e.next_fire), text(last)]
            })
            .collect();
        table(&["ID", "SPEC", "ZONE", "NEXT", "LAST"], &rows);
    }

    pub fn fires(&self, fs: &[FireRecord]) {
        if self.json {
            let v: Vec<Value> = fs
                .iter()
                .map(|f| {
                    json!({
                        "entry": f.entry, "fire_time": time(Some(f.fire_time)), "task_id": f.task_id.as_str(),
                        "enqueued_at": time(Some(f.enqueued_at)), "scheduler": f.scheduler, "catch_up": f.catch_up,
                    })
                })
                .collect();
            println!("{}", Value::Array(v));
            return;
        }
        if fs.is_empty() {
            println!("no fires recorded");
            return;
        }
        let rows: Vec<Vec<String>> = fs
            .iter()
            .map(|f| {
                vec![text(Some(f.fire_time)), f.task_id.to_string(), text(Some(f.enqueued_at)), f.scheduler.clone()]
            })
            .collect();
        table(&["TICK", "TASK", "ENQUEUED", "SCHEDULER"], &rows);
    }

    pub fn action(&self, id: &str, verb: &str, err: Option<&Error>) {
        match (self.json, err) {
            (true, None) => println!("{}", json!({"id": id, "ok": true, "action": verb})),
            (true, Some(e)) => println!("{}", json!({"id": id, "ok": false, "error": e.to_string()})),
            (false, None) => println!("{verb} {id}"),
            (false, Some(e)) => eprintln!("error: {e}"),
        }
    }

    pub fn count(&self, verb: &str, n: u64) {
        if self.json {
            println!("{}", json!({"action": verb, "tasks": n}));
        } else {
            println!("{verb} {n} task(s)");
        }
    }

    pub fn done(&self, what: &str) {
        if self.json {
            println!("{}", json!({"ok": true, "done": what}));
        } else {
            println!("{what}");
        }
    }

    pub fn enqueued(&self, id: &TaskId, queue: &str, state: TaskState) {
        if self.json {
            println!("{}", json!({"id": id.as_str(), "queue": queue, "state": state.as_str()}));
        } else {
            println!("enqueued {id} on `{queue}` ({state})");
        }
    }
}
