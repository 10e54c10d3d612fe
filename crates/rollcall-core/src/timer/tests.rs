use super::*;
use proptest::collection::vec;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Runs `script` against a wheel started at zero and compares what it prints with `expected`.
///
/// One command per line: `wheel SLOTS TICK` (start over with that geometry), `insert KEY AT`,
/// `cancel KEY`, `expire NOW`, `next`, `deadline KEY`, `len`. Times are an integer and a unit
/// (`ns`, `us`, `ms`, `s`, `h`) since zero; printed times use `Duration`'s `Debug`.
/// Blank lines and the indentation of both strings are ignored.
fn check(script: &str, expected: &str) {
    let mut wheel = TimerWheel::new(Instant::ZERO);
    let mut out = String::new();
    for line in lines(script) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let printed = match words[..] {
            ["wheel", slots, tick] => {
                let slots = slots.parse().expect("slot count");
                wheel = TimerWheel::with_geometry(Instant::ZERO, slots, span(tick));
                Ok(())
            }
            ["insert", key, at] => {
                wheel.insert(key.parse().expect("key"), Instant::ZERO + span(at));
                Ok(())
            }
            ["cancel", key] => writeln!(out, "cancel {key}: {}", wheel.cancel(key.parse().expect("key"))),
            ["expire", now] => {
                let mut fired = Vec::new();
                wheel.expire(Instant::ZERO + span(now), &mut fired);
                writeln!(out, "expire {now}: {fired:?}")
            }
            ["next"] => writeln!(out, "next: {}", show(wheel.next_expiry())),
            ["deadline", key] => {
                writeln!(out, "deadline {key}: {}", show(wheel.deadline(key.parse().expect("key"))))
            }
            ["len"] => writeln!(out, "len: {}", wheel.len()),
            _ => panic!("bad script line: {line}"),
        };
        printed.expect("writing to a String cannot fail");
    }
    let expected: String = lines(expected).map(|line| format!("{line}\n")).collect();
    assert_eq!(out, expected, "script:\n{script}");
}

fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().map(str::trim).filter(|line| !line.is_empty())
}

fn span(text: &str) -> Duration {
    let digits = text.find(|c: char| !c.is_ascii_digit()).expect("a time has a unit");
    let (value, unit) = text.split_at(digits);
    let value: u64 = value.parse().expect("a time starts with an integer");
    match unit {
        "ns" => Duration::from_nanos(value),
        "us" => Duration::from_micros(value),
        "ms" => Duration::from_millis(value),
        "s" => Duration::from_secs(value),
        "h" => Duration::from_secs(value * 3600),
        _ => panic!("unknown time unit in {text}"),
    }
}

fn show(at: Option<Instant>) -> String {
    at.map_or("none".to_owned(), |at| format!("{:?}", at - Instant::ZERO))
}

#[test]
fn insert_cancel_replace() {
    check(
        "insert 1 5ms
         deadline 1
         insert 1 7ms
         deadline 1
         len
         cancel 1
         cancel 1
         cancel 99
         deadline 1
         deadline 99
         len
         next
         insert 2 3ms
         insert 1 9ms
         insert 1 4ms
         expire 10ms
         len",
        "deadline 1: 5ms
         deadline 1: 7ms
         len: 1
         cancel 1: true
         cancel 1: false
         cancel 99: false
         deadline 1: none
         deadline 99: none
         len: 0
         next: none
         expire 10ms: [2, 1]
         len: 0",
    );
}

#[test]
fn fires_in_deadline_then_key_order() {
    check(
        "insert 3 5ms
         insert 1 5ms
         insert 2 4ms
         insert 0 6ms
         insert 7 5500us
         expire 4ms
         expire 5ms
         expire 10ms",
        "expire 4ms: [2]
         expire 5ms: [1, 3]
         expire 10ms: [7, 0]",
    );
    // Overdue entries share the current tick's slot with entries due in it; the order is
    // still by deadline, then key, across every slot walked.
    check(
        "expire 30ms
         insert 4 30ms
         insert 5 25ms
         insert 6 1ms
         insert 2 25ms
         insert 3 31ms
         expire 40ms",
        "expire 30ms: []
         expire 40ms: [6, 2, 5, 4, 3]",
    );
}

#[test]
fn deadline_in_the_past_fires_on_next_expire() {
    check(
        "expire 10ms
         insert 1 2ms
         insert 2 10ms
         next
         expire 10ms
         len",
        "expire 10ms: []
         next: 2ms
         expire 10ms: [1, 2]
         len: 0",
    );
    // The last nanosecond of a tick: the overdue entry is not left behind.
    check(
        "expire 10999999ns
         insert 3 5ms
         expire 10999999ns",
        "expire 10999999ns: []
         expire 10999999ns: [3]",
    );
    // A `now` in a tick before the current one does nothing; the next `expire` catches up.
    check(
        "expire 10ms
         insert 4 4ms
         expire 5ms
         expire 11ms",
        "expire 10ms: []
         expire 5ms: []
         expire 11ms: [4]",
    );
}

