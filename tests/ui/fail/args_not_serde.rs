struct NotSerde;

#[conveyor::task]
async fn a(args: NotSerde) -> Result<(), conveyor::TaskError> {
    let _ = args;
    Ok(())
}
fn main() {}
