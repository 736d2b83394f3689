//! Retry delays: the [`RetryPolicy`] trait and the default [`ExponentialBackoff`].

use std::time::Duration;

use crate::handler::TaskError;
use crate::task::TaskMessage;

/// Decides how long a failed task waits before its next attempt.
///
/// Closures `Fn(u32, &TaskError, &TaskMessage) -> Duration` are policies; the `u32` is the
/// retry number about to happen (1 for the first retry).
///
/// ```
/// use conveyor_core::retry::RetryPolicy;
/// use std::time::Duration;
/// let linear = |n: u32, _: &conveyor_core::TaskError, _: &conveyor_core::TaskMessage| Duration::from_secs(10 * u64::from(n));
/// # fn check(_: impl RetryPolicy) {}
/// check(linear);
/// ```
pub trait RetryPolicy: Send + Sync + 'static {
    /// The delay before retry number `retry` (1-based) of `task`, which failed with `error`.
    fn delay(&self, retry: u32, error: &TaskError, task: &TaskMessage) -> Duration;
}

impl<F> RetryPolicy for F
where
    F: Fn(u32, &TaskError, &TaskMessage) -> Duration + Send + Sync + 'static,
{
    fn delay(&self, retry: u32, error: &TaskError, task: &TaskMessage) -> Duration {
        self(retry, error, task)
    }
}

/// Exponential backoff with jitter, the default policy.
///
/// Retry number `n` (1, 2, 3, …) waits `d = min(cap, base × 2^(n−1))`, then, with jitter on
/// (the default), a uniformly random delay in `[d/2, d]` ("equal jitter": retries of many
/// tasks that failed together spread out, and none waits less than half the nominal delay).
/// Defaults: `base` 1 s, `cap` 1 h, so the delays run about 1 s, 2 s, 4 s, … and reach the cap
/// at the 13th retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExponentialBackoff {
    /// Delay of the first retry (before jitter).
    pub base: Duration,
    /// Longest delay (before jitter).
    pub cap: Duration,
    /// Whether to apply jitter.
    pub jitter: bool,
}

impl Default for ExponentialBackoff {
    fn default() -> Self {
        ExponentialBackoff { base: Duration::from_secs(1), cap: Duration::from_secs(3600), jitter: true }
    }
}

impl ExponentialBackoff {
    /// The nominal (un-jittered) delay of retry `n`.
    pub fn nominal(&self, n: u32) -> Duration {
        let exp = n.saturating_sub(1).min(40);
        self.base
            .saturating_mul(1u32 << exp.min(31))
            .saturating_mul(if exp > 31 { 1 << (exp - 31) } else { 1 })
            .min(self.cap)
    }
}

impl RetryPolicy for ExponentialBackoff {
    fn delay(&self, retry: u32, _error: &TaskError, _task: &TaskMessage) -> Duration {
        let d = self.nominal(retry);
        if !self.jitter {
            return d;
        }
        let half = d / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_bounded_jitter() {
        let p = ExponentialBackoff::default();
        assert_eq!(p.nominal(1), Duration::from_secs(1));
        assert_eq!(p.nominal(2), Duration::from_secs(2));
        assert_eq!(p.nominal(5), Duration::from_secs(16));
        assert_eq!(p.nominal(13), Duration::from_secs(3600));
        assert_eq!(p.nominal(1000), Duration::from_secs(3600));
        let t = TaskMessage::with_args("x", &()).unwrap();
        let e = TaskError::msg("boom");
        for n in 1..20 {
            let d = p.delay(n, &e, &t);
            assert!(d >= p.nominal(n) / 2 && d <= p.nominal(n), "retry {n}: {d:?}");
        }
    }
}
