//! The receipts of deliveries this worker holds, for the lease heartbeat.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::broker::Receipt;

#[derive(Default)]
pub(crate) struct InFlight {
    next: AtomicU64,
    map: Mutex<HashMap<u64, Receipt>>,
}

impl InFlight {
    pub(crate) fn receipts(&self) -> Vec<Receipt> {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }
}

/// Keeps a delivery's lease renewed while it lives; removed on drop, even on a panic.
pub(crate) struct Leased<'a> {
    set: &'a InFlight,
    key: u64,
}

impl<'a> Leased<'a> {
    pub(crate) fn new(set: &'a InFlight, r: Receipt) -> Self {
        let key = set.next.fetch_add(1, Ordering::Relaxed);
        set.map.lock().unwrap_or_else(|e| e.into_inner()).insert(key, r);
        Leased { set, key }
    }
}

impl Drop for Leased<'_> {
    fn drop(&mut self) {
        self.set.map.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.key);
    }
}
