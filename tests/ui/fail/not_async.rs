#[conveyor::task]
fn add(args: (i64, i64)) -> Result<i64, conveyor::TaskError> {
    Ok(args.0 + args.1)
}
fn main() {}
