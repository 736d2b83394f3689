#[conveyor::task]
async fn greet(name: &str) -> Result<(), conveyor::TaskError> {
    let _ = name;
    Ok(())
}

#[conveyor::task]
async fn sum(values: &[u64]) -> Result<u64, conveyor::TaskError> {
    Ok(values.iter().sum())
}

fn main() {}