#[test]
fn deadline_later_in_the_current_tick_fires_on_time() {
    check(
        "insert 1 10500us
         expire 10200us
         next
         expire 10499us
         expire 10500us",
        "expire 10200us: []
         next: 10.5ms
         expire 10499us: []
         expire 10500us: [1]",
    );
}

#[test]
fn deadlines_beyond_one_revolution_fire_on_time() {
    check(
        "insert 1 1h
         expire 8192ms
         expire 3599999ms
         next
         expire 3599999999999ns
         expire 1h",
        "expire 8192ms: []
         expire 3599999ms: []
         next: 3600s
         expire 3599999999999ns: []
         expire 1h: [1]",
    );
    // A 16 ms wheel: keys 1 and 2 share a slot a revolution apart.
    check(
        "wheel 16 1ms
         insert 1 100ms
         insert 2 4ms
         next
         expire 4ms
         next
         expire 20ms
         expire 36ms
         expire 99ms
         expire 100ms",
        "next: 4ms
         expire 4ms: [2]
         next: 100ms
         expire 20ms: []
         expire 36ms: []
         expire 99ms: []
         expire 100ms: [1]",
    );
}

#[test]
fn long_jump_fires_everything_due_once() {
    check(
        "insert 1 5s
         insert 2 50ms
         insert 3 20s
         insert 4 99s
         insert 5 101s
         insert 6 100s
         expire 100s
         len
         expire 100s
         expire 101s
         len",
        "expire 100s: [2, 1, 3, 4, 6]
         len: 1
         expire 100s: []
         expire 101s: [5]
         len: 0",
    );
}

#[test]
fn next_expiry_is_a_lower_bound_and_tight() {
    check(
        "insert 1 2500us
         insert 2 1s
         next
         insert 3 2700us
         insert 4 2h
         next
         cancel 1
         next
         expire 2500us
         next
         cancel 3
         next
         insert 5 2900us
         next",
        "next: 2.5ms
         next: 2.5ms
         cancel 1: true
         next: 2.5ms
         expire 2500us: []
         next: 2.7ms
         cancel 3: true
         next: 1s
         next: 2.9ms",
    );
}

#[test]
#[should_panic(expected = "power of two")]
fn slot_count_must_be_a_power_of_two() {
    TimerWheel::with_geometry(Instant::ZERO, 1000, Duration::from_millis(1));
}

/// A step of the property test; times are in nanoseconds relative to the model's `now`.
#[derive(Clone, Debug)]
enum Op {
    Insert(u32, i64),
    Cancel(u32),
    Expire(u64),
}

const KEYS: u32 = 40;

fn op() -> impl Strategy<Value = Op> {
    let offset = prop_oneof![-2_000_000_000i64..25_000_000_000, -3_000_000i64..3_000_000];
    let step = prop_oneof![0u64..=20_000_000_000, 0u64..3_000_000, Just(0)];
    prop_oneof![
        4 => (0..KEYS, offset).prop_map(|(key, offset)| Op::Insert(key, offset)),
        1 => (0..KEYS).prop_map(Op::Cancel),
        3 => step.prop_map(Op::Expire),
    ]
}

proptest! {
    #[test]
    fn wheel_matches_a_sorted_map(
        slots_log2 in 0u32..14,
        tick_us in 1u64..2_000,
        start in 0u64..10_000_000_000,
        ops in vec(op(), 0..200),
    ) {
        let mut now = start;
        let tick = Duration::from_micros(tick_us);
        let mut wheel = TimerWheel::with_geometry(Instant::from_nanos(now), 1 << slots_log2, tick);
        let mut model: BTreeMap<u32, Instant> = BTreeMap::new();
        let mut fired = Vec::new();
        // Until a deadline is removed other than by firing, `next_expiry` is exact.
        let mut removed = false;
        for op in ops {
            match op {
                Op::Insert(key, offset) => {
                    let at = Instant::from_nanos(now.saturating_add_signed(offset));
                    wheel.insert(key, at);
                    removed |= model.insert(key, at).is_some();
                }
                Op::Cancel(key) => {
                    let had = model.remove(&key).is_some();
                    removed |= had;
                    prop_assert_eq!(wheel.cancel(key), had);
                }
                Op::Expire(step) => {
                    now += step;
                    let mut due: Vec<(Instant, u32)> = model
                        .iter()
                        .filter(|&(_, &at)| at <= Instant::from_nanos(now))
                        .map(|(&key, &at)| (at, key))
                        .collect();
                    due.sort_unstable();
                    let due: Vec<u32> = due.into_iter().map(|(_, key)| key).collect();
                    model.retain(|_, &mut at| at > Instant::from_nanos(now));
                    fired.clear();
                    wheel.expire(Instant::from_nanos(now), &mut fired);
                    // Equal lists: nothing early, nothing late, nothing twice, in order.
                    prop_assert_eq!(&fired, &due, "expire at {}ns", now);
                }
            }
            prop_assert_eq!(wheel.len(), model.len());
            for key in 0..KEYS {
                prop_assert_eq!(wheel.deadline(key), model.get(&key).copied());
            }
            let earliest = model.values().min().copied();
            match (wheel.next_expiry(), earliest) {
                (None, None) => {}
                (Some(bound), Some(earliest)) => {
                    prop_assert!(bound <= earliest, "{:?} > {:?}", bound, earliest);
                    prop_assert!(removed || bound == earliest, "{:?} < {:?}", bound, earliest);
                }
                (bound, earliest) => prop_assert!(false, "next_expiry {:?}, earliest {:?}", bound, earliest),
            }
        }
    }
}

