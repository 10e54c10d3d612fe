//! A keyed token-bucket rate limiter with bounded memory, for floods of HTTP pings.
//!
//! Pure: `now` is an argument, nothing is read from a clock. The shell keeps two, one keyed
//! by check token and one by source address, answers 429 when either refuses, and reports
//! the refusal (see `checks::Checks::record_rejection`) so it shows in metrics.

use crate::{ConfigError, Instant};
use core::time::Duration;
use std::collections::BTreeMap;

/// Counters of a [`RateLimiter`] since it was created.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RateLimitStats {
    pub allowed: u64,
    pub limited: u64,
    /// Buckets forgotten to stay within `max_keys` (least recently used first).
    pub evicted: u64,
}

/// One token bucket per key: each key may make `burst` requests at once, then one every
/// `1 / rate_per_sec` seconds.
///
/// Memory is bounded by `max_keys` buckets. When a new key arrives at the bound, the bucket
/// of the **least recently used** key is evicted: it is the one most likely to have refilled
/// already, so forgetting it loses the least. A key is "used" by every call of
/// [`allow`](Self::allow) for it, refused or not, so a key that keeps flooding stays tracked
/// (and limited) while quiet keys are forgotten first. An evicted key that returns starts
/// with a full bucket. Each call costs O(log `max_keys`).
#[derive(Clone, Debug)]
pub struct RateLimiter<K: Ord + Clone> {
    rate_per_sec: f64,
    burst: f64,
    max_keys: usize,
    buckets: BTreeMap<K, Bucket>,
    /// Keys by the sequence number of their last use, oldest first.
    by_use: BTreeMap<u64, K>,
    next_use: u64,
    stats: RateLimitStats,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
    last_use: u64,
}

impl<K: Ord + Clone> RateLimiter<K> {
    /// A limiter refilling `rate_per_sec` tokens a second up to `burst`, tracking at most
    /// `max_keys` keys. A rate of 0 allows `burst` requests per key and then none (until the
    /// key is evicted). Fails with one sentence if a setting is out of range.
    pub fn new(rate_per_sec: f64, burst: u32, max_keys: usize) -> Result<Self, ConfigError> {
        if !rate_per_sec.is_finite() || rate_per_sec < 0.0 {
            return Err(ConfigError::new(
                "rate",
                format!("must be a finite number of requests per second, not {rate_per_sec}"),
            ));
        }
        if burst == 0 {
            return Err(ConfigError::new("burst", "must be at least 1 request"));
        }
        if max_keys == 0 {
            return Err(ConfigError::new("max_keys", "must be at least 1 (the rate limiter tracks keys)"));
        }
        Ok(RateLimiter {
            rate_per_sec,
            burst: f64::from(burst),
            max_keys,
            buckets: BTreeMap::new(),
            by_use: BTreeMap::new(),
            next_use: 0,
            stats: RateLimitStats::default(),
        })
    }

    pub fn stats(&self) -> &RateLimitStats {
        &self.stats
    }

    /// Keys tracked now (at most `max_keys`).
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Whether `key` may make a request at `now`; if so, takes a token from its bucket.
    pub fn allow(&mut self, key: &K, now: Instant) -> bool {
        let use_id = self.next_use;
        self.next_use += 1;
        if !self.buckets.contains_key(key) {
            if self.buckets.len() >= self.max_keys {
                self.evict_oldest();
            }
            let fresh = Bucket { tokens: self.burst, updated: now, last_use: use_id };
            self.buckets.insert(key.clone(), fresh);
        }
        let bucket = self.buckets.get_mut(key).expect("inserted above if it was missing");
        self.by_use.remove(&bucket.last_use);
        bucket.tokens = refill(bucket, self.rate_per_sec, self.burst, now);
        bucket.updated = bucket.updated.max(now);
        bucket.last_use = use_id;
        let allowed = bucket.tokens >= 1.0;
        if allowed {
            bucket.tokens -= 1.0;
        }
        self.by_use.insert(use_id, key.clone());
        debug_assert!(
            self.buckets.len() <= self.max_keys,
            "a bucket is evicted before one is added at the bound"
        );
        debug_assert_eq!(self.buckets.len(), self.by_use.len(), "each bucket has exactly one use entry");
        if allowed {
            self.stats.allowed += 1;
        } else {
            self.stats.limited += 1;
        }
        allowed
    }

    /// How long `key` must wait from `now` before [`allow`](Self::allow) says yes again
    /// (for a `Retry-After` header); zero if it may go now, `None` if it never will (a rate
    /// of 0 and an empty bucket).
    pub fn retry_after(&self, key: &K, now: Instant) -> Option<Duration> {
        let Some(bucket) = self.buckets.get(key) else { return Some(Duration::ZERO) };
        let tokens = refill(bucket, self.rate_per_sec, self.burst, now);
        if tokens >= 1.0 {
            return Some(Duration::ZERO);
        }
        if self.rate_per_sec == 0.0 {
            return None;
        }
        Some(Duration::from_secs_f64((1.0 - tokens) / self.rate_per_sec))
    }

    fn evict_oldest(&mut self) {
        if let Some((_, key)) = self.by_use.pop_first() {
            self.buckets.remove(&key);
            self.stats.evicted += 1;
        }
    }
}

/// The bucket's tokens at `now`. An instant before the last update (the caller's clock is
/// monotonic, so only out-of-order calls) adds nothing.
fn refill(bucket: &Bucket, rate_per_sec: f64, burst: f64, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
    (bucket.tokens + elapsed * rate_per_sec).min(burst)
}

#[cfg(test)]
mod tests;
