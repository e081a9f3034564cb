//! First-class heaps: OS heaps (hosted) and heaps in a region (both
//! libraries), shared by threads, dropped whole.
mod common;

use common::{layout, leak, MIB};
use shardalloc::{AllocError, Heap, Region};
use std::sync::Arc;
use std::thread;

fn exercise_threads(heap: Arc<Heap>) {
    // Each thread allocates, fills and hands half of its blocks to the next
    // thread to free (frees from a thread that did not allocate).
    let handles: Vec<_> = (0..4usize)
        .map(|t| {
            let heap = Arc::clone(&heap);
            thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..2000usize {
                    let l = layout(8 + (i * 37 + t) % 2000, 1 << (i % 5));
                    let p = heap.alloc(l).unwrap();
                    assert_eq!(p.as_ptr() as usize % l.align(), 0);
                    unsafe { std::ptr::write_bytes(p.as_ptr(), t as u8, l.size()) };
                    mine.push((p.as_ptr() as usize, l.size(), t as u8));
                }
                mine
            })
        })
        .collect();
    let all: Vec<Vec<(usize, usize, u8)>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let used = heap.used_bytes();
    assert!(used >= all.iter().flatten().map(|b| b.1).sum::<usize>());
    // Other threads free them all.
    let frees: Vec<_> = all
        .into_iter()
        .map(|blocks| {
            let heap = Arc::clone(&heap);
            thread::spawn(move || {
                for (p, size, fill) in blocks {
                    let s = unsafe { std::slice::from_raw_parts(p as *const u8, size) };
                    assert!(s.iter().all(|&b| b == fill));
                    unsafe { heap.dealloc(std::ptr::NonNull::new(p as *mut u8).unwrap()) };
                }
            })
        })
        .collect();
    for f in frees {
        f.join().unwrap();
    }
    assert_eq!(heap.used_bytes(), 0);
}

#[cfg(feature = "hosted")]
#[test]
fn os_heap_shared_by_threads_and_dropped_whole() {
    let heap = Arc::new(Heap::new().unwrap());
    exercise_threads(Arc::clone(&heap));
    // Blocks left in the heap go with it.
    for i in 0..10_000usize {
        heap.alloc(layout(16 + i % 500, 8)).unwrap();
    }
    // Live until collected by their owner: blocks other threads freed above
    // may still count (stats.h); used_bytes counts them freed at once.
    let s = heap.stats();
    assert!(s.live_blocks >= 10_000, "{}", s.live_blocks);
    assert!(heap.used_bytes() >= 16 * 10_000);
    let p = heap.alloc_zeroed(layout(100_000, 64)).unwrap();
    assert!(unsafe { std::slice::from_raw_parts(p.as_ptr(), 100_000) }.iter().all(|&b| b == 0));
    let q = unsafe { heap.realloc(p, layout(100_000, 64), 300_000) }.unwrap();
    assert_eq!(q.as_ptr() as usize % 64, 0);
    drop(Arc::try_unwrap(heap).unwrap());
}

#[test]
fn region_heap_shared_by_threads_and_given_back() {
    let size = 64 * MIB;
    let region = unsafe { Region::new(leak(size, 4096), size) }.unwrap();
    let used0 = region.used_bytes();
    assert_eq!(Heap::new_in_region(region, MIB / 2).unwrap_err(), AllocError::InvalidParam);
    assert_eq!(Heap::new_in_region(region, 2 * size).unwrap_err(), AllocError::NoMemory);
    let heap = Arc::new(Heap::new_in_region(region, 32 * MIB).unwrap());
    assert_eq!(region.used_bytes(), used0 + 32 * MIB, "the heap is one block of the region");
    exercise_threads(Arc::clone(&heap));
    let big = heap.alloc(layout(4 * MIB, 4096)).unwrap();
    assert!(heap.alloc(layout(64 * MIB, 8)).is_err(), "a region heap never grows");
    let _ = big;
    drop(Arc::try_unwrap(heap).unwrap());
    assert_eq!(region.used_bytes(), used0, "drop gives the block back");
}
