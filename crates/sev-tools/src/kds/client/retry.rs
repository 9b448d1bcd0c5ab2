//! Retrying a throttled KDS request (docs/protocol/choices.md#u72):
//! exponential backoff with jitter, at least the server's `Retry-After`,
//! a bounded number of attempts and a bounded total wait.

use std::time::Duration;

/// When and how often a request answered HTTP 429 or 503 is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The backoff before the second attempt; it doubles for each further one.
    pub first_delay: Duration,
    /// The longest backoff (before jitter).
    pub max_delay: Duration,
    /// The most time spent waiting between attempts, in all. A server that
    /// asks for a longer wait (`Retry-After`) is not waited for.
    pub max_total_wait: Duration,
}

impl Default for RetryPolicy {
    /// 4 attempts, 1 s doubling up to 16 s, at most 60 s of waiting.
    fn default() -> Self {
        Self {
            max_attempts: 4,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(16),
            max_total_wait: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The backoff after `failed` failed attempts (1 for the first), before
    /// jitter: `first_delay * 2^(failed-1)`, at most `max_delay`.
    pub fn backoff(&self, failed: u32) -> Duration {
        let factor = 1u32 << failed.saturating_sub(1).min(20);
        self.first_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// The wait after `failed` failed attempts: the backoff scaled by
    /// `jitter` into its upper half (`jitter` in 0..1 gives 50 % to 100 %),
    /// and never less than the server's `retry_after`.
    pub fn wait(&self, failed: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let backoff = self.backoff(failed).mul_f64(0.5 + jitter / 2.0);
        retry_after.map_or(backoff, |r| r.max(backoff))
    }
}

/// The longest `Retry-After` taken into account (a day): anything longer
/// is as good as "not now".
const MAX_RETRY_AFTER: u64 = 86_400;

/// A `Retry-After` header's delay. Only the delta-seconds form is read; an
/// HTTP-date (or anything else) gives `None`, and the backoff alone applies.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() || v.len() > 12 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(MAX_RETRY_AFTER)))
}

/// A jitter value in 0..1 from the operating system's random source (0.5
/// when it cannot be had: the retry still happens).
pub fn jitter() -> f64 {
    use rand_core::{OsRng, RngCore as _};
    let mut bytes = [0u8; 4];
    match OsRng.try_fill_bytes(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_honours_retry_after() {
        let p = RetryPolicy::default();
        let s = Duration::from_secs;
        assert_eq!(
            (1..=7).map(|n| p.backoff(n)).collect::<Vec<_>>(),
            [s(1), s(2), s(4), s(8), s(16), s(16), s(16)]
        );
        assert_eq!(p.backoff(u32::MAX), s(16));
        assert_eq!(p.wait(3, None, 0.0), s(2));
        assert_eq!(p.wait(3, None, 1.0), s(4));
        assert_eq!(p.wait(3, None, f64::NAN), s(2));
        assert_eq!(p.wait(1, Some(s(5)), 0.9), s(5));
        assert_eq!(p.wait(4, Some(s(1)), 0.0), s(4));
    }

    #[test]
    fn retry_after_is_read_in_seconds_only() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("0"), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("999999999999"),
            Some(Duration::from_secs(MAX_RETRY_AFTER))
        );
        for bad in [
            "",
            "-1",
            "1.5",
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "9999999999999",
        ] {
            assert_eq!(parse_retry_after(bad), None, "{bad:?}");
        }
        let j = jitter();
        assert!((0.0..1.0).contains(&j), "{j}");
    }
}
