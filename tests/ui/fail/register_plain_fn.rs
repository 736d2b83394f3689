async fn not_a_task(_: i64) -> Result<(), conveyor::TaskError> {
    Ok(())
}

fn main() {
    let broker = std::sync::Arc::new(conveyor::memory::MemoryBroker::new());
    let backend = std::sync::Arc::new(conveyor::memory::MemoryBackend::new());
    let _ = conveyor::Worker::builder(broker, backend).register(not_a_task);
}
