//! The lease table on a virtual clock.

use super::*;

fn at(seconds: u64) -> Instant {
    Instant::from_nanos(seconds * 1_000_000_000)
}

const TTL: Duration = Duration::from_secs(10);

fn events(leases: &mut Leases) -> Vec<LeaseEvent> {
    std::iter::from_fn(|| leases.poll_event()).collect()
}

/// Acquires and checks the outcome: `Ok(token)` or the error.
fn check(leases: &mut Leases, name: &str, holder: &str, now: Instant, expected: Result<u64, LeaseError>) {
    let got = leases.acquire(name, &format!("node-{holder}"), holder, TTL, now).map(|lease| lease.token);
    assert_eq!(got, expected, "acquire {name} by {holder}");
}

#[test]
fn a_free_lease_is_granted_with_a_new_token_and_a_held_one_is_refused() {
    let mut leases = Leases::new();
    check(&mut leases, "db", "a", at(0), Ok(1));
    check(
        &mut leases,
        "db",
        "b",
        at(1),
        Err(LeaseError::Held { name: "db".into(), holder: "a".into(), node: "node-a".into() }),
    );
    check(&mut leases, "other", "b", at(1), Ok(2));
    assert!(matches!(events(&mut leases)[..], [LeaseEvent::Granted(_), LeaseEvent::Granted(_)]));
}

#[test]
fn acquire_by_the_holder_renews_with_the_same_token() {
    let mut leases = Leases::new();
    check(&mut leases, "db", "a", at(0), Ok(1));
    check(&mut leases, "db", "a", at(5), Ok(1));
    assert_eq!(leases.get("db").map(|lease| lease.expires), Some(at(15)));
}

#[test]
fn tokens_increase_on_every_change_of_holder_and_never_repeat() {
    let mut leases = Leases::new();
    let mut seen = Vec::new();
    for round in 0..20u64 {
        let holder = if round % 2 == 0 { "a" } else { "b" };
        let lease = leases.acquire("db", "n", holder, TTL, at(round * 100)).expect("free");
        seen.push(lease.token);
        match round % 3 {
            0 => drop(leases.release("db", holder, lease.token).expect("holder")),
            1 => leases.handle_timeout(at(round * 100 + 10)),
            _ => assert_eq!(leases.release_node("n"), 1),
        }
        assert!(leases.get("db").is_none(), "round {round} ended the lease");
    }
    assert!(seen.windows(2).all(|pair| pair[0] < pair[1]), "{seen:?}");
    let stats = leases.stats();
    assert_eq!((stats.granted, stats.released, stats.expired, stats.node_gone), (20, 7, 7, 6));
}

#[test]
fn renewal_extends_and_only_the_holder_with_its_token_may_renew_or_release() {
    let mut leases = Leases::new();
    let token = leases.acquire("db", "n", "a", TTL, at(0)).expect("free").token;
    let not_holder =
        |holder: &str, token| LeaseError::NotHolder { name: "db".into(), holder: holder.into(), token };
    assert_eq!(leases.renew("db", "b", token, at(1)), Err(not_holder("b", token)));
    assert_eq!(leases.renew("db", "a", token + 1, at(1)), Err(not_holder("a", token + 1)));
    assert_eq!(leases.release("db", "b", token), Err(not_holder("b", token)));
    assert_eq!(leases.get("db").map(|lease| lease.expires), Some(at(10)), "nothing changed");
    assert_eq!(leases.renew("db", "a", token, at(8)).map(|lease| lease.expires), Ok(at(18)));
    leases.handle_timeout(at(17));
    assert!(leases.get("db").is_some(), "renewed past 10 s");
    leases.handle_timeout(at(18));
    assert!(leases.get("db").is_none());
    assert!(matches!(events(&mut leases).last(), Some(LeaseEvent::Ended { reason: EndReason::Expired, .. })));
    assert_eq!(leases.renew("db", "a", token, at(19)), Err(not_holder("a", token)), "too late");
}

#[test]
fn a_gone_node_loses_every_lease_it_holds_and_nothing_else() {
    let mut leases = Leases::new();
    leases.acquire("one", "n1", "a", TTL, at(0)).expect("free");
    leases.acquire("two", "n1", "b", TTL, at(0)).expect("free");
    leases.acquire("three", "n2", "c", TTL, at(0)).expect("free");
    events(&mut leases);
    assert_eq!(leases.release_node("n1"), 2);
    let names: Vec<&str> = leases.iter().map(|lease| lease.name.as_str()).collect();
    assert_eq!(names, vec!["three"]);
    let ended = events(&mut leases);
    assert!(ended.iter().all(|event| matches!(event, LeaseEvent::Ended { reason: EndReason::NodeGone, .. })));
    assert_eq!(leases.poll_timeout(), Some(at(10)), "only three's expiry is left");
}

#[test]
fn bad_input_changes_nothing() {
    let mut leases = Leases::new();
    let long = "x".repeat(MAX_NAME_BYTES + 1);
    let cases: [(&str, &str, Duration, LeaseError); 6] = [
        ("", "a", TTL, LeaseError::BadName { what: "lease name" }),
        (&long, "a", TTL, LeaseError::BadName { what: "lease name" }),
        ("a/b", "a", TTL, LeaseError::BadName { what: "lease name" }),
        ("db", "", TTL, LeaseError::BadName { what: "holder" }),
        ("db", "a", Duration::from_millis(999), LeaseError::BadTtl),
        ("db", "a", Duration::from_secs(3601), LeaseError::BadTtl),
    ];
    for (name, holder, ttl, expected) in cases {
        assert_eq!(leases.acquire(name, "n", holder, ttl, at(0)), Err(expected));
    }
    assert!(leases.is_empty());
    assert_eq!(leases.last_token(), 0, "no token was used up");
    assert!(events(&mut leases).is_empty());
}

#[test]
fn restored_leases_get_a_full_ttl_from_the_restart_and_tokens_go_on_from_the_highest() {
    let mut leases = Leases::new();
    let stored = Lease {
        name: "db".into(),
        node: "n".into(),
        holder: "a".into(),
        token: 7,
        ttl: TTL,
        since: at(0),
        expires: at(10),
    };
    leases.restore([stored], 41, at(100));
    assert_eq!(leases.get("db").map(|lease| lease.expires), Some(at(110)));
    assert_eq!(leases.renew("db", "a", 7, at(101)).map(|lease| lease.token), Ok(7), "the holder keeps it");
    assert_eq!(leases.acquire("other", "n", "b", TTL, at(101)).map(|lease| lease.token), Ok(42));
}

#[test]
fn expiries_are_handled_in_order_and_the_table_is_bounded() {
    let mut leases = Leases::new();
    for index in 0..MAX_LEASES as u64 {
        leases
            .acquire(&format!("l{index}"), "n", "a", TTL + Duration::from_secs(index % 7), at(0))
            .expect("room");
    }
    assert_eq!(leases.acquire("one-more", "n", "a", TTL, at(0)), Err(LeaseError::Capacity));
    assert_eq!(leases.stats().refused_capacity, 1, "the bound that was hit is counted");
    assert_eq!(leases.poll_timeout(), Some(at(10)));
    leases.handle_timeout(at(12));
    assert_eq!(leases.poll_timeout(), Some(at(13)));
    assert_eq!(leases.len(), MAX_LEASES - (0..MAX_LEASES as u64).filter(|i| i % 7 <= 2).count());
}
