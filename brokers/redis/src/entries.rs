//! Turning what a claim read into deliveries: the claim script's flat answer, or a plain
//! `XREADGROUP` reply.

use std::sync::Arc;

use conveyor_core::{Delivery, Payload, Receipt};
use redis::Value;

use crate::keys::QueueKeys;
use crate::RedisReceipt;

/// Builds deliveries of one queue.
pub(crate) struct Deliveries {
    queue: Arc<str>,
    keys: Arc<QueueKeys>,
    /// Larger payloads are delivered unparsed (see `Payload::decode_within`).
    max_payload: usize,
    pub(crate) out: Vec<Delivery>,
}

impl Deliveries {
    pub(crate) fn new(queue: &str, keys: Arc<QueueKeys>, max_payload: usize) -> Self {
        Deliveries { queue: Arc::from(queue), keys, max_payload, out: Vec::new() }
    }

    /// The claim script's flat answer: per stream read, its suffix, a count, and that many
    /// entry ids (`ENTRY-ID`, or `ENTRY-ID#LOST` once a lease was lost), task ids and payloads.
    pub(crate) fn add_script_answer(&mut self, items: Vec<Value>) {
        self.out.reserve(items.len() / 3);
        let mut items = items.into_iter();
        while let (Some(suffix), Some(n)) = (items.next(), items.next()) {
            let suffix: Arc<str> = text(suffix).into();
            let n = redis::from_redis_value::<usize>(n).unwrap_or(0);
            for _ in 0..n {
                let (Some(eid), Some(id), Some(payload)) = (items.next(), items.next(), items.next()) else {
                    break;
                };
                let mut eid = text(eid);
                let mut lost = 0;
                if let Some(at) = eid.find('#') {
                    lost = eid[at + 1..].parse().unwrap_or(0);
                    eid.truncate(at);
                }
                self.push(&suffix, eid, text(id), lost, bytes(payload));
            }
        }
    }

    /// A plain `XREADGROUP` reply for one stream: `[[key, [[entry id, [field, value...]]...]]]`
    /// (nil when there was nothing to read). An entry is `{task id: payload}`, plus `#lost: N`
    /// once a lease was lost.
    pub(crate) fn add_read_reply(&mut self, suffix: &str, reply: Value) {
        let suffix: Arc<str> = suffix.into();
        for stream in array(reply) {
            let entries = match stream {
                Value::Array(kv) => kv.into_iter().nth(1).map(array).unwrap_or_default(),
                Value::Map(kv) => kv.into_iter().next().map(|(_, v)| array(v)).unwrap_or_default(),
                _ => continue,
            };
            self.out.reserve(entries.len());
            for entry in entries {
                let mut entry = array(entry).into_iter();
                let eid = entry.next().map(text).unwrap_or_default();
                let mut fields = entry.next().map(array).unwrap_or_default().into_iter();
                let id = fields.next().map(text).unwrap_or_else(|| format!("entry:{eid}"));
                let payload = fields.next().map(bytes).unwrap_or_default();
                let mut lost = 0;
                while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
                    if bytes(name) == b"#lost" {
                        lost = text(value).parse().unwrap_or(0);
                    }
                }
                self.push(&suffix, eid, id, lost, payload);
            }
        }
    }

    /// `id` is the task id the entry is stored under (what the live-id mark is kept by).
    fn push(&mut self, suffix: &Arc<str>, eid: String, id: String, lost_leases: u32, payload: Vec<u8>) {
        let payload = Payload::decode_within(payload, self.max_payload);
        let receipt = RedisReceipt { keys: self.keys.clone(), id, suffix: suffix.clone(), eid };
        self.out.push(Delivery {
            receipt: Receipt::new(receipt),
            queue: self.queue.clone(),
            payload,
            // A hand-back (read from an `f` stream) was delivered before, as was a lost lease.
            redelivered: lost_leases > 0 || suffix.starts_with('f'),
            lost_leases,
            // A retry or hand-back replaces its original in one script: never two.
            copy: false,
        });
    }
}

fn array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        _ => Vec::new(),
    }
}

fn bytes(v: Value) -> Vec<u8> {
    match v {
        Value::BulkString(b) => b,
        Value::SimpleString(s) => s.into_bytes(),
        other => redis::from_redis_value::<String>(other).unwrap_or_default().into_bytes(),
    }
}

/// Text from a reply; bytes that are not UTF-8 (a foreign entry) must not fail the whole claim.
fn text(v: Value) -> String {
    String::from_utf8(bytes(v)).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}
