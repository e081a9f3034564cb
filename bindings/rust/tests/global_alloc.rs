//! StaticRegionAlloc as this test program's #[global_allocator]: every
//! allocation of the test harness and of the tests (Vec, String, HashMap,
//! Box, threads) goes to a shardalloc region in a static pool.
// Hosted only: the freestanding library needs its CPU hook before the first
// allocation, and a program's first allocations come before main.
#![cfg(feature = "hosted")]
mod common;

use common::{layout, leak, MIB};
use shardalloc::{RegionAlloc, StaticRegionAlloc};
use std::alloc::GlobalAlloc;
use std::collections::HashMap;

#[global_allocator]
static GLOBAL: StaticRegionAlloc<{ 256 << 20 }> = StaticRegionAlloc::new();

#[test]
fn the_program_already_runs_on_the_region() {
    let r = GLOBAL.region().expect("the pool makes a region");
    assert_eq!(r.total_bytes(), 256 << 20);
    assert!(r.used_bytes() > 0, "the harness allocated before this test ran");
}

#[test]
fn vec_string_hashmap_box() {
    let r = GLOBAL.region().unwrap();
    let mut v: Vec<u64> = Vec::new();
    for i in 0..1_000_000u64 {
        v.push(i * 3);
    }
    let p = v.as_ptr() as usize;
    // The Vec's buffer lies in the region's pool and is counted.
    let pool = &GLOBAL as *const _ as usize;
    assert!(p >= pool && p < pool + (256 << 20), "Vec buffer {p:#x} outside the pool at {pool:#x}");
    assert!(r.used_bytes() >= v.capacity() * 8);
    assert_eq!(v.iter().sum::<u64>(), 3 * (999_999 * 1_000_000 / 2));
    v.truncate(10);
    v.shrink_to_fit();
    assert_eq!(v, (0..10u64).map(|i| i * 3).collect::<Vec<_>>());

    let mut m: HashMap<String, Box<[u8]>> = HashMap::new();
    for i in 0..10_000 {
        m.insert(format!("key-{i}"), vec![(i % 251) as u8; i % 300].into_boxed_slice());
    }
    for i in (0..10_000).step_by(2) {
        m.remove(&format!("key-{i}"));
    }
    assert_eq!(m.len(), 5000);
    assert_eq!(m["key-9999"].len(), 9999 % 300);
    assert!(m["key-9999"].iter().all(|&b| b == (9999 % 251) as u8));
}

#[test]
fn threads_send_allocations_across() {
    let handles: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                (0..20_000).map(|i| format!("{t}-{i}-{}", "x".repeat(i % 64))).collect::<Vec<String>>()
            })
        })
        .collect();
    // Blocks allocated by threads that have exited, freed here (remote frees
    // into abandoned heaps).
    let all: Vec<Vec<String>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(all.iter().map(Vec::len).sum::<usize>(), 80_000);
    assert!(all[3][19_999].starts_with("3-19999-"));
    drop(all);
}

#[test]
fn a_region_alloc_set_up_by_hand() {
    static A: RegionAlloc = RegionAlloc::new();
    unsafe {
        assert!(A.alloc(layout(8, 8)).is_null(), "no memory before init");
        let r = A.init(leak(8 * MIB, 4096), 8 * MIB).unwrap();
        assert!(A.init(leak(8 * MIB, 4096), 8 * MIB).is_err(), "init twice");
        let p = A.alloc(layout(1000, 64));
        assert!(!p.is_null() && p as usize % 64 == 0);
        assert_eq!(r.used_bytes(), 1000);
        let p = A.realloc(p, layout(1000, 64), 100_000);
        assert!(!p.is_null());
        assert_eq!(r.used_bytes(), 100_000);
        A.dealloc(p, layout(100_000, 64));
        assert_eq!(r.used_bytes(), 0);
        let z = A.alloc_zeroed(layout(4096, 8));
        assert!(std::slice::from_raw_parts(z, 4096).iter().all(|&b| b == 0));
        A.dealloc(z, layout(4096, 8));
        assert!(A.alloc(layout(64 * MIB, 8)).is_null(), "more than the region has: null");
    }
}
