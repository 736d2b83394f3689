//! The receipts of deliveries this worker holds, for the lease heartbeat.

use std::sync::Mutex;

use crate::broker::Receipt;

/// A slab: a delivery's place is an index, reused once it is settled. Every delivery enters
/// and leaves it, so both are O(1) with no hashing; the heartbeat reads it every lease / 3.
#[derive(Default)]
pub(crate) struct InFlight {
    slab: Mutex<Slab>,
}

#[derive(Default)]
struct Slab {
    items: Vec<Option<Receipt>>,
    free: Vec<usize>,
}

impl InFlight {
    pub(crate) fn receipts(&self) -> Vec<Receipt> {
        let slab = self.slab.lock().unwrap_or_else(|e| e.into_inner());
        slab.items.iter().flatten().cloned().collect()
    }
}

/// Keeps a delivery's lease renewed while it lives; removed on drop, even on a panic.
pub(crate) struct Leased<'a> {
    set: &'a InFlight,
    key: usize,
}

impl<'a> Leased<'a> {
    pub(crate) fn new(set: &'a InFlight, r: Receipt) -> Self {
        let mut slab = set.slab.lock().unwrap_or_else(|e| e.into_inner());
        let key = match slab.free.pop() {
            Some(i) => {
                slab.items[i] = Some(r);
                i
            }
            None => {
                slab.items.push(Some(r));
                slab.items.len() - 1
            }
        };
        Leased { set, key }
    }
}

impl Drop for Leased<'_> {
    fn drop(&mut self) {
        let receipt = {
            let mut slab = self.set.slab.lock().unwrap_or_else(|e| e.into_inner());
            let r = slab.items[self.key].take();
            if r.is_some() {
                slab.free.push(self.key);
            }
            r
        };
        // Dropped outside the lock: it may be the receipt's last reference.
        drop(receipt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_reused_and_receipts_listed() {
        let set = InFlight::default();
        let a = Leased::new(&set, Receipt::new(1u32));
        let b = Leased::new(&set, Receipt::new(2u32));
        assert_eq!(set.receipts().len(), 2);
        drop(a);
        assert_eq!(set.receipts().len(), 1);
        let c = Leased::new(&set, Receipt::new(3u32));
        assert_eq!(c.key, 0, "the freed place is reused");
        drop((b, c));
        assert!(set.receipts().is_empty());
    }
}
