//! Queue names and declarations: a quorum queue per Conveyor queue, an archive quorum queue,
//! and delay buckets (quorum queues with a message TTL that dead-letter into the main queue).
//!
//! Every queue a task passes through is a replicated quorum queue, and a bucket's expired tasks
//! dead-letter into the main queue `at-least-once` (RabbitMQ ≥ 3.10): RabbitMQ keeps the
//! message in its bucket until the main queue confirmed it, so a main queue without a leader
//! delays a task, never drops it. That strategy needs `x-overflow: reject-publish` on the
//! bucket (no length limit is set, so it never refuses).

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

/// A failed declaration as a broker error: one RabbitMQ refused as conflicting says what to do.
pub(crate) fn declare_err(n: &Names, e: lapin::Error) -> conveyor_core::Error {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    let conflict = matches!(e.kind(), lapin::ErrorKind::ProtocolError(p)
        if *p.kind() == AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED));
    if !conflict {
        return crate::failure::err(e);
    }
    let why = format!(
        "a queue of `{}` exists with other settings than this version of Conveyor declares (one \
         declared by an older version, whose delay buckets and archive were classic queues, or by \
         hand): drain and delete the queue's delay and archive queues, or use another `prefix` ({e})",
        n.main
    );
    crate::failure::fail(conveyor_core::FailureKind::Rejected, why)
}

/// A quorum queue's arguments, dead-lettering at least once into `target` if given.
fn quorum(target: Option<&str>) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(ShortString::from("x-queue-type"), s("quorum"));
    if let Some(target) = target {
        args.insert(ShortString::from("x-dead-letter-exchange"), s(""));
        args.insert(ShortString::from("x-dead-letter-routing-key"), s(target));
        args.insert(ShortString::from("x-dead-letter-strategy"), s("at-least-once"));
        args.insert(ShortString::from("x-overflow"), s("reject-publish"));
    }
    args
}

/// The main queue's arguments. Its backstop dead-letters at most once (the default): with
/// `at-least-once` here, a main queue recovering after a crash with a backlog waited 30 s and
/// more for its leader in chaos runs, and the backstop only fires after 1,000 deliveries.
pub(crate) fn main_args(n: &Names) -> FieldTable {
    let mut args = quorum(None);
    args.insert(ShortString::from("x-dead-letter-exchange"), s(""));
    args.insert(ShortString::from("x-dead-letter-routing-key"), s(&n.archive));
    // Conveyor counts attempts itself; this is only a backstop against a message that crashes
    // every consumer (RabbitMQ 4 defaults to 20 and then drops it): dead-letter to the archive.
    args.insert(ShortString::from("x-delivery-limit"), AMQPValue::LongLongInt(1000));
    args
}

/// A delay bucket's arguments: its tasks expire after `ms` into the main queue.
pub(crate) fn bucket_args(n: &Names, ms: u64) -> FieldTable {
    let mut args = quorum(Some(&n.main));
    args.insert(ShortString::from("x-message-ttl"), AMQPValue::LongLongInt(ms as i64));
    args
}

/// The archive's arguments.
pub(crate) fn archive_args() -> FieldTable {
    quorum(None)
}

/// Declares the main queue and returns its ready-message count.
pub(crate) async fn declare_main(ch: &Channel, n: &Names) -> lapin::Result<u32> {
    Ok(ch.queue_declare(n.main.as_str().into(), durable(), main_args(n)).await?.message_count())
}

/// Declares the archive queue and returns its message count.
pub(crate) async fn declare_archive(ch: &Channel, n: &Names) -> lapin::Result<u32> {
    Ok(ch.queue_declare(n.archive.as_str().into(), durable(), archive_args()).await?.message_count())
}

/// Declares every delay bucket and returns the messages waiting in them.
pub(crate) async fn declare_buckets(ch: &Channel, n: &Names) -> lapin::Result<u64> {
    let mut total = 0u64;
    for ms in BUCKETS_MS {
        let declared = ch.queue_declare(n.bucket(ms).as_str().into(), durable(), bucket_args(n, ms)).await?;
        total += u64::from(declared.message_count());
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
