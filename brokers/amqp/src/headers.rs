//! Message headers Conveyor reads and writes.

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;

/// When a delayed task is due (Unix ms); set while it hops through delay buckets.
pub(crate) const DUE: &str = "x-conveyor-due";
/// Set on a copy the broker published before acking the original (a retry, a delay hop, a
/// hand-back): a crash in between leaves two.
pub(crate) const COPY: &str = "x-conveyor-copy";
/// Why a task was archived.
pub(crate) const REASON: &str = "x-conveyor-reason";
/// When it was archived (Unix ms).
pub(crate) const ARCHIVED_AT: &str = "x-conveyor-archived-at";
/// Set by quorum queues: how many times the message was returned (lost leases).
pub(crate) const DELIVERY_COUNT: &str = "x-delivery-count";

pub(crate) fn int(props: &BasicProperties, name: &str) -> Option<i64> {
    match props.headers().as_ref()?.inner().get(&ShortString::from(name))? {
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::Timestamp(v) => i64::try_from(*v).ok(),
        _ => None,
    }
}

pub(crate) fn string(props: &BasicProperties, name: &str) -> Option<String> {
    match props.headers().as_ref()?.inner().get(&ShortString::from(name))? {
        AMQPValue::LongString(v) => Some(String::from_utf8_lossy(v.as_bytes()).into_owned()),
        AMQPValue::ShortString(v) => Some(v.to_string()),
        _ => None,
    }
}

/// Persistent message properties with the given Conveyor headers.
pub(crate) fn props(ints: &[(&str, i64)], strings: &[(&str, &str)]) -> BasicProperties {
    let mut h = FieldTable::default();
    for (k, v) in ints {
        h.insert(ShortString::from(*k), AMQPValue::LongLongInt(*v));
    }
    for (k, v) in strings {
        h.insert(ShortString::from(*k), AMQPValue::LongString(LongString::from(*v)));
    }
    BasicProperties::default().with_delivery_mode(2).with_headers(h)
}
