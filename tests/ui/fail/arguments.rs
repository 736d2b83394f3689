#[conveyor::task]
async fn none() -> Result<(), conveyor::TaskError> {
    Ok(())
}

#[conveyor::task]
async fn three(a: i64, b: i64, c: i64) -> Result<i64, conveyor::TaskError> {
    Ok(a + b + c)
}

#[conveyor::task]
async fn generic<T: serde::Serialize>(a: T) -> Result<(), conveyor::TaskError> {
    let _ = a;
    Ok(())
}
fn main() {}
