use conveyor::{Task, TaskContext, TaskError};
use std::time::Duration;

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Welcome {
    user_id: u64,
}

#[derive(Debug)]
pub struct SmtpError;
impl std::fmt::Display for SmtpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("smtp down")
    }
}
impl std::error::Error for SmtpError {}

/// Sends the welcome email.
#[conveyor::task(name = "email:welcome", queue = "emails", max_retry = 5, timeout = "30s")]
pub async fn send_welcome(args: Welcome, ctx: TaskContext) -> Result<(), SmtpError> {
    let _ = (args.user_id, ctx.retried());
    Ok(())
}

#[conveyor::task]
async fn add(args: (i64, i64)) -> Result<i64, TaskError> {
    Ok(args.0 + args.1)
}

fn main() {
    assert_eq!(send_welcome::NAME, "email:welcome");
    let d = send_welcome::defaults();
    assert_eq!((d.queue, d.max_retry, d.timeout), ("emails", 5, Some(Duration::from_secs(30))));
    assert_eq!(add::NAME, "add");
    assert_eq!(add::defaults().queue, "default");
    let _direct = add::call((1, 2));
}
