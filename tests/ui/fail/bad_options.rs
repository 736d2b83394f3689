#[conveyor::task(retries = 3)]
async fn a(args: i64) -> Result<i64, conveyor::TaskError> {
    Ok(args)
}

#[conveyor::task(timeout = "soon")]
async fn b(args: i64) -> Result<i64, conveyor::TaskError> {
    Ok(args)
}

#[conveyor::task(max_retry = "3")]
async fn c(args: i64) -> Result<i64, conveyor::TaskError> {
    Ok(args)
}

#[conveyor::task(queue = "")]
async fn d(args: i64) -> Result<i64, conveyor::TaskError> {
    Ok(args)
}
fn main() {}
