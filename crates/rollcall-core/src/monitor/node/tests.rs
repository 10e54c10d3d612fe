use super::*;
use crate::monitor::DetectorConfig;
use core::time::Duration;

fn node(id: &str) -> Node {
    Node {
        id: Arc::from(id),
        labels: Box::new([]),
        detector: DetectorConfig::default().build(Duration::from_secs(1)),
        generation: 1,
        sequence: 1,
        watch_from: Instant::ZERO,
        addr: None,
        interval_ms: 1000,
        state: NodeState::Up,
        marks: Marks::default(),
        group: 0,
    }
}

/// Inserts, removals (the last node moving into the hole) and lookups, checked against a
/// plain map, over enough ids that the index grows several times.
#[test]
fn the_id_index_agrees_with_a_map_through_inserts_and_removals() {
    let mut table = NodeTable::default();
    let mut model: std::collections::BTreeMap<String, ()> = std::collections::BTreeMap::new();
    // A fixed linear congruential sequence over 600 ids.
    let mut state = 12345u64;
    for _ in 0..20_000 {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let id = format!("node-{}", (state >> 33) % 600);
        match table.index_of(&id) {
            Some(index) if state.is_multiple_of(3) => {
                let (removed, moved) = table.remove(index);
                assert_eq!(&*removed.id, id);
                if let Some(from) = moved {
                    assert_eq!(from as usize, table.len(), "the last node moves into the hole");
                }
                model.remove(&id);
            }
            None if state.is_multiple_of(2) => {
                table.insert(node(&id));
                model.insert(id.clone(), ());
            }
            _ => {}
        }
        assert_eq!(table.len(), model.len());
    }
    for index in 0..table.len() as u32 {
        let id = table.get(index).id.clone();
        assert_eq!(table.index_of(&id), Some(index), "every node is found at its index");
        assert!(model.contains_key(&*id));
        // Warming reads the record at the start of the id's run: a node's, here "node-...".
        assert_eq!(table.warm(&id), b'n');
    }
    for absent in (0..600).map(|n| format!("node-{n}")).filter(|id| !model.contains_key(id)) {
        assert_eq!(table.index_of(&absent), None);
    }
}

/// The record's size is a benchmark figure (docs/BENCHMARKS.md): a field that grows it by a
/// word costs 8 MB at a million nodes. Change this number only with a measurement.
#[test]
fn a_node_record_stays_272_bytes() {
    assert_eq!(std::mem::size_of::<Node>(), 272);
}

#[test]
fn marks_keep_the_rise_count_and_both_flags_apart() {
    let mut marks = Marks::default();
    marks.set_answered(true);
    for _ in 0..100 {
        marks.count_rise(false);
    }
    assert_eq!((marks.rise_count(), marks.restarted(), marks.answered()), (MAX_RISE, false, true));
    marks.count_rise(true);
    assert_eq!((marks.rise_count(), marks.restarted(), marks.answered()), (MAX_RISE, true, true));
    marks.reset_rise();
    assert_eq!((marks.rise_count(), marks.restarted(), marks.answered()), (0, false, true));
    marks.set_answered(false);
    marks.count_rise(true);
    assert_eq!((marks.rise_count(), marks.restarted(), marks.answered()), (1, true, false));
}

/// The index alone, against a map, with hashes drawn from a handful of tags so that runs
/// are long, collide, wrap around the end of the table and are cut by removals in their
/// middle: every entry stays findable, and nothing removed is found.
#[test]
fn the_id_index_keeps_every_run_whole_through_removals() {
    let mut index = IdIndex::default();
    let mut model: std::collections::BTreeMap<u32, u64> = std::collections::BTreeMap::new();
    let mut state = 99u64;
    let mut next = 0u32;
    for step in 0..30_000 {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        // Tags of a few values, near both ends of a small table's range.
        let tag = [0u64, 1, 2, 15, 31, 63, 0xffff_ffff][(state >> 40) as usize % 7];
        let hash = (tag << 32) | (state & 0xffff);
        if model.len() < 40 && !(state >> 20).is_multiple_of(3) {
            index.insert(hash, next);
            model.insert(next, hash);
            next += 1;
        } else if let Some((&gone, &gone_hash)) =
            model.iter().nth((state >> 24) as usize % model.len().max(1))
        {
            index.remove(gone_hash, gone);
            model.remove(&gone);
            assert_eq!(index.find(gone_hash, |i| i == gone), None, "step {step}: removed {gone} found");
            // Now and then the highest index moves into the hole, as the table does.
            if let Some((&last, &last_hash)) = model.iter().next_back().filter(|_| step % 2 == 0) {
                index.renumber(last_hash, last, gone);
                model.remove(&last);
                model.insert(gone, last_hash);
            }
        }
        assert_eq!(index.len(), model.len());
        for (&at, &hash) in &model {
            assert_eq!(index.find(hash, |i| i == at), Some(at), "step {step}: {at} lost");
            assert!(index.first(hash).is_some(), "step {step}: the run of {at} starts empty");
        }
    }
}

/// Fleets name their nodes in sequences ("web-0001", "web-0002", ...): FxHash's high half,
/// where the index finds an id's run, must spread them, or linear probing would read long
/// runs at every heartbeat. A table of 100,000 such ids is read about once per lookup.
#[test]
fn sequential_ids_spread_over_the_id_index() {
    let mut table = NodeTable::default();
    for n in 0..100_000 {
        table.insert(node(&format!("web-{n:05}")));
    }
    let probe = table.by_id.mean_probe();
    assert!(probe < 2.0, "a lookup reads {probe:.2} entries on average");
}