/// A deadline in [base + 4 s, base + 5 s), spread uniformly and out of key order
/// (`PRIME` is coprime with `N`, so positions are a permutation).
fn spread(key: u32, base: Instant) -> Instant {
    const PRIME: u64 = 2_654_435_761;
    let position = u64::from(key) * PRIME % u64::from(N);
    base + Duration::from_secs(4) + Duration::from_nanos(position * 1_000_000_000 / u64::from(N))
}

const N: u32 = 1_000_000;

#[test]
fn a_million_keys_cost_no_sweep() {
    let start = Instant::from_millis(1_000);
    let mut wheel = TimerWheel::new(start);
    for key in 0..N {
        wheel.insert(key, spread(key, start));
    }
    assert_eq!(wheel.len(), N as usize);
    assert_eq!(wheel.next_expiry(), Some(start + Duration::from_secs(4)));

    // Ticks with nothing due look at the slots of those ticks only.
    let before = wheel.stats().clone();
    let mut fired = Vec::new();
    for step in 1..=100 {
        wheel.expire(start + Duration::from_millis(step), &mut fired);
    }
    assert!(fired.is_empty());
    let visited = wheel.stats().visited - before.visited;
    assert!(visited < u64::from(N / 10), "100 ticks visited {visited} entries");

    // A heartbeat per key: one insert each, nothing visited.
    let now = start + Duration::from_millis(100);
    let before = wheel.stats().clone();
    for key in 0..N {
        wheel.insert(key, spread(key, now));
    }
    let after = wheel.stats();
    assert_eq!(after.inserted - before.inserted, u64::from(N));
    assert_eq!(
        (after.cancelled, after.visited, after.slots_scanned),
        (before.cancelled, before.visited, before.slots_scanned)
    );
    assert_eq!(wheel.len(), N as usize);

    // Past every deadline: all fire once, in deadline order, with each entry visited once.
    let before = wheel.stats().clone();
    wheel.expire(start + Duration::from_secs(6), &mut fired);
    assert_eq!(fired.len(), N as usize);
    assert!(fired.windows(2).all(|pair| spread(pair[0], now) < spread(pair[1], now)));
    let mut seen = vec![false; N as usize];
    for &key in &fired {
        assert!(!std::mem::replace(&mut seen[key as usize], true), "key {key} fired twice");
    }
    let after = wheel.stats();
    assert_eq!(after.fired - before.fired, u64::from(N));
    assert!(after.visited - before.visited <= 2 * u64::from(N));
    assert!(wheel.is_empty());
    assert_eq!(wheel.next_expiry(), None);
}

#[test]
fn the_next_expiry_is_remembered_until_the_wheel_moves() {
    // Every deadline more than a revolution ahead: the case where answering walks every slot.
    let mut wheel = TimerWheel::new(Instant::ZERO);
    for key in 0..8192u32 {
        wheel.insert(key, Instant::from_millis(9_000 + u64::from(key)));
    }
    let first = wheel.next_expiry();
    assert_eq!(first, Some(Instant::from_millis(9_000)));
    assert_eq!(wheel.next_expiry(), first, "asked again, same answer");
    // An earlier insert lowers it; a cancel leaves a lower bound; expiring recomputes.
    wheel.insert(9_000, Instant::from_millis(5));
    assert_eq!(wheel.next_expiry(), Some(Instant::from_millis(5)));
    wheel.cancel(9_000);
    assert_eq!(wheel.next_expiry(), Some(Instant::from_millis(5)), "a stale bound is still a bound");
    let mut fired = Vec::new();
    wheel.expire(Instant::from_millis(5), &mut fired);
    assert!(fired.is_empty());
    assert_eq!(wheel.next_expiry(), Some(Instant::from_millis(9_000)), "exact again after expire");
}
