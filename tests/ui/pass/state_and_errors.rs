//! Handler state as `Data<T>` parameters, in any order with the context; errors that are
//! boxed, strings or any std error; a result that is only `Serialize`.
use conveyor::{Data, TaskContext, TaskError};

struct Db {
    rows: u64,
}

#[derive(Clone)]
struct Mailer;

#[conveyor::task]
async fn count(table: String, db: Data<Db>, ctx: TaskContext) -> Result<u64, TaskError> {
    let _ = (table, ctx.retried());
    Ok(db.rows)
}

#[conveyor::task]
async fn notify(user: u64, ctx: TaskContext, _mailer: Data<Mailer>, db: Data<Db>) -> Result<(), TaskError> {
    let _ = (user, ctx.id(), db.rows);
    Ok(())
}

#[conveyor::task]
async fn boxed(n: u64) -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
    if n == 0 {
        return Err("zero".into());
    }
    Ok(n)
}

#[conveyor::task]
async fn stringly(n: u64) -> Result<u64, String> {
    if n == 0 {
        return Err(format!("{n} is zero"));
    }
    Ok(n)
}

#[derive(serde::Serialize)]
struct Report {
    lines: u64,
}

#[conveyor::task]
async fn report(n: u64) -> Result<Report, std::io::Error> {
    Ok(Report { lines: n })
}

fn main() {
    use conveyor::Task;
    let needs: Vec<&str> = notify::required_data().into_iter().map(|(_, name)| name).collect();
    assert_eq!(needs.len(), 2);
    assert!(count::required_data()[0].1.ends_with("Db"));
    let _direct = count::call("t".into(), Data::new(Db { rows: 1 }), TaskContext::new(
        std::sync::Arc::new(conveyor::TaskMessage::with_args("count", &"t").unwrap()),
        conveyor::Shutdown::default(),
    ));
    let _ = (boxed, stringly, report);
}
