//! Queue order per receive: weighted random or strict priority.

use std::sync::Arc;

/// How a worker picks among its queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueuePriority {
    /// Each receive tries the queues in a random order in which a queue comes first with
    /// probability proportional to its weight; with every queue backlogged, a queue of weight
    /// 6 gets about 6 tasks for every 1 of a queue of weight 1, and no queue starves.
    #[default]
    Weighted,
    /// Always the highest weight first: a lower queue runs only when every higher one is
    /// empty (it can starve).
    Strict,
}

#[derive(Debug, Clone)]
pub(crate) struct QueueSelector {
    /// Sorted by weight, highest first.
    queues: Vec<(Arc<str>, u32)>,
    mode: QueuePriority,
    total: u64,
}

impl QueueSelector {
    pub(crate) fn new(mut queues: Vec<(Arc<str>, u32)>, mode: QueuePriority) -> Self {
        queues.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let total = queues.iter().map(|q| u64::from(q.1)).sum();
        QueueSelector { queues, mode, total }
    }

    /// The queue names in the order to try them for one receive.
    pub(crate) fn order(&self) -> Vec<&str> {
        if self.mode == QueuePriority::Strict || self.queues.len() == 1 {
            return self.queues.iter().map(|q| &*q.0).collect();
        }
        // Weighted sampling without replacement.
        let mut left: Vec<&(Arc<str>, u32)> = self.queues.iter().collect();
        let mut total = self.total;
        let mut out = Vec::with_capacity(left.len());
        while !left.is_empty() {
            let mut pick = fastrand::u64(0..total.max(1));
            let mut idx = left.len() - 1;
            for (i, q) in left.iter().enumerate() {
                let w = u64::from(q.1);
                if pick < w {
                    idx = i;
                    break;
                }
                pick -= w;
            }
            let q = left.remove(idx);
            total -= u64::from(q.1);
            out.push(&*q.0);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(mode: QueuePriority) -> QueueSelector {
        QueueSelector::new(vec![("low".into(), 1), ("critical".into(), 6), ("default".into(), 3)], mode)
    }

    #[test]
    fn strict_is_by_weight() {
        assert_eq!(sel(QueuePriority::Strict).order(), ["critical", "default", "low"]);
    }

    #[test]
    fn weighted_first_choice_follows_weights() {
        let s = sel(QueuePriority::Weighted);
        let mut firsts = std::collections::HashMap::new();
        for _ in 0..100_000 {
            let o = s.order();
            assert_eq!(o.len(), 3);
            *firsts.entry(o[0].to_owned()).or_insert(0u32) += 1;
        }
        let share = |q: &str| f64::from(firsts[q]) / 100_000.0;
        assert!((share("critical") - 0.6).abs() < 0.02, "{firsts:?}");
        assert!((share("default") - 0.3).abs() < 0.02, "{firsts:?}");
        assert!((share("low") - 0.1).abs() < 0.02, "{firsts:?}");
    }
}
