/// Not defined with `#[conveyor::task]`.
struct NotATask;

fn main() {
    let broker = std::sync::Arc::new(conveyor::memory::MemoryBroker::new());
    let backend = std::sync::Arc::new(conveyor::memory::MemoryBackend::new());
    let _ = conveyor::Worker::builder(broker, backend).register(NotATask);
}
