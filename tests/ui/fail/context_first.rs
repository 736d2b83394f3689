use conveyor::TaskContext;

#[conveyor::task]
async fn fetch(ctx: TaskContext, id: u64) -> Result<(), conveyor::TaskError> {
    let _ = (ctx, id);
    Ok(())
}

fn main() {}
