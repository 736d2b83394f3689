#[conveyor::task]
async fn add(a: i64, b: i64) -> Result<i64, conveyor::TaskError> {
    Ok(a + b)
}

fn main() {}
