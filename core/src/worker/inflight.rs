//! The receipts of running tasks, for the lease heartbeat.

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
    pub(crate) fn insert(&self, r: Receipt) -> u64 {
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        self.map.lock().unwrap_or_else(|e| e.into_inner()).insert(k, r);
        k
    }

    pub(crate) fn remove(&self, k: u64) {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).remove(&k);
    }

    pub(crate) fn receipts(&self) -> Vec<Receipt> {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }
}
