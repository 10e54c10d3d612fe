//! The rate limiter on a virtual clock.

use super::*;
use proptest::prelude::*;

fn ms(millis: u64) -> Instant {
    Instant::from_millis(millis)
}

/// Calls `allow` `count` times for `key` at `now` and returns how many were allowed.
fn allowed(limiter: &mut RateLimiter<u32>, key: u32, now: Instant, count: usize) -> usize {
    (0..count).filter(|_| limiter.allow(&key, now)).count()
}

#[test]
fn burst_then_refill() {
    let mut limiter = RateLimiter::new(2.0, 5, 100).unwrap();
    assert_eq!(allowed(&mut limiter, 1, ms(0), 10), 5, "the burst goes through at once");
    assert!(!limiter.allow(&1, ms(499)), "half a token is not enough");
    assert!(limiter.allow(&1, ms(500)), "one token after 1 / rate");
    assert!(!limiter.allow(&1, ms(500)));
    assert_eq!(allowed(&mut limiter, 1, ms(1_500), 10), 2, "two tokens a second");
    assert_eq!(allowed(&mut limiter, 1, ms(60_000), 10), 5, "the bucket never holds more than the burst");
    assert_eq!(limiter.stats().allowed, 13);
    assert_eq!(limiter.stats().limited, 10 - 5 + 1 + 1 + 8 + 5);
}

#[test]
fn keys_are_independent() {
    let mut limiter = RateLimiter::new(1.0, 2, 100).unwrap();
    assert_eq!(allowed(&mut limiter, 1, ms(0), 5), 2);
    assert_eq!(allowed(&mut limiter, 2, ms(0), 5), 2, "a flood on one key does not limit another");
}

#[test]
fn retry_after_says_when() {
    let mut limiter = RateLimiter::new(4.0, 1, 10).unwrap();
    assert_eq!(limiter.retry_after(&7, ms(0)), Some(Duration::ZERO), "an unknown key may go");
    assert!(limiter.allow(&7, ms(0)));
    assert_eq!(limiter.retry_after(&7, ms(0)), Some(Duration::from_millis(250)));
    assert_eq!(limiter.retry_after(&7, ms(100)), Some(Duration::from_secs_f64(0.15)));
    assert_eq!(limiter.retry_after(&7, ms(250)), Some(Duration::ZERO));

    let mut stingy = RateLimiter::new(0.0, 1, 10).unwrap();
    assert!(stingy.allow(&7, ms(0)));
    assert!(!stingy.allow(&7, ms(1_000_000)), "a rate of 0 never refills");
    assert_eq!(stingy.retry_after(&7, ms(0)), None);
}

#[test]
fn eviction_keeps_memory_bounded_and_forgets_the_least_recently_used() {
    let mut limiter = RateLimiter::new(1.0, 1, 3).unwrap();
    for key in 1..=3 {
        assert!(limiter.allow(&key, ms(0)));
    }
    // Key 1 is used again (refused): it becomes the most recently used.
    assert!(!limiter.allow(&1, ms(10)));
    assert!(limiter.allow(&4, ms(20)), "a new key gets a fresh bucket");
    assert_eq!(limiter.len(), 3);
    assert_eq!(limiter.stats().evicted, 1);
    // Key 2 was the least recently used, so it was forgotten and starts full again;
    // key 1 is still tracked and still empty.
    assert!(!limiter.allow(&1, ms(30)));
    assert!(limiter.allow(&2, ms(30)));
    assert_eq!(limiter.len(), 3);
}

#[test]
fn many_keys_stay_within_the_bound() {
    let mut limiter = RateLimiter::new(10.0, 3, 1_000).unwrap();
    for key in 0..100_000u32 {
        assert!(limiter.allow(&key, ms(u64::from(key))), "every new key has a full bucket");
        assert!(limiter.len() <= 1_000);
    }
    assert_eq!(limiter.len(), 1_000);
    assert_eq!(limiter.stats().evicted, 99_000);
}

#[test]
fn out_of_order_instants_add_nothing() {
    let mut limiter = RateLimiter::new(1.0, 1, 10).unwrap();
    assert!(limiter.allow(&1, ms(10_000)));
    assert!(!limiter.allow(&1, ms(0)), "an earlier instant neither refills nor panics");
    assert!(limiter.allow(&1, ms(11_000)));
}

#[test]
fn settings_are_validated() {
    for (rate, burst, keys) in
        [(-1.0, 1, 1), (f64::NAN, 1, 1), (f64::INFINITY, 1, 1), (1.0, 0, 1), (1.0, 1, 0)]
    {
        let error = RateLimiter::<u32>::new(rate, burst, keys).unwrap_err();
        let sentence = error.to_string();
        assert!(!error.requirement().is_empty() && !sentence.contains('\n'), "{sentence}");
    }
}

proptest! {
    /// Over any window, a key never gets more than burst + rate x elapsed requests through.
    #[test]
    fn never_more_than_burst_plus_refill(
        steps in proptest::collection::vec((0u64..2_000, 0u32..4), 1..200),
        rate in 0.0f64..20.0,
        burst in 1u32..10,
    ) {
        let mut limiter = RateLimiter::new(rate, burst, 2).unwrap();
        let mut now = 0u64;
        let mut allowed = 0u64;
        for (gap_ms, key) in steps {
            now += gap_ms;
            let ok = limiter.allow(&key, ms(now));
            if key == 0 && ok {
                allowed += 1;
            }
            prop_assert!(limiter.len() <= 2);
        }
        // Key 0 may have been evicted and come back full: each return adds at most a burst.
        let bound = f64::from(burst) * (1.0 + limiter.stats().evicted as f64) + rate * now as f64 / 1000.0;
        prop_assert!(allowed as f64 <= bound + 1e-9, "{allowed} > {bound}");
    }
}
