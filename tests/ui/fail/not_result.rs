#[conveyor::task]
async fn add(args: (i64, i64)) -> i64 {
    args.0 + args.1
}

#[conveyor::task]
async fn nothing(args: i64) {
    let _ = args;
}
fn main() {}
