//! ShardAlloc (the process heap) as this test program's #[global_allocator]:
//! every allocation of the harness and of the tests goes to shardalloc.
//! Threads churn through Vec, String, HashMap, Box and BTreeMap, hand their
//! collections to other threads (remote frees) and check every value.
#![cfg(feature = "hosted")]

use shardalloc::{ShardAlloc, Stats};
use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::thread;

#[global_allocator]
static GLOBAL: ShardAlloc = ShardAlloc;

/// A value computed from (thread, round, i), checked after the round trip.
fn word(t: usize, round: usize, i: usize) -> String {
    format!("{t}:{round}:{i}:{}", "abcdefgh".repeat((i * 7 + round) % 40))
}

#[test]
fn the_global_allocator_is_shardalloc() {
    let v: Vec<u64> = (0..10_000).collect();
    // A block of shardalloc's: it knows its usable size (glibc's would abort it).
    let usable = unsafe { ShardAlloc::usable_size(v.as_ptr().cast()) };
    assert!(usable >= v.capacity() * 8, "usable {usable}");
    assert!(ShardAlloc::check_heap() > 0, "this thread's heap has blocks");
    assert!(!ShardAlloc::is_checked());
    assert!(Stats::process().live_blocks > 0);
}

#[test]
fn collections_churn_across_threads() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 40;
    const PER_ROUND: usize = 500;
    // Each producer sends its collections to the next thread, which checks
    // and drops them: every block is freed by a thread that did not allocate it.
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..THREADS {
        let (tx, rx) = mpsc::sync_channel::<(usize, usize, Vec<String>, HashMap<u64, Vec<u8>>, Box<[u64]>)>(4);
        senders.push(tx);
        receivers.push(rx);
    }
    let mut handles = Vec::new();
    for (t, rx) in receivers.into_iter().enumerate() {
        let tx = senders[(t + 1) % THREADS].clone();
        handles.push(thread::spawn(move || {
            let mut checked = 0usize;
            let mut local: BTreeMap<usize, String> = BTreeMap::new();
            for round in 0..ROUNDS {
                let words: Vec<String> = (0..PER_ROUND).map(|i| word(t, round, i)).collect();
                let mut map: HashMap<u64, Vec<u8>> = HashMap::new();
                for i in 0..PER_ROUND as u64 {
                    map.insert(i * 31 + round as u64, vec![(i % 251) as u8; (i as usize * 13) % 700]);
                }
                let big: Box<[u64]> = (0..(20_000 + round * 1000) as u64).map(|x| x ^ t as u64).collect();
                // Local churn: grow, shrink, replace.
                for i in 0..PER_ROUND {
                    local.insert(i, word(t, round, i));
                    if i % 3 == 0 {
                        local.remove(&(i / 2));
                    }
                }
                let mut s = String::new();
                for i in 0..200 {
                    s.push_str(&word(t, round, i));
                }
                let head = s[..10].to_string();
                s.truncate(10);
                s.shrink_to_fit();
                assert_eq!(s, head);
                tx.send((t, round, words, map, big)).unwrap();

                // Check what the previous thread sent, then drop it here.
                let (from, r, words, map, big) = rx.recv().unwrap();
                assert_eq!(words.len(), PER_ROUND);
                for (i, w) in words.iter().enumerate() {
                    assert_eq!(*w, word(from, r, i));
                }
                assert_eq!(map.len(), PER_ROUND);
                for i in 0..PER_ROUND as u64 {
                    let v = &map[&(i * 31 + r as u64)];
                    assert_eq!(v.len(), (i as usize * 13) % 700);
                    assert!(v.iter().all(|&b| b == (i % 251) as u8));
                }
                assert_eq!(big.len(), 20_000 + r * 1000);
                assert!(big.iter().enumerate().all(|(k, &x)| x == k as u64 ^ from as u64));
                checked += 1;
            }
            let removed: std::collections::HashSet<usize> = (0..PER_ROUND).filter(|i| i % 3 == 0).map(|i| i / 2).collect();
            assert_eq!(local.len(), PER_ROUND - removed.len());
            assert!(local.iter().all(|(k, v)| !removed.contains(k) && *v == word(t, ROUNDS - 1, *k)));
            checked
        }));
    }
    drop(senders);
    let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, THREADS * ROUNDS);
}

#[test]
fn alignments_and_reallocs() {
    #[repr(C, align(4096))]
    struct Page([u8; 4096]);
    #[repr(C, align(64))]
    struct Line(u64);

    let pages: Vec<Box<Page>> = (0..50).map(|i| Box::new(Page([i as u8; 4096]))).collect();
    for (i, p) in pages.iter().enumerate() {
        assert_eq!(&**p as *const Page as usize % 4096, 0);
        assert!(p.0.iter().all(|&b| b == i as u8));
    }
    // Vec<Line> grows through realloc with a 64-byte alignment.
    let mut lines: Vec<Line> = Vec::new();
    for i in 0..100_000u64 {
        lines.push(Line(i));
        assert_eq!(lines.as_ptr() as usize % 64, 0);
    }
    assert!(lines.iter().enumerate().all(|(i, l)| l.0 == i as u64));
    // Byte vectors through every size class into huge blocks and back.
    let mut v: Vec<u8> = Vec::new();
    for i in 0..4_000_000usize {
        v.push((i % 253) as u8);
    }
    v.truncate(1000);
    v.shrink_to_fit();
    assert!(v.iter().enumerate().all(|(i, &b)| b == (i % 253) as u8));
    let z = vec![0u64; 1 << 20]; // alloc_zeroed: calloc
    assert!(z.iter().all(|&x| x == 0));
}
