//! Queue names and declarations: a quorum queue per Conveyor queue, an archive queue, and
//! delay buckets (classic queues with a message TTL that dead-letter into the main queue).

use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::Channel;

/// Delay buckets: 100 ms × 4^k, k = 0..13 (100 ms to about 19 days).
pub(crate) const BUCKETS_MS: [u64; 13] = {
    let mut b = [0u64; 13];
    let mut i = 0;
    let mut v = 100;
    while i < 13 {
        b[i] = v;
        v *= 4;
        i += 1;
    }
    b
};

/// The bucket to wait in for `remaining`: the largest not longer than it (the smallest when
/// shorter than all), so a task is never early; it hops again until due.
pub(crate) fn bucket_for(remaining: Duration) -> u64 {
    let ms = remaining.as_millis() as u64;
    BUCKETS_MS.iter().rev().copied().find(|b| *b <= ms).unwrap_or(BUCKETS_MS[0])
}

pub(crate) struct Names {
    pub(crate) main: String,
    pub(crate) archive: String,
    prefix: String,
}

impl Names {
    pub(crate) fn new(prefix: &str, queue: &str) -> Self {
        let main = format!("{prefix}.{queue}");
        Names { archive: format!("{main}.archive"), prefix: main.clone(), main }
    }

    pub(crate) fn bucket(&self, ms: u64) -> String {
        format!("{}.delay.{ms}", self.prefix)
    }
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() }
}

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v))
}

/// Declares the main queue and returns its ready-message count.
pub(crate) async fn declare_main(ch: &Channel, n: &Names) -> lapin::Result<u32> {
    let mut args = FieldTable::default();
    args.insert(ShortString::from("x-queue-type"), s("quorum"));
    // Conveyor counts attempts itself; this is only a backstop against a message that crashes
    // every consumer (RabbitMQ 4 defaults to 20 and then drops it): dead-letter to the archive.
    args.insert(ShortString::from("x-delivery-limit"), AMQPValue::LongLongInt(1000));
    args.insert(ShortString::from("x-dead-letter-exchange"), s(""));
    args.insert(ShortString::from("x-dead-letter-routing-key"), s(&n.archive));
    Ok(ch.queue_declare(n.main.as_str().into(), durable(), args).await?.message_count())
}

/// Declares the archive queue and returns its message count.
pub(crate) async fn declare_archive(ch: &Channel, n: &Names) -> lapin::Result<u32> {
    Ok(ch.queue_declare(n.archive.as_str().into(), durable(), FieldTable::default()).await?.message_count())
}

/// Declares every delay bucket and returns the messages waiting in them.
pub(crate) async fn declare_buckets(ch: &Channel, n: &Names) -> lapin::Result<u64> {
    let mut total = 0u64;
    for ms in BUCKETS_MS {
        let mut args = FieldTable::default();
        args.insert(ShortString::from("x-message-ttl"), AMQPValue::LongLongInt(ms as i64));
        args.insert(ShortString::from("x-dead-letter-exchange"), s(""));
        args.insert(ShortString::from("x-dead-letter-routing-key"), s(&n.main));
        total += u64::from(ch.queue_declare(n.bucket(ms).as_str().into(), durable(), args).await?.message_count());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_never_exceed_the_remaining_delay() {
        assert_eq!(bucket_for(Duration::from_millis(50)), 100);
        assert_eq!(bucket_for(Duration::from_millis(100)), 100);
        assert_eq!(bucket_for(Duration::from_millis(399)), 100);
        assert_eq!(bucket_for(Duration::from_millis(400)), 400);
        assert_eq!(bucket_for(Duration::from_secs(3600)), 1_638_400);
        assert_eq!(bucket_for(Duration::from_secs(100 * 86_400)), BUCKETS_MS[12]);
    }
}
